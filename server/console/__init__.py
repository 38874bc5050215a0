"""The web console at `/`: a page that talks to Hearth over WebRTC with an ephemeral key.

The page never sees the API key. On a server without one (loopback) it asks for an
ephemeral key directly; on a server that requires one, a household member pairs the
browser once with the code the server prints in its log, and the page gets a
cookie that lets it ask for ephemeral keys (and nothing else).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from importlib.resources import files
from urllib.parse import urlsplit
from typing import ClassVar

from aiohttp import web

from ..context import ServerContext
from ..protocol.errors import RealtimeProtocolError
from ..transports.auth import browser_refusal
from ..transports.client_secrets import bind_session, error_response, mint

_LOGGER = logging.getLogger(__name__)

COOKIE = "hearth_console"
#: Lifetime of a paired browser's cookie, and of the ephemeral keys the console gets.
PAIRING_TTL_S = 30 * 24 * 3600
CONSOLE_KEY_TTL_S = 120
#: Failed pairing attempts allowed per minute (for the whole server: the code is 40 bits).
MAX_FAILURES_PER_MINUTE = 5
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "icon.svg": "image/svg+xml",
}


@dataclass
class ConsoleAuth:
    """The pairing code (None when the server needs no key) and the paired browsers' tokens."""

    KEY: ClassVar[web.AppKey[ConsoleAuth]]

    code: str | None
    tokens: dict[str, float] = field(default_factory=dict)
    failures: list[float] = field(default_factory=list)

    @classmethod
    def for_server(cls, api_key: str | None) -> ConsoleAuth:
        if api_key is None:
            return cls(code=None)
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        return cls(code=f"{raw[:4]}-{raw[4:]}")

    def signed_in(self, request: web.Request) -> bool:
        if self.code is None:
            return True
        token = request.cookies.get(COOKIE)
        expires = self.tokens.get(token or "")
        return expires is not None and expires > time.time()

    def pair(self, offered: str) -> str | None:
        """A new browser token for the right code; None (and one failure counted) otherwise."""
        now = time.time()
        self.failures = [t for t in self.failures if now - t < 60]
        if len(self.failures) >= MAX_FAILURES_PER_MINUTE or self.code is None:
            return None
        normalized = offered.strip().upper().replace(" ", "")
        if "-" not in normalized and len(normalized) == 8:
            normalized = f"{normalized[:4]}-{normalized[4:]}"
        if not hmac.compare_digest(normalized.encode(), self.code.encode()):
            self.failures.append(now)
            return None
        token = secrets.token_urlsafe(32)
        self.tokens = {t: e for t, e in self.tokens.items() if e > now}
        self.tokens[token] = now + PAIRING_TTL_S
        return token


ConsoleAuth.KEY = web.AppKey("hearth_console_auth", ConsoleAuth)


def _static(name: str) -> str:
    return files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _same_origin(request: web.Request) -> bool:
    """State-changing console requests come from the console's own page on this server.

    The Host check (DNS rebinding) comes first; then the Origin must be this server itself
    (not merely an allowed origin: a cross-site page must not mint keys with the cookie).
    """
    if browser_refusal(request, request.app[ServerContext.KEY].config.server) is not None:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}" == \
        f"{request.url.host}:{request.url.port or (443 if request.secure else 80)}"


def _check_host(request: web.Request) -> None:
    refusal = browser_refusal(request, request.app[ServerContext.KEY].config.server)
    if refusal is not None:
        raise web.HTTPForbidden(text=refusal)


async def index(request: web.Request) -> web.Response:
    _check_host(request)
    return web.Response(text=_static("index.html"), content_type="text/html",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy":
                                 "default-src 'self'; media-src 'self' blob: mediastream:; connect-src 'self'"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=_static(name), content_type=_STATIC[name], headers={"Cache-Control": "no-cache"})


async def status(request: web.Request) -> web.Response:
    _check_host(request)
    auth = request.app[ConsoleAuth.KEY]
    ctx = request.app[ServerContext.KEY]
    session = ctx.session_defaults
    return web.json_response({"sign_in_required": auth.code is not None, "signed_in": auth.signed_in(request),
                              "defaults": {"instructions": session.get("instructions", ""),
                                           "voice": session.get("audio", {}).get("output", {}).get("voice")}})


async def sign_in(request: web.Request) -> web.Response:
    auth = request.app[ConsoleAuth.KEY]
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin sign-in refused")
    try:
        body = await request.json()
    except ValueError:
        body = {}
    token = auth.pair(str(body.get("code", ""))) if isinstance(body, dict) else None
    if token is None:
        _LOGGER.warning("console sign-in with a wrong pairing code from %s", request.remote)
        return error_response(RealtimeProtocolError(
            message="That pairing code is not right (see the server's log), or too many tries: wait a minute.",
            code="invalid_pairing_code"), 401)
    _LOGGER.info("console paired from %s", request.remote)
    response = web.json_response({"signed_in": True})
    response.set_cookie(COOKIE, token, max_age=PAIRING_TTL_S, httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    return response


async def client_secret(request: web.Request) -> web.Response:
    """An ephemeral key for the console's next call, with the page's settings bound to it."""
    auth = request.app[ConsoleAuth.KEY]
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if not auth.signed_in(request):
        return error_response(RealtimeProtocolError(
            message="Sign in to the console with the pairing code from the server's log.",
            code="console_sign_in_required"), 401)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = {}
    ctx = request.app[ServerContext.KEY]
    requested = body.get("session") if isinstance(body, dict) else None
    try:
        bound = bind_session(ctx.session_defaults, requested if isinstance(requested, dict) else None)
    except RealtimeProtocolError as err:
        return error_response(err, 400)
    return web.json_response(mint(request.app, bound, CONSOLE_KEY_TTL_S))


def add_console(app: web.Application, api_key: str | None) -> None:
    """Serve the console at `/`; print the pairing code when the server requires a key."""
    auth = app[ConsoleAuth.KEY] = ConsoleAuth.for_server(api_key)
    app.router.add_get("/", index)
    app.router.add_get("/console/{name}", static)
    app.router.add_get("/console/api/status", status)
    app.router.add_post("/console/api/sign-in", sign_in)
    app.router.add_post("/console/api/client-secret", client_secret)

    async def announce(_: web.Application) -> None:
        if auth.code is not None:
            _LOGGER.warning("web console pairing code: %s (enter it once per browser at /)", auth.code)

    app.on_startup.append(announce)

