"""The reply track: frames built and Opus-encoded in its clock thread, playback reported on the loop."""

from __future__ import annotations

import asyncio
import threading
import time

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError

from hearth.server.transports.media_clock import FRAME_SAMPLES, MEDIA_RATE
from hearth.server.transports.webrtc import ReplyTrack
from tests.webrtc.rtc import tone

Report = tuple[str, str | None, float, bool]


def decoded_peak(decoder: OpusDecoder, packet: av.Packet) -> int:
    frames = decoder.decode(JitterFrame(data=bytes(packet), timestamp=int(packet.pts)))
    return max(int(np.abs(f.to_ndarray().astype(np.int32)).max()) for f in frames)


async def test_packets_are_paced_numbered_and_carry_the_reply() -> None:
    reports: list[tuple[Report, bool]] = []
    loop_thread = threading.get_ident()
    track = ReplyTrack(lambda *a: reports.append((a, threading.get_ident() == loop_thread)))
    decoder = OpusDecoder()
    started = time.monotonic()
    packets = [await track.recv() for _ in range(3)]  # idle: silence
    track.push("resp_1", "item_1", tone(0.05))  # 2.5 frames
    track.finish_response("resp_1")
    packets += [await track.recv() for _ in range(7)]
    elapsed = time.monotonic() - started
    track.stop()
    assert [p.pts for p in packets] == [n * FRAME_SAMPLES for n in range(10)]  # contiguous RTP time
    assert 0.16 <= elapsed < 0.5, elapsed  # nine frame lengths after the first: paced, not a burst
    peaks = [decoded_peak(decoder, p) for p in packets]
    assert peaks[:3] == [0, 0, 0]  # digital silence decodes to zeros
    assert sum(1 for p in peaks if p > 3000) >= 2, peaks  # the tone went out
    await asyncio.sleep(0.05)  # the last reports cross from the clock thread
    assert [r for r, _ in reports] == [("resp_1", "item_1", FRAME_SAMPLES * 1000 / MEDIA_RATE, False),
                                      ("resp_1", "item_1", 50.0, True)]
    assert all(on_loop for _, on_loop in reports)  # the session is only ever called on its loop
    try:
        await asyncio.wait_for(track.recv(), 1)
    except MediaStreamError:
        pass
    else:
        raise AssertionError("a stopped track went on sending")


async def test_flush_reports_what_played_after_the_start_report() -> None:
    reports: list[Report] = []
    track = ReplyTrack(lambda *a: reports.append(a))
    await track.recv()
    track.push("resp_1", None, tone(1.0))
    for _ in range(3):
        await track.recv()
    track.flush()  # barge-in
    await asyncio.sleep(0.05)
    assert [r[3] for r in reports] == [False, True]  # started, then finished: never the other way round
    played = reports[1][2]
    assert 20.0 <= played <= 80.0, played  # one to three frames (plus the one built ahead), not the whole second
    after = [await track.recv() for _ in range(3)]
    track.stop()
    decoder = OpusDecoder()
    assert decoded_peak(decoder, after[-1]) == 0  # silence again
