"""Per-app Prometheus registry: request instrumentation (per process) and the database's
values (`integrator.metrics`, read at each scrape)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from integrator.metrics import DatabaseCollector


class Metrics:
    """Collectors live on the app, not in a global registry, so tests can build many apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "integrator_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "integrator_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )


def instrument(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request, and read the database's values at each scrape."""
    metrics.registry.register(
        DatabaseCollector(lambda: getattr(app.state, "sessions", None), app.state.settings)
    )

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        return response
