"""Ephemeral client secrets (`POST /v1/realtime/client_secrets`) and who may open a session.

A backend holding the API key mints a short-lived `ek_…` key with a session
configuration bound to it, and hands only that key to a browser. The key opens
sessions on `/v1/realtime/calls` (WebRTC) and on the WebSocket until it expires
or until a call it opened is hung up. Keys live in memory: a restart forgets them,
as it forgets the sessions they opened.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..context import ServerContext
from ..protocol.errors import RealtimeProtocolError, from_validation_error
from ..protocol.ids import new_id
from ..protocol.session_config import RealtimeSession as RealtimeConfig
from ..protocol.session_config import TranscriptionSession as TranscriptionConfig
from ..protocol.session_config import merge_update
from .auth import browser_refusal, check_key, offered_key

_LOGGER = logging.getLogger(__name__)

PREFIX = "ek_"
#: Upstream's bounds and default for `expires_after.seconds`.
MIN_TTL_S, MAX_TTL_S, DEFAULT_TTL_S = 10, 7200, 600
#: Live secrets kept at most; the oldest go first (a runaway minting loop cannot grow memory).
MAX_SECRETS = 10_000


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)


class ClientSecretCreate(BaseModel):
    """The request body (SDK `client_secret_create_params`)."""

    model_config = ConfigDict(extra="forbid")
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)
    session: dict[str, Any] | None = None


@dataclass
class ClientSecret:
    value: str = field(repr=False)
    created_at: float
    expires_at: int
    #: The session configuration bound to the key, in wire form (without id/expiry).
    session: dict[str, Any]
    revoked: bool = False

    @property
    def kind(self) -> Literal["realtime", "transcription"]:
        return "transcription" if self.session.get("type") == "transcription" else "realtime"

    @property
    def model(self) -> str | None:
        return self.session.get("model")


@dataclass(frozen=True)
class Credential:
    """Who opened a request: the API key holder, an ephemeral key, or anyone (no key configured)."""

    kind: Literal["api_key", "ephemeral", "open"]
    secret: ClientSecret | None = None


class ClientSecretStore:
    KEY: ClassVar[web.AppKey[ClientSecretStore]]

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._secrets: dict[str, ClientSecret] = {}

    def create(self, session: dict[str, Any], ttl_s: int) -> ClientSecret:
        self._purge()
        now = self._clock()
        secret = ClientSecret(value=PREFIX + secrets.token_urlsafe(24), created_at=now,
                              expires_at=int(now + ttl_s), session=session)
        self._secrets[secret.value] = secret
        while len(self._secrets) > MAX_SECRETS:
            self._secrets.pop(next(iter(self._secrets)))
        return secret

    def check(self, value: str) -> ClientSecret | RealtimeProtocolError:
        """The live secret, or the error upstream sends for an unknown, expired or used-up key."""
        secret = self._secrets.get(value)
        if secret is None or not hmac.compare_digest(secret.value, value):
            return _invalid_key(value)
        if self._clock() >= secret.expires_at:
            return RealtimeProtocolError(message="The ephemeral key has expired; request a new client secret.",
                                         code="invalid_api_key")
        if secret.revoked:
            return RealtimeProtocolError(
                message="The ephemeral key was used by a call that has ended; request a new client secret.",
                code="invalid_api_key")
        return secret

    def revoke(self, secret: ClientSecret) -> None:
        """A call opened with this key hung up: the key cannot open another session."""
        secret.revoked = True

    def __len__(self) -> int:
        return len(self._secrets)

    def _purge(self) -> None:
        now = self._clock()
        for value in [v for v, s in self._secrets.items() if now >= s.expires_at]:
            del self._secrets[value]


ClientSecretStore.KEY = web.AppKey("hearth_client_secrets", ClientSecretStore)


def _invalid_key(offered: str) -> RealtimeProtocolError:
    shown = offered[:6] + "*" * 4 + offered[-4:] if len(offered) > 12 else "*" * 4
    return RealtimeProtocolError(message=f"Incorrect API key provided: {shown}.", code="invalid_api_key")


def authenticate(api_key: str | None, store: ClientSecretStore, offered: str | None, *,
                 ephemeral: bool = True) -> Credential | RealtimeProtocolError:
    """Check an offered key against the API key and the live ephemeral keys.

    An `ek_…` key is always checked (an expired one is refused even on a server
    without an API key, so a browser learns to fetch a new one); any other key
    must equal the API key when one is configured.
    """
    if offered and offered.startswith(PREFIX):
        if not ephemeral:
            return RealtimeProtocolError(message="An ephemeral key cannot be used for this request; "
                                         "use the API key.", code="invalid_api_key")
        found = store.check(offered)
        return found if isinstance(found, RealtimeProtocolError) else Credential("ephemeral", found)
    failure = check_key(api_key, offered)
    if failure is not None:
        return failure
    return Credential("open" if api_key is None else "api_key")


def error_body(error: RealtimeProtocolError) -> dict[str, Any]:
    """Upstream's REST error shape."""
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


