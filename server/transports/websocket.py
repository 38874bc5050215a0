"""The Realtime WebSocket transport (`GET /v1/realtime`): bytes in, bytes out, no conversation logic."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..context import ServerContext
from ..protocol import client_events as ce
from ..protocol.errors import RealtimeProtocolError
from ..protocol.server_events import ServerEvent
from .client_secrets import ClientSecretStore, Credential, authenticate, session_defaults_for

_LOGGER = logging.getLogger(__name__)

SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
#: Upstream accepts appends of up to 15 MiB of base64 audio in one event.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class WebSocketSink:
    """Delivers a session's events in order from one writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._write(), name="ws-writer")

    def send(self, event: ServerEvent) -> None:
        self._queue.put_nowait(json.dumps(event.wire(), separators=(",", ":")))

    def close(self, code: int, reason: str) -> None:
        self._queue.put_nowait(_Close(code, reason))

    async def _write(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code, message=item.reason.encode()[:120])
                    return
                await self.ws.send_str(item)
        except (ConnectionResetError, RuntimeError) as err:
            _LOGGER.debug("websocket writer stopped: %s", err)

    async def drain_and_stop(self) -> None:
        """Let queued events go out (bounded), then stop the writer."""
        if not self.task.done():
            try:
                await asyncio.wait_for(self._drain(), 2.0)
            except TimeoutError:
                pass
            self.task.cancel()

    async def _drain(self) -> None:
        while not self._queue.empty() and not self.task.done():
            await asyncio.sleep(0.01)


def _offered_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(KEY_SUBPROTOCOL_PREFIX):
            return proto[len(KEY_SUBPROTOCOL_PREFIX) :]
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


def origin_allowed(request: web.Request) -> bool:
    """Whether a browser page from the request's Origin may open a session.

    Without this check any web page the user visits could drive an open
    loopback server. Non-browser clients send no Origin. Pages from the server's
    own host and from `server.cors_origins` are allowed; with an API key
    configured, a page must still present the key.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    config = request.app[ServerContext.KEY].config.server
    if "*" in config.cors_origins or origin.rstrip("/") in config.cors_origins:
        return True
    host = urlsplit(origin).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host == request.url.host:
        return True
    return config.api_key is not None


def _handshake_error(request: web.Request) -> tuple[RealtimeProtocolError, int] | Credential:
    """The credential, or the error upstream sends after the upgrade (close 3000 auth, 4000 shape)."""
    ctx = request.app[ServerContext.KEY]
    credential = authenticate(ctx.config.server.api_key, request.app[ClientSecretStore.KEY], _offered_key(request))
    if isinstance(credential, RealtimeProtocolError):
        return credential, 3000
    if request.headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1" or "openai-beta.realtime-v1" in \
            request.headers.get("Sec-WebSocket-Protocol", ""):
        return RealtimeProtocolError(
            message="The beta Realtime API shape is not supported; use the GA interface (no OpenAI-Beta header).",
            code="beta_api_shape_disabled"), 4000
    intent = request.query.get("intent")
    model = request.query.get("model")
    if intent == "transcription" and model:
        return RealtimeProtocolError(message="You must not provide a model parameter for transcription sessions.",
                                     code="invalid_model", param="model"), 4000
    if intent not in (None, "transcription", "conversation"):
        return RealtimeProtocolError(message=f"Invalid intent '{intent}'.", code="invalid_value", param="intent"), 4000
    if request.query.get("call_id") and (model or intent):
        return RealtimeProtocolError(message="Attach to a call with call_id alone, without model or intent.",
                                     code="invalid_value", param="call_id"), 4000
    if request.query.get("call_id") and credential.kind == "ephemeral":
        return RealtimeProtocolError(message="Attaching to a call needs the API key, not an ephemeral key.",
                                     code="invalid_api_key"), 3000
    # An ephemeral key carries its session's model (and kind); the URL need not name one.
    if intent != "transcription" and not model and credential.secret is None and not request.query.get("call_id"):
        return RealtimeProtocolError(message="Missing required parameter: 'model'.", code="missing_model",
                                     param="model"), 4000
    return credential


async def realtime_websocket(request: web.Request) -> web.WebSocketResponse:
    ctx = request.app[ServerContext.KEY]
    if not origin_allowed(request):
        _LOGGER.warning("refused a browser connection from origin %s (not in server.cors_origins)",
                        request.headers.get("Origin"))
        raise web.HTTPForbidden(text="Origin not allowed; add it to server.cors_origins.")
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES,
                               compress=False)
    await ws.prepare(request)
    credential = _handshake_error(request)
    if not isinstance(credential, Credential):
        error, code = credential
        _LOGGER.info("realtime connection from %s refused: %s", request.remote, error.message)
        await ws.send_json({"type": "error", "event_id": "event_handshake", "error": {
            "type": error.type, "code": error.code, "message": error.message, "param": error.param, "event_id": None}})
        await ws.close(code=code, message=f"{error.type}.{error.code}".encode())
        return ws
    if request.query.get("call_id"):
        from .webrtc import attach_sideband  # the sideband of a WebRTC call

        await attach_sideband(request, ws, request.query["call_id"])
        return ws

    ctx.websockets.add(ws)
    sink = WebSocketSink(ws)
    intent = request.query.get("intent")
    secret = credential.secret
    kind = secret.kind if secret is not None and intent is None else \
        "transcription" if intent == "transcription" else "realtime"
    model = request.query.get("model") or (secret.model if secret else None) or "hearth"
    session = ctx.sessions.open(sink, kind=kind, model=model,
                                defaults=session_defaults_for(ctx.session_defaults, credential))
    _LOGGER.info("session %s opened from %s (model %s, %s key)", session.id, request.remote, model, credential.kind)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                try:
                    event = ce.parse_client_event(message.data)
                except RealtimeProtocolError as err:
                    session.protocol_error(err)
                    continue
                session.submit(event)
            elif message.type == WSMsgType.BINARY:
                session.protocol_error(RealtimeProtocolError(
                    message="Expected a text WebSocket message; binary frames are not supported.",
                    code="invalid_event"))
            elif message.type == WSMsgType.ERROR:
                _LOGGER.info("session %s: websocket error %s", session.id, ws.exception())
                break
    finally:
        ctx.sessions.closed(session)
        await sink.drain_and_stop()
        ctx.websockets.discard(ws)
        _LOGGER.info("session %s closed (code %s)", session.id, ws.close_code)
    return ws
