"""The HTTP API: thin routers over the domain modules."""