def error_response(error: RealtimeProtocolError, status: int) -> web.Response:
    return web.json_response(error_body(error), status=status)


def authenticate_request(request: web.Request, *, ephemeral: bool = True) -> Credential:
    """The host/origin rules and `authenticate` for a REST request; raises 403 or upstream's 401."""
    ctx = request.app[ServerContext.KEY]
    refusal = browser_refusal(request, ctx.config.server)
    if refusal is not None:
        raise web.HTTPForbidden(text=json.dumps(error_body(RealtimeProtocolError(message=refusal))),
                                content_type="application/json")
    result = authenticate(ctx.config.server.api_key, request.app[ClientSecretStore.KEY], offered_key(request),
                          ephemeral=ephemeral)
    if isinstance(result, RealtimeProtocolError):
        raise web.HTTPUnauthorized(text=json.dumps(error_body(result)), content_type="application/json")
    return result


def bind_session(defaults: dict[str, Any], requested: dict[str, Any] | None) -> dict[str, Any]:
    """The server's defaults with the requested configuration merged in, validated.

    Raises RealtimeProtocolError (with upstream's `param` path) for a bad field.
    """
    requested = dict(requested or {"type": "realtime"})
    kind = requested.get("type")
    if kind not in ("realtime", "transcription"):
        raise RealtimeProtocolError(message="Missing required parameter: 'session.type'." if kind is None else
                                    f"Invalid value: '{kind}'. Supported values are: 'realtime' and 'transcription'.",
                                    code="missing_required_parameter" if kind is None else "invalid_value",
                                    param="session.type")
    base = {**defaults, "type": kind}
    if kind == "transcription":
        base = {k: v for k, v in base.items() if k in ("type", "audio", "include")}
        if "audio" in base:
            base["audio"] = {"input": base["audio"].get("input", {})}
    merged = merge_update(base, requested)
    model = RealtimeConfig if kind == "realtime" else TranscriptionConfig
    try:
        validated = model.model_validate(merged)
    except ValidationError as err:
        raise from_validation_error(err, merged, "session") from None
    wire = validated.model_dump(mode="json", exclude_none=True)
    for owned in ("id", "object", "expires_at"):
        wire.pop(owned, None)
    if kind == "realtime" and "model" not in requested:
        wire.pop("model", None)  # the session takes the server's model name
    return wire


def session_defaults_for(ctx_defaults: dict[str, Any], credential: Credential) -> dict[str, Any]:
    """Defaults of a session opened with `credential` (the bound configuration of an ephemeral key)."""
    if credential.secret is None:
        return ctx_defaults
    return {**ctx_defaults, **credential.secret.session}


async def create_client_secret(request: web.Request) -> web.Response:
    """`POST /v1/realtime/client_secrets`, authorised with the API key (not with an ephemeral key)."""
    authenticate_request(request, ephemeral=False)
    ctx = request.app[ServerContext.KEY]
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        return error_response(RealtimeProtocolError(
            message="We could not parse the JSON body of your request.", code="invalid_json"), 400)
    if not isinstance(data, dict):
        return error_response(RealtimeProtocolError(message="The request body must be a JSON object.",
                                                    code="invalid_value"), 400)
    try:
        body = ClientSecretCreate.model_validate(data)
        bound = bind_session(ctx.session_defaults, body.session)
    except ValidationError as err:
        return error_response(from_validation_error(err, data, ""), 400)
    except RealtimeProtocolError as err:
        return error_response(err, 400)
    return web.json_response(mint(request.app, bound, body.expires_after.seconds))


def mint(app: web.Application, bound: dict[str, Any], ttl_s: int) -> dict[str, Any]:
    """Create a secret for `bound` and return upstream's response body."""
    store = app[ClientSecretStore.KEY]
    secret = store.create(bound, ttl_s)
    session = {**bound, "id": new_id("sess"), "expires_at": secret.expires_at}
    if secret.kind == "realtime":
        session.setdefault("model", "hearth")
        session["object"] = "realtime.session"
        full = RealtimeConfig.model_validate(session).model_dump(mode="json")
    else:
        session["object"] = "realtime.transcription_session"
        full = TranscriptionConfig.model_validate(session).model_dump(mode="json")
    _LOGGER.info("client secret minted (expires in %d s, %d live)", ttl_s, len(store))
    return {"value": secret.value, "expires_at": secret.expires_at, "session": full}
