"""The satellite benchmark: what a satellite costs, and what MQTT adds to a turn.

Runs, in turn:

1. `satellite_frame_cost.py` — wake word (openWakeWord, microWakeWord) and edge VAD cost
   per 80 ms frame, in µs and % of one core, p50/p95, with a plot;
2. `satellite_e2e.py` — end of speech → first reply audio at the satellite, over MQTT
   (embedded broker and Mosquitto) and over the WebSocket for the same utterances,
   p50/p95, with a plot.

Both write to bench/out/. `--frames-only` / `--e2e-only` run one part; other arguments
after `--` go to both.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--frames-only", action="store_true")
    part.add_argument("--e2e-only", action="store_true")
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    scripts = [] if args.e2e_only else ["satellite_frame_cost.py"]
    scripts += [] if args.frames_only else ["satellite_e2e.py"]
    for script in scripts:
        print(f"\n=== {script} ===", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *rest])
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
