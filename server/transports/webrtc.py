"""The Realtime WebRTC transport (`POST /v1/realtime/calls`): SDP, ICE, Opus tracks, the `oai-events` channel.

Bytes in, bytes out, as the WebSocket transport: the data channel carries the same
JSON events, the microphone track feeds the session's audio input, and the reply
track plays what the session sends to its media sink. The transport reports how
much of each reply it has played; the session decides what that means (truncation,
`output_audio_buffer.*` events). A sideband WebSocket (`/v1/realtime?call_id=`) lets a
backend join a call's session.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aioice.ice
import av
import numpy as np
from aiohttp import BodyPartReader, web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..context import ServerContext
from ..options import is_loopback
from ..protocol import client_events as ce
from ..protocol.errors import RealtimeProtocolError
from ..protocol.ids import new_id
from ..protocol.server_events import ServerEvent
from ..session.interfaces import Playback, ReplyAudio
from ..session.session import RealtimeSession
from .client_secrets import (
    ClientSecretStore,
    Credential,
    authenticate_request,
    bind_session,
    error_response,
    session_defaults_for,
)
from .media_clock import FRAME_SAMPLES, MEDIA_RATE, FrameClock, audio_frame

_LOGGER = logging.getLogger(__name__)

DATA_CHANNEL = "oai-events"
#: A call whose peer has not connected by then is dropped (an abandoned offer).
CONNECT_TIMEOUT_S = 30.0
MAX_SDP_BYTES = 64 * 1024

# ---------------------------------------------------------------------------- loopback ICE candidates

#: aioice leaves 127.0.0.1 out of its host candidates, so a browser on this machine could
#: never reach a server bound to loopback. Calls whose server listens on loopback offer
#: a loopback candidate instead; the flag travels with the task that gathers.
_LOOPBACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("hearth_loopback_ice", default=False)
_host_addresses = aioice.ice.get_host_addresses


def _gather_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _LOOPBACK_ONLY.get():
        return ["127.0.0.1"] if use_ipv4 else []
    return _host_addresses(use_ipv4, use_ipv6)


aioice.ice.get_host_addresses = _gather_addresses


# ---------------------------------------------------------------------------- the reply track


@dataclass
class _Reply:
    """One response's audio on the track: what is queued, what has gone out."""

    response_id: str
    item_id: str | None
    queued: deque[np.ndarray] = field(default_factory=deque)
    played: int = 0
    generating: bool = True
    reported_start: bool = False


PlayedCallback = Callable[[str, str | None, float, bool], None]


class ReplyTrack(MediaStreamTrack):
    """An audio track paced in real time: reply audio when there is some, silence otherwise.

    `on_played(response_id, item_id, played_ms, finished)` is called when a reply's first
    frame goes out and when it ends (drained after its response finished, or cut off).
    """

    kind = "audio"

    def __init__(self, on_played: PlayedCallback) -> None:
        super().__init__()
        self._on_played = on_played
        self._replies: deque[_Reply] = deque()
        self._clock = FrameClock()

    def push(self, response_id: str, item_id: str | None, pcm: np.ndarray) -> None:
        reply = self._reply(response_id, item_id)
        if reply is not None and len(pcm):
            reply.queued.append(np.asarray(pcm, dtype=np.int16))

    def finish_response(self, response_id: str) -> None:
        """No more audio comes for this response; it ends once its queue drains."""
        for reply in self._replies:
            if reply.response_id == response_id:
                reply.generating = False

    def flush(self) -> None:
        """Stop playing now (barge-in, `output_audio_buffer.clear`): every queued reply ends where it is."""
        while self._replies:
            reply = self._replies.popleft()
            self._on_played(reply.response_id, reply.item_id, reply.played * 1000 / MEDIA_RATE, True)

    def _reply(self, response_id: str, item_id: str | None) -> _Reply | None:
        for reply in self._replies:
            if reply.response_id == response_id:
                return reply
        reply = _Reply(response_id, item_id)
        self._replies.append(reply)
        return reply

    def _next_samples(self) -> np.ndarray:
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._replies:
            reply = self._replies[0]
            if not reply.queued:
                if reply.generating:
                    break  # the engine is behind: play silence and wait for more
                self._replies.popleft()
                self._on_played(reply.response_id, reply.item_id, reply.played * 1000 / MEDIA_RATE, True)
                continue
            chunk = reply.queued[0]
            take = min(len(chunk), FRAME_SAMPLES - filled)
            out[filled:filled + take] = chunk[:take]
            if take == len(chunk):
                reply.queued.popleft()
            else:
                reply.queued[0] = chunk[take:]
            filled += take
            reply.played += take
            if not reply.reported_start:
                reply.reported_start = True
                self._on_played(reply.response_id, reply.item_id, reply.played * 1000 / MEDIA_RATE, False)
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.next()
        return audio_frame(self._next_samples(), pts)


