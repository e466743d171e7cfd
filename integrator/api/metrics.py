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
        self.hook_round_trip = Histogram(
            "integrator_hook_round_trip_seconds",
            "A pre-receive hook's push check as the hook timed it, from request to parsed "
            "answer (each hook reports its previous push's with its next one)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )

    def observe_hook_round_trip(self, milliseconds: float | None) -> None:
        """A hook's reported round trip, when it is a plausible one (a hook's word only)."""
        if milliseconds is not None and 0 <= milliseconds <= 600_000:
            self.hook_round_trip.observe(milliseconds / 1000)


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
