"""The SDK connection's surface that bench/latency.py's BenchSession uses, over WebRTC with aiortc.

A browser's view of a call: the microphone is an Opus track fed with the benchmark's 20 ms
chunks (24 kHz, upsampled to 48 kHz by repetition: no filter delay), server events arrive on
the `oai-events` data channel, and the reply arrives on the remote track. There are no
`response.output_audio.delta` events over WebRTC, so each 20 ms frame of the remote track
that carries reply audio is handed to BenchSession as one, stamped when aiortc delivered it
(after its jitter buffer and decoder): "first audio" is the first decoded frame holding the
reply, as the WebSocket's first delta is the first PCM of it. The idle track is digital
silence and Opus decodes that to exact zeros, so "holds the reply" is "not all zero": a
loudness threshold would skip the quiet first frames of a reply that the WebSocket counts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import bisect
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import numpy as np

MEDIA_RATE = 48_000
FRAME = 960
#: Peak (int16) from which a remote frame counts as reply audio; the idle track decodes to exact zeros.
SOUND_PEAK = 2
#: The criterion used before (RMS, full scale 1.0): kept to report both in the same run.
LOUD_RMS = 0.003


class _Mic:
    """A MediaStreamTrack whose frames are the benchmark's appended chunks, as they come."""

    kind = "audio"

    def __init__(self) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        class Track(MediaStreamTrack):
            kind = "audio"

            def __init__(self, owner: _Mic) -> None:
                super().__init__()
                self.owner = owner

            async def recv(self):  # noqa: ANN202 - aiortc's signature
                return await self.owner.next_frame()

        self.track = Track(self)
        self.frames: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue()
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0
        #: (monotonic time, pts) of every frame pushed, in order; pts -> when aiortc took it
        self.pushed: list[tuple[float, int]] = []
        self.handed: dict[int, float] = {}

    def push(self, pcm24k: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, np.repeat(pcm24k, 2)])
        now = time.monotonic()
        while len(self._pending) >= FRAME:
            self.frames.put_nowait((self._pts, self._pending[:FRAME]))
            self.pushed.append((now, self._pts))
            self._pending = self._pending[FRAME:]
            self._pts += FRAME

    def frame_pushed_after(self, at: float) -> tuple[float, int] | None:
        """(time, pts) of the first frame pushed at or after `at` (the chunk appended then)."""
        i = bisect.bisect_left(self.pushed, (at, -1))
        return self.pushed[i] if i < len(self.pushed) else None

    async def next_frame(self):  # noqa: ANN201 - av.AudioFrame
        from hearth.server.transports.media_clock import audio_frame

        pts, samples = await self.frames.get()
        self.handed[pts] = time.monotonic()
        return audio_frame(samples, pts)


class RtcConnection:
    def __init__(self, pc: Any, channel: Any, mic: _Mic) -> None:
        from openai._models import construct_type_unchecked
        from openai.types.realtime import RealtimeServerEvent

        self._construct = lambda data: construct_type_unchecked(value=data, type_=RealtimeServerEvent)
        self.pc, self.channel, self.mic = pc, channel, mic
        self.events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._latest_response: str | None = None
        #: response id -> monotonic time of its first remote frame louder than LOUD_RMS
        self.loud_at: dict[str, float] = {}
        self.jitter_frames: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self.input_audio_buffer = SimpleNamespace(append=self._append)
        self.session = SimpleNamespace(update=self._session_update)
        self.conversation = SimpleNamespace(item=SimpleNamespace(create=self._item_create))
        self.response = SimpleNamespace(create=self._response_create)
        channel.on("message", self._on_message)
        pc.on("track", self._on_track)

    @property
    def mic_ssrc(self) -> int | None:
        """The SSRC of the microphone's RTP stream (rtc_probe follows its packets by it)."""
        for sender in self.pc.getSenders():
            if sender.track is self.mic.track:
                return sender._ssrc  # noqa: SLF001
        return None

    # -- what BenchSession calls
    async def _append(self, audio: str) -> None:
        self.mic.push(np.frombuffer(base64.b64decode(audio), dtype=np.int16))

    async def _session_update(self, session: dict[str, Any]) -> None:
        self._send({"type": "session.update", "session": session})

    async def _item_create(self, item: dict[str, Any]) -> None:
        self._send({"type": "conversation.item.create", "item": item})

    async def _response_create(self) -> None:
        self._send({"type": "response.create"})

    async def recv_bytes(self) -> bytes:
        from websockets.exceptions import ConnectionClosedOK

        raw = await self.events.get()
        if raw is None:
            raise ConnectionClosedOK(None, None)
        return raw

    def parse_event(self, raw: bytes) -> Any:
        return self._construct(json.loads(raw))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
        self.events.put_nowait(None)

    # -- plumbing
    def _send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def _on_message(self, message: str | bytes) -> None:
        raw = message.encode() if isinstance(message, str) else message
        if b'"response.created"' in raw:
            self._latest_response = json.loads(raw)["response"]["id"]
        self.events.put_nowait(raw)

    def _on_track(self, track: Any) -> None:
        from aiortc.jitterbuffer import JitterBuffer
        from aiortc.mediastreams import MediaStreamError

        if self.jitter_frames == 0:  # play each packet as it comes, as Hearth's own receiver does
            from hearth.server.transports.webrtc import use_packet_per_frame_buffer

            use_packet_per_frame_buffer(self.pc, track)
        elif self.jitter_frames is not None:  # aiortc holds 4 frames (80 ms); a browser's NetEQ adapts
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    transceiver.receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(  # noqa: SLF001
                        capacity=16, prefetch=self.jitter_frames)

        silence_delta = base64.b64encode(bytes(FRAME)).decode()  # 20 ms of 24 kHz PCM16, for audio_ms

        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                samples = frame.to_ndarray()
                peak = int(np.abs(samples.astype(np.int32)).max())
                if self._latest_response and peak >= SOUND_PEAK:
                    if float(np.sqrt(np.mean((samples.astype(np.float32) / 32768) ** 2))) > LOUD_RMS:
                        self.loud_at.setdefault(self._latest_response, time.monotonic())
                    self.events.put_nowait(json.dumps({
                        "type": "response.output_audio.delta", "event_id": "event_rtc", "response_id":
                        self._latest_response, "item_id": "", "output_index": 0, "content_index": 0,
                        "delta": silence_delta}).encode())

        self._reader = asyncio.get_running_loop().create_task(read())


@contextlib.asynccontextmanager
async def rtc_connect(base_url: str, api_key: str, *, loopback: bool,
                      jitter_frames: int | None = None) -> AsyncIterator[RtcConnection]:
    """A WebRTC call to Hearth made with `client.realtime.calls.create`, as a browser's backend would."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from openai import AsyncOpenAI

    if loopback:  # keep every ICE check on 127.0.0.1 (the server offers only that there)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = _Mic()
    channel = pc.createDataChannel("oai-events")
    opened = asyncio.Event()
    channel.on("open", opened.set)
    pc.addTrack(mic.track)
    conn = RtcConnection(pc, channel, mic)
    conn.jitter_frames = jitter_frames
    await pc.setLocalDescription(await pc.createOffer())
    client = AsyncOpenAI(base_url=base_url, api_key=api_key or "none")
    started = time.monotonic()
    answer = await client.realtime.calls.create(sdp=pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
    await asyncio.wait_for(opened.wait(), 15)
    conn.connect_ms = 1000 * (time.monotonic() - started)
    try:
        yield conn
    finally:
        await conn.close()
        await client.close()
