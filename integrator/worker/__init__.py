"""The integrator bot's own process: it talks to the service over HTTP only.

Nothing here opens the database or imports the service's domain modules (an import
contract checked by `make lint`): the worker runs on any machine that can clone and
push the repository and reach the service.
"""
