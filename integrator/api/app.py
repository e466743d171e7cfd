"""The app factory: `create_app(settings)` builds a service bound to one database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from integrator import __version__, lease
from integrator.admission import CanonicalRepo
from integrator.api import (
    audit,
    blocked,
    candidates,
    controls,
    dashboard,
    events,
    github_webhook,
    guard,
    health,
    modes,
    predictions,
    processing,
    registrations,
    status,
    tokens,
    webhooks,
    whoami,
)
from integrator.api import lease as lease_api
from integrator.api import speculation as speculation_api
from integrator.api.errors import install_error_handlers
from integrator.api.metrics import Metrics, instrument
from integrator.api.openapi import install_openapi
from integrator.api.request_ids import RequestIds
from integrator.db import make_engine, make_sessionmaker
from integrator.settings import Settings, get_settings
from integrator.watch import start_watching
from integrator.webhooks import start_sending


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        lease.ensure_configured(app.state.sessions, settings)
        watcher = start_watching(app.state.sessions, settings, app.state.repo)
        sender = start_sending(app.state.sessions, settings)
        try:
            yield
        finally:
            if sender is not None:
                sender.stop()
            if watcher is not None:
                watcher.stop()
            engine.dispose()

    app = FastAPI(
        title="Integrator",
        version=__version__,
        summary="A fenced, evidence-gated, server-side handover of canonical main",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.repo = CanonicalRepo(settings)
    instrument(app, app.state.metrics)
    app.add_middleware(RequestIds)  # outermost: every line of the request names it
    install_error_handlers(app)
    install_openapi(app)  # declares the errors of every route, those included below too
    app.include_router(health.router)
    app.include_router(whoami.router)
    app.include_router(github_webhook.router)
    app.include_router(tokens.router)
    app.include_router(events.router)
    app.include_router(candidates.router)
    app.include_router(controls.router)
    app.include_router(blocked.router)
    app.include_router(processing.router)
    app.include_router(speculation_api.router)
    app.include_router(predictions.router)
    app.include_router(guard.router)
    app.include_router(modes.router)
    app.include_router(lease_api.router)
    app.include_router(registrations.router)
    app.include_router(webhooks.router)
    app.include_router(status.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    return app
