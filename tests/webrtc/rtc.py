"""A WebRTC client built on aiortc, as a browser would talk to Hearth: mic track, reply track, `oai-events`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hearth.server.transports.media_clock import FRAME_SAMPLES as FRAME
from hearth.server.transports.media_clock import MEDIA_RATE as RATE
from hearth.server.transports.media_clock import FrameClock, audio_frame


def tone(seconds: float, freq: float = 440.0, level: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


class Microphone(MediaStreamTrack):
    """48 kHz mono frames from queued PCM, in real time; silence when nothing is queued."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[np.ndarray] = []
        self._clock = FrameClock()
        #: monotonic time at which the last queued sample was sent, per `say` call
        self.sent_marks: list[float] = []
        self._ends: list[int] = []
        self._queued_until = 0

    def say(self, pcm: np.ndarray) -> None:
        self._queue.append(np.asarray(pcm, dtype=np.int16))
        self._queued_until = max(self._queued_until, self._clock.pts + FRAME) + len(pcm)
        self._ends.append(self._queued_until)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.next()
        out = np.zeros(FRAME, dtype=np.int16)
        filled = 0
        while filled < FRAME and self._queue:
            chunk = self._queue[0]
            take = min(len(chunk), FRAME - filled)
            out[filled:filled + take] = chunk[:take]
            self._queue[0] = chunk[take:]
            if not len(self._queue[0]):
                self._queue.pop(0)
            filled += take
        while self._ends and self._ends[0] <= pts + FRAME:
            self._ends.pop(0)
            self.sent_marks.append(time.monotonic())
        return audio_frame(out, pts)


@dataclass
class RtcClient:
    pc: RTCPeerConnection
    mic: Microphone
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    log: list[dict[str, Any]] = field(default_factory=list)
    #: (monotonic time, rms) of every remote audio frame
    heard: list[tuple[float, float]] = field(default_factory=list)
    channel: Any = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    def create(cls) -> RtcClient:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        client = cls(pc=pc, mic=Microphone())
        client.channel = pc.createDataChannel("oai-events")
        client.channel.on("open", client.opened.set)
        client.channel.on("message", client._on_message)
        pc.addTrack(client.mic)
        pc.on("track", client._on_track)
        return client

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.log.append(event)
        self.events.put_nowait(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                pcm = frame.to_ndarray().astype(np.float32) / 32768
                self.heard.append((time.monotonic(), float(np.sqrt(np.mean(pcm**2)))))

        self._reader = asyncio.get_running_loop().create_task(read())

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def wait_for(self, kind: str, timeout: float = 10.0,
                       where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} event; saw {[e['type'] for e in self.log][-30:]}")
            event = await asyncio.wait_for(self.events.get(), remaining)
            if event["type"] == kind and (where is None or where(event)):
                return event

    def loud_since(self, since: float, level: float = 0.01) -> float:
        """Seconds of remote audio louder than `level` since a monotonic time."""
        return sum(FRAME / RATE for at, rms in self.heard if at >= since and rms > level)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
