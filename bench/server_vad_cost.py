"""What the server's Silero VAD costs per 32 ms frame (512 samples at 16 kHz), on this machine.

Every session with server VAD runs one frame through Silero per 32 ms of microphone audio, on the
event loop's executor; the per-frame cost bounds how many listening sessions two cores can carry.
(This was a timed assertion in tests/engines/test_cascade_vad.py: a figure, not a test.)

Prints p50/p95/mean per frame in µs and as % of one CPU core (100 % = 32 ms of CPU per 32 ms of audio).

    python bench/server_vad_cost.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearth.server.engines.cascade.vad import FRAME_SAMPLES, SileroVad  # noqa: E402

FRAME_S = FRAME_SAMPLES / 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames to time (default 2000, about 64 s of audio)")
    args = parser.parse_args()

    vad = SileroVad()
    rng = np.random.default_rng(0)
    # Silence, low noise and a loud tone, in turn: the model's cost does not depend on the input,
    # but a real stream is not all zeros.
    frames = [
        np.zeros(FRAME_SAMPLES, dtype=np.float32),
        (rng.standard_normal(FRAME_SAMPLES) * 0.01).astype(np.float32),
        (0.5 * np.sin(np.arange(FRAME_SAMPLES) * 2 * np.pi * 440 / 16000)).astype(np.float32),
    ]
    for i in range(50):  # warm-up
        vad.probability(frames[i % 3])
    costs = []
    for i in range(args.frames):
        started = time.perf_counter()
        vad.probability(frames[i % 3])
        costs.append(time.perf_counter() - started)
    us = sorted(c * 1e6 for c in costs)
    p50, p95, mean = statistics.median(us), us[int(0.95 * (len(us) - 1))], statistics.fmean(us)
    print(f"server Silero VAD, {args.frames} frames of {FRAME_SAMPLES} samples, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"per frame: p50 {p50:.0f} µs, p95 {p95:.0f} µs, mean {mean:.0f} µs "
          f"({100 * mean / 1e6 / FRAME_S:.2f} % of one core)")


if __name__ == "__main__":
    main()