def downmix(frame: av.AudioFrame) -> np.ndarray:
    """int16 mono from an aiortc frame (packed s16, 48 kHz stereo even when the sender was mono)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels == 1:
        return data.reshape(-1).astype(np.int16, copy=False)
    mixed = data.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels
    return mixed.astype(np.int16)


# ---------------------------------------------------------------------------- the call's sink


class _Subscriber:
    """A sideband WebSocket's ordered writer."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._write(), name="sideband-writer")

    async def _write(self) -> None:
        try:
            while (text := await self.queue.get()) is not None:
                await self.ws.send_str(text)
        except (ConnectionResetError, RuntimeError) as err:
            _LOGGER.debug("sideband writer stopped: %s", err)


class CallSink:
    """The session's event and media sink for one call: the data channel, sidebands, the reply track."""

    def __init__(self, call_id: str, on_close: Callable[[int, str], None]) -> None:
        self.call_id = call_id
        self.channel: RTCDataChannel | None = None
        self._pending: list[str] = []
        self.subscribers: list[_Subscriber] = []
        self._on_close = on_close
        self.track = ReplyTrack(self._played)
        self.session: RealtimeSession | None = None
        self.sent: int = 0

    # EventSink -----------------------------------------------------------
    def send(self, event: ServerEvent) -> None:
        wire = event.wire()
        self._observe(wire)
        text = json.dumps(wire, separators=(",", ":"))
        if self.channel is not None and self.channel.readyState == "open":
            self._send_channel(text)
        else:
            self._pending.append(text)
        for subscriber in self.subscribers:
            subscriber.queue.put_nowait(text)

    def close(self, code: int, reason: str) -> None:
        self._on_close(code, reason)

    # MediaSink -----------------------------------------------------------
    def reply_audio(self, audio: ReplyAudio) -> None:
        if audio.rate != MEDIA_RATE:  # the session resamples to media_rate; anything else is a bug
            raise ValueError(f"reply audio at {audio.rate} Hz on a {MEDIA_RATE} Hz track")
        self.track.push(audio.response_id, audio.item_id, audio.pcm)

    # ----------------------------------------------------------------------
    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for text in pending:
            self._send_channel(text)

    def _send_channel(self, text: str) -> None:
        assert self.channel is not None
        try:
            self.channel.send(text)
            self.sent += 1
        except Exception as err:  # a closed or overfull channel must not break the session
            _LOGGER.info("call %s: event not delivered on the data channel: %s", self.call_id, err)

    def _observe(self, wire: dict[str, Any]) -> None:
        """Follow the events that tell the reply track when a reply ends or is cut off."""
        kind = wire.get("type")
        if kind == "response.done":
            response = wire.get("response") or {}
            details = response.get("status_details") or {}
            self.track.finish_response(response.get("id", ""))
            if response.get("status") == "cancelled" and details.get("reason") == "turn_detected":
                self.track.flush()  # barge-in: the server stops the playback itself
        elif kind == "output_audio_buffer.cleared":
            self.track.flush()

    def _played(self, response_id: str, item_id: str | None, played_ms: float, finished: bool) -> None:
        session = self.session
        if session is None:
            return
        # Deferred: the report may arrive inside one of the session's own handlers.
        asyncio.get_running_loop().call_soon(session.report_playback, Playback(
            response_id=response_id, item_id=item_id, played_ms=played_ms, finished=finished))


# ---------------------------------------------------------------------------- calls


@dataclass(eq=False)
class Call:
    id: str
    pc: RTCPeerConnection
    sink: CallSink
    session: RealtimeSession
    credential: Credential
    created_at: float = field(default_factory=time.monotonic)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closed: bool = False
    #: Monotonic time of the first microphone frame (diagnostics, benchmarks).
    first_mic_frame_at: float | None = None


