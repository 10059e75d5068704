"""A limit on the size of a request's body, as ASGI middleware.

uvicorn has none, and nginx's ``client_max_body_size`` (the usual place) may not stand in front
of this server. FastAPI 0.164 added ``FastAPI(max_body_size=...)`` (Starlette 1.6's
``RequestBodyLimitMiddleware``), but it answers ``text/plain`` "Content Too Large", and every
error of this server is JSON naming what was wrong; it would also raise the floor of the
``serve`` extra to this year's FastAPI. So this small wrapper of ``receive`` stays.
"""

from __future__ import annotations

import json


class BodyTooLarge(Exception):
    """The body went past the limit while it was being read."""


class BodySizeLimit:
    """Answer 413 (a JSON ``{"detail": ...}``) to a request whose body is larger than
    ``max_bytes``: at once when its ``Content-Length`` says so, else as soon as the bytes
    read (a chunked body) pass the limit, before the application sees the rest.

    Args:
        app: the ASGI application (Starlette adds this with ``app.add_middleware``).
        max_bytes: the largest body accepted, in bytes.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _answer(send, 400, "malformed Content-Length header")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await _answer(send, 413, self._too_large())
            return
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, self._too_large())

    def _too_large(self) -> str:
        return (f"request body too large: the limit is {self.max_bytes:,} bytes "
                f"(softmax serve --max-request-mb)")


async def _answer(send, status: int, detail: str) -> None:
    """Send a whole JSON error response ``{"detail": detail}`` and close the connection."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
