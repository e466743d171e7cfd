"""Each request's id: the caller's `X-Request-Id` when sane, else a new one; current while
the request runs (every log line names it) and sent back in the answer's header."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integrator import requestid


class RequestIds:
    """Plain ASGI middleware (no extra task): the id is in the context the endpoint, its
    thread-pool call and uvicorn's access line all run in. The server runs each request in
    a task of its own (its own copy of the context), so the id is not reset afterwards: it
    is still current when the outer error handler logs a failure of this request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = requestid.accepted(Headers(scope=scope).get(requestid.HEADER))
        requestid.begin(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[requestid.HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
