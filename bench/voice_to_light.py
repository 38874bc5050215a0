#!/usr/bin/env python3
"""Voice to light: "Hey Jarvis. Turn on the kitchen light." on a real satellite -> a real Home Assistant's light.

Everything real, as in tests/ha/test_live_home_assistant.py (whose harness this reuses:
tests/ha/netns.py and tests/ha/voice_driver.py): a network namespace with Mosquitto
(`set_tcp_nodelay true`) and `hass` 2025.4.4 with template lights, its MQTT integration and
the Hearth integration through their real config flows; the real Hearth server (default
cascade engine: Silero VAD -> Whisper tiny.en -> intents brain -> piper) on that broker; the
real satellite process in file mode, once per turn, with piper's request WAV. Before each
turn the light is switched off over REST.

Per turn:

* **tool round trip**: the server's `HomeAssistantTools.call`, `tool-call` published ->
  `tool-result` back (Home Assistant ran `async_call_tool` in between);
* **voice to light**: the end of speech (the server VAD's `silence_began` turn mark) ->
  Home Assistant's own `last_changed` of `light.kitchen`;
* **voice to call**: the end of speech -> the tool call sent (VAD silence, STT, brain).

Needs root (the namespace), iproute2, Mosquitto and `.ci/ha-env 2025.4`.

    .venv/bin/python bench/voice_to_light.py            # 10 turns
    .venv/bin/python bench/voice_to_light.py --turns 20

Prints per-turn numbers and p50/p95; writes bench/out/voice_to_light.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ha.netns import Unavailable, run_driver  # noqa: E402


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voice-to-light-") as tmp:
        try:
            result, log = run_driver("voice_driver.py", Path(tmp), str(args.turns), timeout=300 + 60 * args.turns)
        except Unavailable as err:
            print(f"cannot run: {err}", file=sys.stderr)
            return 2
    if result is None:
        print(log, file=sys.stderr)
        return 1
    print(f"server start (models loaded) {result['server_start_s']} s")
    print(f"{'turn':>4} {'light':>5} {'round trip ms':>14} {'voice->call ms':>15} {'voice->light ms':>16}")
    for index, turn in enumerate(result["turns"]):
        print(f"{index:>4} {turn['light']:>5} {turn['round_trip_ms']!s:>14} {turn['voice_to_call_ms']!s:>15} "
              f"{turn['voice_to_light_ms']!s:>16}")
    summary = {}
    for key in ("round_trip_ms", "voice_to_call_ms", "voice_to_light_ms"):
        values = [t[key] for t in result["turns"] if t[key] is not None]
        if values:
            summary[key] = {"n": len(values), "p50": statistics.median(values), "p95": _p(values, 0.95),
                            "min": min(values), "max": max(values)}
            print(f"{key}: p50 {summary[key]['p50']:.1f}  p95 {summary[key]['p95']:.1f}  "
                  f"min {summary[key]['min']:.1f}  max {summary[key]['max']:.1f}  (n={len(values)})")
    print(f"first reply heard as {result['turns'][0].get('reply_transcript')!r}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "voice_to_light.json").write_text(json.dumps({"summary": summary, **result}, indent=2))
    ok = all(t["light"] == "on" for t in result["turns"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
