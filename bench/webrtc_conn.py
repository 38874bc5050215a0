"""The SDK connection's surface that bench/latency.py's BenchSession uses, over WebRTC with aiortc.

A browser's view of a call: the microphone is an Opus track fed with the benchmark's 20 ms
chunks (24 kHz, upsampled to 48 kHz by repetition: no filter delay), server events arrive on
the `oai-events` data channel, and the reply arrives on the remote track. There are no
`response.output_audio.delta` events over WebRTC, so each loud 20 ms frame of the remote
track is handed to BenchSession as one, stamped when aiortc delivered it (after its jitter
buffer): "first audio" is the first reply sound the listener could hear.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import numpy as np

MEDIA_RATE = 48_000
FRAME = 960
#: RMS (full scale 1.0) above which a remote frame counts as reply sound; the idle track is digital silence.
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
        self.frames: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def push(self, pcm24k: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, np.repeat(pcm24k, 2)])
        while len(self._pending) >= FRAME:
            self.frames.put_nowait(self._pending[:FRAME])
            self._pending = self._pending[FRAME:]

    async def next_frame(self):  # noqa: ANN201 - av.AudioFrame
        import av

        samples = await self.frames.get()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = MEDIA_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, MEDIA_RATE)
        self._pts += FRAME
        return frame


class RtcConnection:
    def __init__(self, pc: Any, channel: Any, mic: _Mic) -> None:
        from openai._models import construct_type_unchecked
        from openai.types.realtime import RealtimeServerEvent

        self._construct = lambda data: construct_type_unchecked(value=data, type_=RealtimeServerEvent)
        self.pc, self.channel, self.mic = pc, channel, mic
        self.events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._latest_response: str | None = None
        self.jitter_frames: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self.input_audio_buffer = SimpleNamespace(append=self._append)
        self.session = SimpleNamespace(update=self._session_update)
        self.conversation = SimpleNamespace(item=SimpleNamespace(create=self._item_create))
        self.response = SimpleNamespace(create=self._response_create)
        channel.on("message", self._on_message)
        pc.on("track", self._on_track)

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
                pcm = frame.to_ndarray().astype(np.float32) / 32768
                if self._latest_response and float(np.sqrt(np.mean(pcm**2))) > LOUD_RMS:
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
