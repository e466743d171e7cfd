"""Integrator: a fenced, evidence-gated, server-side handover of canonical main."""

__version__ = "0.1.0"
