#!/usr/bin/env python3
"""How much audio a real browser's jitter buffer (NetEq) holds on Hearth's reply track, on loopback.

latency.py's WebRTC client is aiortc, whose receiver holds a fixed number of frames
(`--rtc-client-jitter`). Which number stands for a browser? This asks one: Debian's
headless Chromium (Playwright, `executable_path=/usr/bin/chromium`, never a downloaded
browser) opens a call to the in-process default server from the console's origin, plays
the reply track through an <audio> element, asks for spoken replies over `oai-events`,
and reads the inbound audio stream's WebRTC stats: `jitterBufferDelay /
jitterBufferEmittedCount` (how long each sample waited in NetEq), `jitterBufferTargetDelay`
and `jitterBufferMinimumDelay`, over the idle track and over the replies (the target also per reply).

    .venv/bin/python bench/browser_jitter.py            # ~40 s; prints ms and 20 ms frames
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-gpu", "--no-sandbox"]

#: Runs in the page: a call with the API key, the reply track played, stats snapshots on demand.
PAGE_SETUP = """async (key) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', {direction: 'sendrecv'});
  const dc = pc.createDataChannel('oai-events');
  const opened = new Promise((ok) => dc.addEventListener('open', ok));
  window.__done = 0;
  dc.addEventListener('message', (m) => { if (JSON.parse(m.data).type === 'response.done') window.__done++; });
  pc.addEventListener('track', (e) => { const a = new Audio(); a.srcObject = e.streams[0] || new MediaStream([e.track]);
                                        a.play(); window.__audio = a; });
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch('/v1/realtime/calls', {method: 'POST', body: pc.localDescription.sdp,
                          headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + key}});
  if (res.status !== 201) throw new Error('call refused: ' + res.status + ' ' + await res.text());
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  await opened;
  window.__pc = pc; window.__dc = dc;
  window.__snap = async () => {
    for (const s of (await pc.getStats()).values())
      if (s.type === 'inbound-rtp' && s.kind === 'audio')
        return {delay: s.jitterBufferDelay, emitted: s.jitterBufferEmittedCount, target: s.jitterBufferTargetDelay,
                minimum: s.jitterBufferMinimumDelay, received: s.packetsReceived, concealed: s.concealedSamples,
                samples: s.totalSamplesReceived, at: performance.now()};
    return null;
  };
  window.__ask = (text) => {
    dc.send(JSON.stringify({type: 'conversation.item.create', item: {type: 'message', role: 'user',
            content: [{type: 'input_text', text}]}}));
    dc.send(JSON.stringify({type: 'response.create'}));
  };
}"""


def per_sample_ms(a: dict, b: dict, key: str) -> float | None:
    """Mean ms per emitted sample of a cumulative NetEq delay between two snapshots."""
    emitted = b["emitted"] - a["emitted"]
    return None if emitted <= 0 else 1000.0 * (b[key] - a[key]) / emitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-s", type=float, default=8.0, help="seconds of idle track before the replies")
    parser.add_argument("--replies", type=int, default=4, help="spoken replies to ask for (default 4)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "browser_jitter.json")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.server_harness import make_config, run_server

    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        config = make_config(Path(tmp), {"server": {"api_key": key}, "log_level": "warning"})
        print("starting the in-process Hearth server (loading models) ...", flush=True)
        with run_server(config) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = browser.new_context(bypass_csp=True).new_page()
                page.goto(f"http://127.0.0.1:{server.port}/")
                page.evaluate(PAGE_SETUP, key)
                version = browser.version
                page.wait_for_timeout(1000)
                start = page.evaluate("window.__snap()")
                page.wait_for_timeout(int(args.idle_s * 1000))
                idle = page.evaluate("window.__snap()")
                marks = [idle]
                for n in range(args.replies):
                    page.evaluate("(t) => window.__ask(t)", "What's the date today?" if n % 2 else "What time is it?")
                    page.wait_for_function(f"window.__done >= {n + 1}", timeout=30_000)
                    page.wait_for_timeout(2500)  # the reply plays out
                    marks.append(page.evaluate("window.__snap()"))
                replies = marks[-1]
            finally:
                browser.close()
    result = {"chromium": version,
              "idle": {k: per_sample_ms(start, idle, k) for k in ("delay", "target", "minimum")},
              "replies": {k: per_sample_ms(idle, replies, k) for k in ("delay", "target", "minimum")},
              "per_reply_target": [per_sample_ms(a, b, "target") for a, b in zip(marks, marks[1:])],
              "packets": replies["received"], "concealed_samples": replies["concealed"] - start["concealed"]}
    print(f"Chromium {version}, Hearth's reply track on loopback (20 ms Opus frames):")
    for phase in ("idle", "replies"):
        ms = result[phase]
        print(f"  {phase:8} NetEq delay per sample {ms['delay']:.1f} ms ({ms['delay'] / 20:.2f} frames); "
              f"target {ms['target']:.1f} ms, minimum {ms['minimum']:.1f} ms")
    print("  target per reply (ask -> 2.5 s after response.done): "
          + ", ".join(f"{ms:.0f}" for ms in result["per_reply_target"] if ms is not None) + " ms")
    print(f"  {result['packets']} packets, {result['concealed_samples']} samples concealed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