class CallRegistry:
    """The live WebRTC calls by id; each is closed on hangup, on peer failure and at shutdown."""

    KEY: ClassVar[web.AppKey[CallRegistry]]

    def __init__(self, ctx: ServerContext | None = None, store: ClientSecretStore | None = None) -> None:
        self.calls: dict[str, Call] = {}
        self.ctx = ctx
        self.store = store

    async def close(self, call: Call, reason: str) -> None:
        if call.closed:
            return
        call.closed = True
        self.calls.pop(call.id, None)
        if self.ctx is not None:
            self.ctx.sessions.closed(call.session)
        else:
            call.session.close()
        for subscriber in call.sink.subscribers:
            subscriber.queue.put_nowait(None)
            await asyncio.shield(_close_ws(subscriber.ws, 1000, b"call ended"))
        for task in list(call.tasks):
            task.cancel()
        call.sink.track.stop()
        await call.pc.close()
        _LOGGER.info("call %s closed (%s)", call.id, reason)

    async def close_all(self) -> None:
        for call in list(self.calls.values()):
            await self.close(call, "server shutdown")


CallRegistry.KEY = web.AppKey("hearth_calls", CallRegistry)


async def _close_ws(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    try:
        await ws.close(code=code, message=message)
    except (ConnectionResetError, RuntimeError):
        pass


async def calls_context(app: web.Application) -> AsyncIterator[None]:
    """The ephemeral key store and the call registry; every peer is closed on shutdown."""
    store = app[ClientSecretStore.KEY] = ClientSecretStore()
    registry = app[CallRegistry.KEY] = CallRegistry(app.get(ServerContext.KEY), store)
    yield
    await registry.close_all()


def _spawn(call: Call, coro: Any, name: str) -> None:
    task = asyncio.get_running_loop().create_task(coro, name=f"{call.id}:{name}")
    call.tasks.add(task)
    task.add_done_callback(call.tasks.discard)


# ---------------------------------------------------------------------------- HTTP handlers


def _bad_request(message: str, code: str = "invalid_value", param: str | None = None) -> web.Response:
    return error_response(RealtimeProtocolError(message=message, code=code, param=param), 400)


async def _read_offer(request: web.Request) -> tuple[str, dict[str, Any] | None] | web.Response:
    """The SDP offer and the optional session configuration, from either request form the SDK sends."""
    content_type = request.content_type
    if content_type == "multipart/form-data":
        sdp: str | None = None
        session: dict[str, Any] | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read(decode=True)
            if len(data) > MAX_SDP_BYTES:
                return _bad_request(f"The '{part.name}' part is too large.", param=part.name)
            if part.name == "sdp":
                sdp = data.decode("utf-8", "replace")
            elif part.name == "session":
                try:
                    session = json.loads(data)
                except ValueError:
                    return _bad_request("The 'session' part is not valid JSON.", "invalid_json", "session")
                if not isinstance(session, dict):
                    return _bad_request("The 'session' part must be a JSON object.", param="session")
        if not sdp:
            return _bad_request("Missing required parameter: 'sdp'.", "missing_required_parameter", "sdp")
        return sdp, session
    if content_type in ("application/sdp", "text/plain"):
        body = await request.content.read(MAX_SDP_BYTES + 1)
        if len(body) > MAX_SDP_BYTES:
            return _bad_request("The SDP offer is too large.", param="sdp")
        if not body.strip():
            return _bad_request("Missing required parameter: 'sdp'.", "missing_required_parameter", "sdp")
        return body.decode("utf-8", "replace"), None
    return _bad_request(f"Unsupported Content-Type '{content_type}': send application/sdp or multipart/form-data "
                        "with 'sdp' and 'session' parts.", param="Content-Type")


async def create_call(request: web.Request) -> web.Response:
    """`POST /v1/realtime/calls`: answer the offer (201, SDP, Location) and start the call's session."""
    credential = authenticate_request(request)  # host, origin and key
    ctx = request.app[ServerContext.KEY]
    registry = request.app[CallRegistry.KEY]
    offer = await _read_offer(request)
    if isinstance(offer, web.Response):
        return offer
    sdp, requested = offer
    defaults = session_defaults_for(ctx.session_defaults, credential)
    secret = credential.secret
    kind = secret.kind if secret is not None else "realtime"
    if requested is not None:
        if requested.get("type", kind) != kind:
            return _bad_request(f"This key opens '{kind}' sessions.", param="session.type")
        try:
            defaults = {**defaults, **bind_session(defaults, {"type": kind, **requested})}
        except RealtimeProtocolError as err:
            return error_response(err, 400)
    if "m=" not in sdp or "v=0" not in sdp:
        return _bad_request("The request body is not an SDP offer.", param="sdp")

    call_id = new_id("rtc")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    call: Call | None = None

    def close_soon(code: int, reason: str) -> None:
        if call is not None:
            asyncio.get_running_loop().create_task(registry.close(call, f"{code} {reason}"))

    sink = CallSink(call_id, close_soon)
    model = (requested or {}).get("model") or (secret.model if secret else None) or "hearth"
    # Reply audio goes to the track at 48 kHz; the transport reports what it played.
    session = ctx.sessions.open(sink, kind=kind, model=model, defaults=defaults, media=sink,
                                media_rate=MEDIA_RATE, playback_events=True)
    sink.session = session
    call = Call(id=call_id, pc=pc, sink=sink, session=session, credential=credential)

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL:
            _LOGGER.info("call %s: ignoring data channel %r", call_id, channel.label)
            return
        sink.attach(channel)

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if isinstance(message, str):
                _submit_text(session, message)
            else:
                session.protocol_error(RealtimeProtocolError(
                    message="Expected a text message on the data channel; binary messages are not supported.",
                    code="invalid_event"))

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            use_packet_per_frame_buffer(pc, track)
            _spawn(call, _pump_microphone(call, track), "microphone")

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        _LOGGER.debug("call %s: connection %s", call_id, pc.connectionState)
        if pc.connectionState in ("failed", "closed"):
            await registry.close(call, f"peer connection {pc.connectionState}")

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                pc.addTrack(sink.track)
                break
        answer = await pc.createAnswer()
        token = _LOOPBACK_ONLY.set(is_loopback(ctx.config.server.host))
        try:
            await pc.setLocalDescription(answer)
        finally:
            _LOOPBACK_ONLY.reset(token)
        # aiortc renders localDescription from live state: take it now, candidates and all.
        answer_sdp = pc.localDescription.sdp
    except (ValueError, TypeError, AttributeError, av.error.FFmpegError) as err:
        _LOGGER.info("call offer refused: %s", err)
        ctx.sessions.closed(session)
        await pc.close()
        return _bad_request(f"Invalid SDP offer: {err}", param="sdp")

    registry.calls[call_id] = call
    _spawn(call, _connect_watchdog(registry, call), "watchdog")
    _LOGGER.info("call %s opened from %s (%s key)", call_id, request.remote, credential.kind)
    return web.Response(status=201, text=answer_sdp, content_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call_id}"})


class PacketPerFrameBuffer:
    """A jitter buffer for Opus, which carries one frame per RTP packet: each packet goes to the
    decoder as it arrives, in order; a late or repeated one is dropped.

    aiortc's audio receiver holds four frames (80 ms) and releases a frame only when the next
    one has arrived (20 ms more). On a LAN packets come in order, and the session's VAD would
    rather hear the microphone 100 ms sooner: this takes that much off every turn.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._last is not None:
            ahead = (sequence - self._last) % 65536
            if ahead == 0 or ahead >= 0x8000:
                return False, None
        self._last = sequence
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # noqa: SLF001


def use_packet_per_frame_buffer(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    """Give the receiver of `track` a PacketPerFrameBuffer (aiortc has no option for it)."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if receiver.track is track and hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
            receiver._RTCRtpReceiver__jitter_buffer = PacketPerFrameBuffer()  # noqa: SLF001
            return True
    _LOGGER.warning("aiortc's audio receiver has no jitter buffer where expected; keeping its default (80 ms)")
    return False


def _submit_text(session: RealtimeSession, text: str) -> None:
    try:
        event = ce.parse_client_event(text)
    except RealtimeProtocolError as err:
        session.protocol_error(err)
        return
    session.submit(event)


async def _pump_microphone(call: Call, track: MediaStreamTrack) -> None:
    """Microphone frames into the session: downmixed here, resampled once inside the session."""
    session = call.session
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        if call.first_mic_frame_at is None:
            call.first_mic_frame_at = time.monotonic()
        session.append_pcm(downmix(frame), frame.sample_rate)
    if not call.closed:
        session.end_input()


async def _connect_watchdog(registry: CallRegistry, call: Call) -> None:
    await asyncio.sleep(CONNECT_TIMEOUT_S)
    if call.pc.connectionState != "connected":
        await registry.close(call, f"peer did not connect within {CONNECT_TIMEOUT_S:.0f} s")


def _find_call(request: web.Request) -> Call | web.Response:
    registry = request.app[CallRegistry.KEY]
    call = registry.calls.get(request.match_info["call_id"])
    if call is None:
        return error_response(RealtimeProtocolError(
            message=f"Call '{request.match_info['call_id']}' not found.", code="call_not_found",
            param="call_id"), 404)
    return call


def _may_control(credential: Credential, call: Call) -> bool:
    """The API key holder controls every call; an ephemeral key only the calls it opened."""
    if credential.kind != "ephemeral":
        return True
    return call.credential.secret is credential.secret


async def hangup_call(request: web.Request) -> web.Response:
    """`POST /v1/realtime/calls/{id}/hangup`: end the call; its ephemeral key opens no more sessions."""
    credential = authenticate_request(request)
    found = _find_call(request)
    if isinstance(found, web.Response):
        return found
    if not _may_control(credential, found):
        return _find_call_refused(found)
    if found.credential.secret is not None:
        request.app[ClientSecretStore.KEY].revoke(found.credential.secret)
    await request.app[CallRegistry.KEY].close(found, "hung up")
    return web.Response(status=200)


def _find_call_refused(call: Call) -> web.Response:
    return error_response(RealtimeProtocolError(
        message=f"Call '{call.id}' not found.", code="call_not_found", param="call_id"), 404)


async def sip_only(request: web.Request) -> web.Response:
    """accept / reject / refer are for SIP calls, which Hearth does not take."""
    authenticate_request(request)
    found = _find_call(request)
    if isinstance(found, web.Response):
        return found
    action = request.path.rsplit("/", 1)[-1]
    return _bad_request(f"Call '{found.id}' is a WebRTC call; '{action}' applies to SIP calls only.",
                        param="call_id")


async def attach_sideband(request: web.Request, ws: web.WebSocketResponse, call_id: str) -> None:
    """`GET /v1/realtime?call_id=rtc_…`: join a call's session (ws is prepared and authorised)."""
    registry = request.app[CallRegistry.KEY]
    ctx = request.app[ServerContext.KEY]
    call = registry.calls.get(call_id)
    if call is None:
        await ws.send_json({"type": "error", "event_id": new_id("event"), "error": {
            "type": "invalid_request_error", "code": "call_not_found", "message": f"Call '{call_id}' not found.",
            "param": "call_id", "event_id": None}})
        await ws.close(code=4000, message=b"invalid_request_error.call_not_found")
        return
    subscriber = _Subscriber(ws)
    call.sink.subscribers.append(subscriber)
    ctx.websockets.add(ws)
    session = call.session
    subscriber.queue.put_nowait(json.dumps({"type": "session.created", "event_id": new_id("event"),
                                            "session": session.session_wire()}))
    _LOGGER.info("call %s: sideband attached from %s", call_id, request.remote)
    try:
        async for message in ws:
            if message.type.name == "TEXT":
                _submit_text(session, message.data)
            elif message.type.name == "BINARY":
                session.protocol_error(RealtimeProtocolError(
                    message="Expected a text WebSocket message; binary frames are not supported.",
                    code="invalid_event"))
    finally:
        if subscriber in call.sink.subscribers:
            call.sink.subscribers.remove(subscriber)
        subscriber.queue.put_nowait(None)
        ctx.websockets.discard(ws)
        _LOGGER.info("call %s: sideband detached", call_id)


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/realtime/calls", create_call)
        app.router.add_post(f"{prefix}/realtime/calls/{{call_id}}/hangup", hangup_call)
        for action in ("accept", "reject", "refer"):
            app.router.add_post(f"{prefix}/realtime/calls/{{call_id}}/{action}", sip_only)
