"""Who may use the server: the API key, browser origins, the Host header, and the access log.

Every transport (the Realtime WebSocket now; WebRTC calls and the other HTTP endpoints
later) asks this module, so the rules are written once:

* With `server.api_key` set, a request must present the key (`Authorization: Bearer`, or
  the `openai-insecure-api-key.<key>` subprotocol browsers use).
* Without a key the server trusts whoever can reach it, which on loopback means programs
  on this machine. A web page the user visits can reach loopback too, two ways:
  - directly, from its own origin: refused by the Origin check (pages from this host,
    localhost and `server.cors_origins` only);
  - by DNS rebinding: the page's own name (`rebind.example`) is made to resolve to
    127.0.0.1, so Origin and Host agree and look same-origin. The Host header check
    refuses it: a keyless server answers only to loopback names (`localhost`,
    `*.localhost`), IP addresses (rebinding needs a name), this machine's name,
    `server.host`, and `server.allowed_hosts`.
* Keys in a query string (`?api_key=`, `?token=`, ...) never reach the access log.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import re
import socket
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..config import ServerOptions
from ..protocol.errors import RealtimeProtocolError, quote

_LOGGER = logging.getLogger(__name__)

KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


# ----------------------------------------------------------------------------- the key


def offered_key(request: web.BaseRequest) -> str | None:
    """The key a request presents: a bearer token, else a browser's key subprotocol."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(KEY_SUBPROTOCOL_PREFIX):
            return proto[len(KEY_SUBPROTOCOL_PREFIX) :] or None
    return None


def check_key(expected: str | None, offered: str | None) -> RealtimeProtocolError | None:
    """None when the request may proceed; otherwise the error upstream would send."""
    if expected is None:
        return None
    if offered is None:
        return RealtimeProtocolError(
            message="Missing bearer or basic authentication in header.", code=None, type="invalid_request_error")
    if not hmac.compare_digest(expected.encode(), offered.encode()):
        return RealtimeProtocolError(message="Incorrect API key provided.", code="invalid_api_key",
                                     type="invalid_request_error")
    return None


# ----------------------------------------------------------------------------- host and origin


def host_name(authority: str) -> str:
    """The host part of a Host header (`[::1]:8000` -> `::1`, `Example.org.` -> `example.org`)."""
    authority = authority.strip()
    if authority.startswith("["):
        return authority[1 : authority.find("]")].lower() if "]" in authority else authority.lower()
    if authority.count(":") == 1:
        authority = authority.split(":", 1)[0]
    return authority.rstrip(".").lower()


@functools.cache
def _machine_names() -> frozenset[str]:
    """This machine's own names (what mDNS and the local resolver answer for it)."""
    name = socket.gethostname().rstrip(".").lower()
    short = name.split(".", 1)[0]
    return frozenset(n for n in (name, short, f"{short}.local") if n)


def host_allowed(request: web.BaseRequest, config: ServerOptions) -> bool:
    """Whether the Host header names this server (always true when a key is required)."""
    if config.api_key is not None:
        return True
    header = request.headers.get("Host")
    if header is None:  # HTTP/1.0 or a raw client: no browser omits Host
        return True
    host = host_name(header)
    try:
        ipaddress.ip_address(host)
        return True  # an IP address cannot be rebound
    except ValueError:
        pass
    allowed = config.allowed_hosts
    if "*" in allowed or host in allowed or any(a.startswith(".") and host.endswith(a) for a in allowed):
        return True
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    return host == host_name(config.host) or host in _machine_names()


def origin_allowed(request: web.BaseRequest, config: ServerOptions) -> bool:
    """Whether a browser page from the request's Origin may open a session.

    Non-browser clients send no Origin. Pages from the server's own host (already
    checked by `host_allowed`), localhost and `server.cors_origins` are allowed; with an
    API key configured, any page may try, and must still present the key.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in config.cors_origins or origin.rstrip("/") in config.cors_origins:
        return True
    host = (urlsplit(origin).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1") or host == host_name(request.headers.get("Host", "")):
        return True
    return config.api_key is not None


def browser_refusal(request: web.BaseRequest, config: ServerOptions) -> str | None:
    """Why a request is refused before it reaches a handler (403), or None to let it in."""
    if not host_allowed(request, config):
        return (f"Host '{quote(request.headers.get('Host', ''))}' is not allowed: a server without an API key "
                "answers only to loopback names, IP addresses, this machine's name and server.allowed_hosts "
                "(DNS-rebinding protection).")
    if not origin_allowed(request, config):
        return f"Origin '{quote(request.headers.get('Origin', ''))}' is not allowed; add it to server.cors_origins."
    return None


# ----------------------------------------------------------------------------- plain HTTP endpoints


def _json_error(status: type[web.HTTPError], error: RealtimeProtocolError) -> web.HTTPError:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return status(text=json.dumps(body), content_type="application/json")


def require_access(request: web.BaseRequest, config: ServerOptions) -> None:
    """For HTTP endpoints: raise 403 (host/origin) or 401 (key) in upstream's JSON shape."""
    refusal = browser_refusal(request, config)
    if refusal is not None:
        _LOGGER.warning("refused %s %s: %s", request.method, request.path, refusal)
        raise _json_error(web.HTTPForbidden, RealtimeProtocolError(message=refusal))
    failure = check_key(config.api_key, offered_key(request))
    if failure is not None:
        raise _json_error(web.HTTPUnauthorized, failure)


# ----------------------------------------------------------------------------- the access log

#: Query parameters that carry credentials (`api_key`, `key`, `token`, `access_token`, ...).
_SECRET_PARAM = re.compile(r"(?i)^(api[-_]?key|key|(access[-_]|id[-_])?token|secret|client[-_]secret|password|"
                           r"pass|auth|authorization|sig|signature|code)$")


def redact_url(target: str) -> str:
    """`target` (a path with query, or a URL) with credential values in its query replaced."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}=REDACTED" if eq and _SECRET_PARAM.match(name) else part)
    return f"{path}?{'&'.join(parts)}{fragment}"


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's default access-log line, with credentials in query strings redacted.

    `remote "METHOD /path?query HTTP/1.1" status bytes "referer" "user-agent"`.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        referer = redact_url(request.headers.get("Referer", "-"))
        agent = request.headers.get("User-Agent", "-")
        self.logger.info('%s "%s %s %s" %s %s "%s" "%s" %.3fs', request.remote or "-", request.method,
                         redact_url(request.path_qs), version, response.status, response.body_length,
                         referer, agent, time)
