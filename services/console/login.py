"""Logging in and out of the console: HTTP adapters around guard.py. The login page's script (static/keys.js)
reads the person's identity file in the browser, asks for a challenge bound to the form's cookie, signs it and
posts the key id, the challenge and the signature; no key and no file ever reach the console."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from services.bus.logs import get_logger

from .guard import LoginRefused, check_login, csrf_ok, new_token

if TYPE_CHECKING:
    from .app import Console

COOKIE, LOGIN_COOKIE = "mlbus_session", "mlbus_login"

log = get_logger(component="console")


async def page(console: Console, request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The login form, with why the last try or the session ended (when it did)."""
    token = request.cookies.get(LOGIN_COOKIE) or new_token()
    ended = console.sessions.ended.get(request.cookies.get(COOKIE) or "")      # said until a new login
    response = console.render(request, "login.html", http_status=status, error=error or ended, login_token=token,
                              next=safe_next(request.query_params.get("next", "/")))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def challenge(console: Console, request: Request) -> Response:
    """A one-time challenge for the login form whose cookie came with the request; the page signs
    guard.login_message(challenge), which it makes itself."""
    form = await request.form()
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or form.get("login_token") != token:
        return JSONResponse({"refused": "the login form expired: reload the page"}, 403, headers=console.headers())
    issued = console.challenges.issue(token)
    return JSONResponse({"challenge": issued, "expires_in_s": console.challenges.ttl_s}, headers=console.headers())


async def login(console: Console, request: Request) -> Response:
    """The challenge signed in the browser, checked against the key the identities topic holds."""
    client = request.client.host if request.client else "unknown"
    wait_s = console.limit.retry_after(client)
    if wait_s > 0:
        return await page(console, request, f"too many failed logins: try again in {wait_s:.0f} s", 429)
    form = await request.form()
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or form.get("login_token") != token:
        return await page(console, request, "the login form expired: try again", 403)
    try:
        challenge, key_id = str(form.get("challenge") or ""), str(form.get("key_id") or "")
        console.challenges.take(challenge, token)
        with console.view.lock:
            key = check_login(key_id, str(form.get("signature") or ""), challenge, console.view.identities, now_ms())
    except LoginRefused as refused:
        console.limit.failed(client)
        log.warning("login refused", client=client, reason=str(refused))
        return await page(console, request, str(refused), 401)
    session = console.sessions.open(key)
    log.info("login", person=key.name, key=key.key_id, roles=list(key.roles))
    response = RedirectResponse(safe_next(str(form.get("next") or "/")), status_code=303)
    response.set_cookie(COOKIE, session.token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=int(console.sessions.ttl_s))
    response.delete_cookie(LOGIN_COOKIE)
    return response


async def logout(console: Console, request: Request) -> Response:
    form = await request.form()
    session = console.session(request)
    if not csrf_ok(session, form.get("csrf")):
        return console.refused(request, "the form was not sent from this console (missing or wrong CSRF token)")
    console.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def now_ms() -> int:
    return int(time.time() * 1000)


def safe_next(target: str) -> str:
    """Only a path on this console (no open redirect to another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
