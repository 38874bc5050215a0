"""The Realtime WebSocket transport (`GET /v1/realtime`): bytes in, bytes out, no conversation logic."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from ..context import ServerContext
from ..protocol import client_events as ce
from ..protocol.errors import RealtimeProtocolError, quote
from ..protocol.ids import new_id
from ..protocol.server_events import ServerEvent
from .auth import browser_refusal, offered_key
from .client_secrets import ClientSecretStore, Credential, authenticate, session_defaults_for

_LOGGER = logging.getLogger(__name__)

SUBPROTOCOL = "realtime"
#: Upstream accepts appends of up to 15 MiB of base64 audio in one event; a bigger frame
#: is closed with 1009 (message too big) by aiohttp.
MAX_MESSAGE_BYTES = ce.MAX_EVENT_CHARS


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


def _handshake_error(request: web.Request) -> tuple[RealtimeProtocolError, int] | Credential:
    """The credential, or the error upstream sends after the upgrade (close 3000 auth, 4000 shape)."""
    ctx = request.app[ServerContext.KEY]
    credential = authenticate(ctx.config.server.api_key, request.app[ClientSecretStore.KEY], offered_key(request))
    if isinstance(credential, RealtimeProtocolError):
        return credential, 3000
    if request.headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1" or "openai-beta.realtime-v1" in \
            request.headers.get("Sec-WebSocket-Protocol", ""):
        return RealtimeProtocolError(
            message="The beta Realtime API shape is not supported; use the GA interface (no OpenAI-Beta header).",
            code="beta_api_shape_disabled"), 4000
    intent = request.query.get("intent")
    model = request.query.get("model")
    call_id = request.query.get("call_id")
    if intent == "transcription" and model:
        return RealtimeProtocolError(message="You must not provide a model parameter for transcription sessions.",
                                     code="invalid_model", param="model"), 4000
    if intent not in (None, "transcription", "conversation"):
        return RealtimeProtocolError(message=f"Invalid intent '{quote(intent)}'.", code="invalid_value",
                                     param="intent"), 4000
    if call_id and (model or intent):
        return RealtimeProtocolError(message="Attach to a call with call_id alone, without model or intent.",
                                     code="invalid_value", param="call_id"), 4000
    if call_id and credential.kind == "ephemeral":
        return RealtimeProtocolError(message="Attaching to a call needs the API key, not an ephemeral key.",
                                     code="invalid_api_key"), 3000
    # An ephemeral key carries its session's model (and kind); the URL need not name one.
    if intent != "transcription" and not model and credential.secret is None and not call_id:
        return RealtimeProtocolError(message="Missing required parameter: 'model'.", code="missing_model",
                                     param="model"), 4000
    return credential


def close_reason(error: RealtimeProtocolError) -> str:
    """Upstream's close reason, `<type>.<code>`; just `<type>` when there is no code."""
    return f"{error.type}.{error.code}" if error.code else error.type


async def realtime_websocket(request: web.Request) -> web.WebSocketResponse:
    ctx = request.app[ServerContext.KEY]
    refusal = browser_refusal(request, ctx.config.server)
    if refusal is not None:
        _LOGGER.warning("refused a realtime connection from %s: %s", request.remote, refusal)
        raise web.HTTPForbidden(text=refusal)
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES,
                               compress=False)
    await ws.prepare(request)
    credential = _handshake_error(request)
    if not isinstance(credential, Credential):
        error, code = credential
        _LOGGER.info("realtime connection from %s refused: %s", request.remote, error.message)
        await ws.send_json({"type": "error", "event_id": new_id("event"), "error": {
            "type": error.type, "code": error.code, "message": error.message, "param": error.param, "event_id": None}})
        await ws.close(code=code, message=close_reason(error).encode())
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
    _LOGGER.info("session %s opened from %s (model '%s', %s key)", session.id, request.remote, quote(model),
                 credential.kind)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                try:
                    event = ce.parse_client_event(message.data)
                except RealtimeProtocolError as err:
                    session.protocol_error(err)
                    continue
                except Exception:  # a decoder bug must cost one error event, never the connection
                    _LOGGER.exception("session %s: internal error decoding a client event", session.id)
                    session.protocol_error(RealtimeProtocolError(
                        message="The server had an error while processing your request.", type="server_error"))
                    continue
                session.submit(event)
                # Take turns with the other connections: a client that floods the socket must not
                # hold the event loop for every message it has buffered.
                await asyncio.sleep(0)
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
