"""Bodies the console takes: small forms only (url-encoded, at most MAX_BODY_BYTES), refused before any parsing —
from Content-Length when it is given, and while the body streams in when it is not (or lies). Nothing the
console serves takes a file: a multipart body is refused whatever its size."""
from __future__ import annotations

from starlette.responses import PlainTextResponse

# The largest form: a reason of 500 characters, url-encoded at worst 9 bytes each (4,500), plus tokens and a
# signature (under 400): 16 KiB leaves room and still stops a flood before it is read.
MAX_BODY_BYTES = 16 * 1024
FORM = "application/x-www-form-urlencoded"


class TooLarge(Exception):
    """The body grew past the cap while it was read."""


def body_refusal(method: str, content_type: str | None, content_length: str | None,
                 limit: int = MAX_BODY_BYTES) -> tuple[int, str] | None:
    """(HTTP status, why) when a request's body is refused before it is read; None when it may be read."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return None
    if content_length is not None and (not content_length.isdigit() or int(content_length) > limit):
        return 413, f"a body is at most {limit} bytes"
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in ("", FORM):
        return 415, f"the console takes forms ({FORM}) only: no file is ever uploaded to it"
    return None


class BodyLimit:
    """ASGI middleware: body_refusal on the headers, then the cap counted on every chunk received."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = body_refusal(scope["method"], headers.get("content-type"), headers.get("content-length"),
                               self.limit)
        if refused:
            return await PlainTextResponse(refused[1], status_code=refused[0])(scope, receive, send)
        received = 0
        started = False

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise TooLarge()
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if not started:
                await PlainTextResponse(f"a body is at most {self.limit} bytes", status_code=413)(scope, receive, send)
