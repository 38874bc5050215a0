"""Timestamps along the WebRTC media path, for latency.py's breakdown (in-process server only).

The benchmark's aiortc client and the in-process Hearth server live in one process and
share one monotonic clock, so one set of wrappers around aiortc's sender, transport and
receiver (and Hearth's reply track, media sink and session) sees both ends. Every RTP
packet is keyed by (SSRC, RTP timestamp); a frame's pts maps onto its RTP timestamp
(aiortc's Opus encoder numbers packets by samples from the stream's first frame, and the
receiver's decoded frames are numbered from the first packet it got), so one audio frame
can be followed from the hand-off to aiortc to the decoded frame at the other end.

Uplink (per turn): the benchmark appends the last speech chunk -> the client's track hands
its frame to aiortc -> Opus-encoded, RTP sent -> the server's receiver gets the packet ->
the server's track delivers the decoded frame -> session.append_pcm.
Downlink: the session hands the reply's first PCM to the call's sink -> the reply track
puts it in a frame -> encoded, RTP sent -> the client's receiver gets the packet -> the
client's track delivers the decoded frame (after its jitter buffer and decoder thread).

Nothing here changes what is measured: each wrapper records the time and calls through.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_LOCK = threading.Lock()
#: libopus's algorithmic delay at 48 kHz (312 samples): a decoded frame carries its input from
#: 6.5 ms earlier, so any instant of a stream reaches the far side that much after its frame.
OPUS_LOOKAHEAD_MS = 6.5


def _peak(frame: Any) -> int:
    data = frame.to_ndarray()
    return int(np.abs(data.astype(np.int32)).max()) if data.size else 0


def chunk_key(pcm: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(pcm, dtype=np.int16).tobytes(), digest_size=8).hexdigest()


@dataclass
class Probe:
    #: ssrc -> {rtp ts: monotonic time the packet went to the DTLS transport}
    sent: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    #: ssrc -> rtp ts of the stream's first packet (pts 0)
    origin: dict[int, int] = field(default_factory=dict)
    #: ssrc -> {rtp ts: arrival time at the receiver}
    arrived: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    #: id(remote track) -> (ssrc, rtp ts of its first decoded frame)
    track_origin: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: ssrc -> {rtp ts: time the remote track delivered the decoded frame}
    decoded: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    #: ssrc -> [(rtp ts, peak)] of decoded frames in order
    decoded_peaks: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    #: response id -> (time the call's sink got its first PCM, id(reply track))
    reply_pcm: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: [(time, id(track), pts, peak)] of every reply-track frame
    reply_frames: list[tuple[float, int, int, int]] = field(default_factory=list)
    #: id(reply track) -> ssrc of the sender playing it
    reply_track_ssrc: dict[int, int] = field(default_factory=dict)
    #: chunk key (24 kHz PCM) -> times of the server's append_pcm of it (the WebSocket path;
    #: a repeated utterance appends the same chunk again)
    ws_appended: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def install(self) -> None:
        from aiortc import rtcrtpreceiver, rtcrtpsender
        from aiortc.rtcdtlstransport import RTCDtlsTransport
        from aiortc.rtp import is_rtcp

        from hearth.server.session.session import RealtimeSession
        from hearth.server.transports import webrtc

        probe = self

        next_encoded = rtcrtpsender.RTCRtpSender._next_encoded_frame

        async def _next_encoded_frame(self: Any, codec: Any) -> Any:
            track = self.track
            if isinstance(track, webrtc.ReplyTrack):
                probe.reply_track_ssrc[id(track)] = self._ssrc
            return await next_encoded(self, codec)

        rtcrtpsender.RTCRtpSender._next_encoded_frame = _next_encoded_frame

        send_rtp = RTCDtlsTransport._send_rtp

        async def _send_rtp(self: Any, data: bytes) -> None:
            if len(data) >= 12 and not is_rtcp(data):  # RTCP goes this way too
                now = time.monotonic()
                ts, ssrc = struct.unpack("!II", data[4:12])
                with _LOCK:
                    probe.origin.setdefault(ssrc, ts)
                    probe.sent[ssrc].setdefault(ts, now)
            await send_rtp(self, data)

        RTCDtlsTransport._send_rtp = _send_rtp

        handle = rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet

        async def _handle_rtp_packet(self: Any, packet: Any, arrival_time_ms: int) -> None:
            now = time.monotonic()
            with _LOCK:
                probe.arrived[packet.ssrc].setdefault(packet.timestamp, now)
                if self.track is not None and id(self.track) not in probe.track_origin:
                    probe.track_origin[id(self.track)] = (packet.ssrc, packet.timestamp)
            await handle(self, packet, arrival_time_ms)

        rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet

        remote_recv = rtcrtpreceiver.RemoteStreamTrack.recv

        async def recv(self: Any) -> Any:
            frame = await remote_recv(self)
            now = time.monotonic()
            found = probe.track_origin.get(id(self))
            if found is not None and self.kind == "audio":
                ssrc, first = found
                ts = (first + frame.pts) & 0xFFFFFFFF
                probe.decoded[ssrc].setdefault(ts, now)
                probe.decoded_peaks[ssrc].append((ts, _peak(frame)))
            return frame

        rtcrtpreceiver.RemoteStreamTrack.recv = recv

        reply_recv = webrtc.ReplyTrack.recv

        async def track_recv(self: Any) -> Any:
            frame = await reply_recv(self)
            probe.reply_frames.append((time.monotonic(), id(self), int(frame.pts), _peak(frame)))
            return frame

        webrtc.ReplyTrack.recv = track_recv

        reply_audio = webrtc.CallSink.reply_audio

        def sink_reply_audio(self: Any, audio: Any) -> None:
            probe.reply_pcm.setdefault(audio.response_id, (time.monotonic(), id(self.track)))
            reply_audio(self, audio)

        webrtc.CallSink.reply_audio = sink_reply_audio

        append_pcm = RealtimeSession.append_pcm

        def session_append_pcm(self: Any, pcm: np.ndarray, rate: int) -> None:
            now = time.monotonic()
            if rate == 24_000:
                probe.ws_appended[chunk_key(pcm)].append(now)
            append_pcm(self, pcm, rate)

        RealtimeSession.append_pcm = session_append_pcm

    # ------------------------------------------------------------------ queries

    def at(self, table: dict[int, dict[int, float]], ssrc: int, pts: int) -> float | None:
        """When the frame `pts` (from the stream's start) of stream `ssrc` passed the point `table` records."""
        first = self.origin.get(ssrc)
        if first is None:
            return None
        return table.get(ssrc, {}).get((first + pts) & 0xFFFFFFFF)

    def ws_appended_after(self, key: str, at: float) -> float | None:
        """The server's append_pcm of the chunk `key` sent at `at` (the first one since)."""
        return next((t for t in self.ws_appended.get(key, []) if t >= at), None)

    def first_reply_frame(self, response_id: str) -> tuple[int, int, float] | None:
        """(sender ssrc, pts, time handed to aiortc) of the reply track's first frame with the reply's sound."""
        given = self.reply_pcm.get(response_id)
        if given is None:
            return None
        at_given, track = given
        for at, frame_track, pts, peak in self.reply_frames:
            if frame_track == track and at >= at_given and peak > 0:
                ssrc = self.reply_track_ssrc.get(track)
                return None if ssrc is None else (ssrc, pts, at)
        return None

    def downlink(self, response_id: str) -> dict[str, float] | None:
        """The reply's first frame at each point, ms after the session handed over its first PCM."""
        given = self.reply_pcm.get(response_id)
        found = self.first_reply_frame(response_id)
        if given is None or found is None:
            return None
        ssrc, pts, framed = found
        marks = {"framed": framed, "sent": self.at(self.sent, ssrc, pts),
                 "arrived": self.at(self.arrived, ssrc, pts), "decoded": self.at(self.decoded, ssrc, pts)}
        if any(v is None for v in marks.values()):
            return None
        return {k: 1000.0 * (v - given[0]) for k, v in marks.items()}

    def uplink(self, ssrc: int, pts: int, appended: float) -> dict[str, float] | None:
        """The client's frame `pts` at each point, ms after the benchmark appended it."""
        marks = {"sent": self.at(self.sent, ssrc, pts), "arrived": self.at(self.arrived, ssrc, pts),
                 "decoded": self.at(self.decoded, ssrc, pts)}
        if any(v is None for v in marks.values()):
            return None
        return {k: 1000.0 * (v - appended) for k, v in marks.items()}

    def reply_jitter(self, window_s: float = 2.0) -> dict[str, dict[str, float]]:
        """How late the reply track's packets left and arrived, against their RTP timestamps.

        Per packet: (time - rtp time) minus its smallest value over the previous `window_s`,
        which is what a receiver's jitter estimate sees (NetEq sizes its target delay from it).
        p50/p95/max in ms, for frames carrying a reply and for the idle track's silence.
        """
        sound: dict[int, set[int]] = defaultdict(set)  # ssrc -> pts of frames with reply audio
        for _, track, pts, peak in self.reply_frames:
            ssrc = self.reply_track_ssrc.get(track)
            if ssrc is not None and peak > 0:
                sound[ssrc].add(pts)
        out: dict[str, dict[str, float]] = {}
        for name, table in (("sent", self.sent), ("arrived", self.arrived)):
            late: dict[str, list[float]] = {"reply": [], "idle": []}
            for ssrc in set(self.reply_track_ssrc.values()):
                first = self.origin.get(ssrc)
                if first is None:
                    continue
                points = sorted(((ts - first) & 0xFFFFFFFF, at) for ts, at in table.get(ssrc, {}).items())
                offsets = [(pts, at - pts / 48_000) for pts, at in points]
                low: list[tuple[int, float]] = []  # monotonic deque of (pts, offset) minima
                for pts, offset in offsets:
                    while low and low[-1][1] >= offset:
                        low.pop()
                    low.append((pts, offset))
                    while low[0][0] < pts - window_s * 48_000:
                        low.pop(0)
                    if pts >= offsets[0][0] + window_s * 48_000:  # a full window behind it
                        late["reply" if pts in sound[ssrc] else "idle"].append(1000 * (offset - low[0][1]))
            out[name] = {kind: {"n": len(v), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
                                "max": float(max(v))} for kind, v in late.items() if v}
        return out

