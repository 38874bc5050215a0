"""The satellite runs without the server's dependencies; state hooks and the LED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.satellite.config import HooksSection, LedSection
from hearth.satellite.feedback import CommandHook, GpioLed, StateChange

FORBIDDEN = (
    "hearth.server",
    "aiohttp",
    "pydantic",
    "faster_whisper",
    "ctranslate2",
    "piper",
    "openai",
    "agents",
    "amqtt",
    "hassil",
    "onnxruntime",  # only the openwakeword engine pulls it in, and only when it is used
    "sklearn",
)


def _modules_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    return json.loads(out.splitlines()[-1])


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_importing_the_satellite_loads_no_server_modules():
    modules = _modules_after(
        "import pkgutil, importlib, hearth.satellite as s\n"
        "[importlib.import_module('hearth.satellite.' + m.name) for m in pkgutil.iter_modules(s.__path__) if m.name != '__main__']"
    )
    assert "hearth.satellite.satellite" in modules and "paho.mqtt.client" in modules
    assert _forbidden(modules) == []


def test_a_micro_satellite_loads_neither_server_modules_nor_openwakeword():
    modules = _modules_after(
        "import argparse, queue\n"
        "from hearth.satellite.cli import build_satellite, configure_parser, config_from_args\n"
        "p = argparse.ArgumentParser(); configure_parser(p)\n"
        "a = p.parse_args(['--id', 'k', '--mqtt-url', 'mqtt://127.0.0.1:9', '--wake-engine', 'micro',"
        " '--input-wav', '/dev/null' if False else __import__('tempfile').mkstemp(suffix='.wav')[1]])\n"
        "import wave; w = wave.open(a.input_wav, 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(b'\\0\\0'*320); w.close()\n"
        "sat = build_satellite(config_from_args(a), a)\n"
    )
    assert "pymicro_wakeword" in modules
    assert "openwakeword" not in modules and "tflite_runtime" not in modules
    assert _forbidden(modules) == []


def test_hearth_cli_integration_point():
    """The main `hearth` CLI lazily imports hearth.satellite.cli and calls add_parser."""
    import argparse

    from hearth.satellite import cli

    parser = argparse.ArgumentParser(prog="hearth")
    sub = parser.add_subparsers(dest="command")
    assert cli.add_parser(sub).prog.endswith("satellite")
    args = parser.parse_args(["satellite", "--id", "kitchen", "--input-wav", "x.wav", "--fast", "--output-dir", "out"])
    assert args.func is cli.run_from_args and args.satellite_id == "kitchen" and args.fast
    with pytest.raises(SystemExit):
        parser.parse_args(["satellite", "--output-wav", "a.wav", "--output-dir", "b"])


def test_cli_reports_config_errors(capsys):
    from hearth.satellite.cli import main

    assert main(["--mqtt-url", "mqtt://127.0.0.1:1"]) == 2
    assert "satellite.id is required" in capsys.readouterr().err


def _wait_for(path: Path, lines: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return path.read_text().splitlines()
        time.sleep(0.02)
    raise AssertionError(f"{path} has {path.read_text() if path.exists() else 'nothing'}")


def test_command_hook_gets_the_state_as_argument_and_in_the_environment(tmp_path):
    log = tmp_path / "hook.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $HEARTH_STATE $HEARTH_PREVIOUS_STATE $HEARTH_SATELLITE_ID $HEARTH_SESSION_ID" >> {log}\n')
    script.chmod(0o755)
    hook = CommandHook(HooksSection(command=[str(script)], states={"error": ["sh", "-c", f'echo per-state "$HEARTH_STATE" >> {log}']}))
    hook(StateChange("idle", "listening", "kitchen", "ab" * 16))
    assert _wait_for(log, 1) == [f"listening listening idle kitchen {'ab' * 16}"]
    hook(StateChange("thinking", "error", "kitchen"))
    lines = _wait_for(log, 3)
    assert "error error thinking kitchen " in lines[1:] and "per-state error" in lines[1:]


def test_a_hook_never_blocks_the_audio_loop(tmp_path):
    go, log = tmp_path / "go", tmp_path / "hook.log"
    # The hook can only finish after the call has returned: it waits for a file the test writes then.
    script = f'while [ ! -e {go} ]; do sleep 0.02; done; echo done >> {log}'
    hook = CommandHook(HooksSection(command=["sh", "-c", script], timeout=30))
    hook(StateChange("idle", "listening", "kitchen"))
    go.touch()
    assert _wait_for(log, 1, timeout=20) == ["done"]


def test_a_hanging_hook_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    hook = CommandHook(HooksSection(command=["sh", "-c", f'echo $$ > {pid_file}; exec sleep 30'], timeout=0.2))
    hook(StateChange("idle", "listening", "kitchen"))
    pid = int(_wait_for(pid_file, 1)[0])
    deadline = time.monotonic() + 20  # bounds a hang only: the kill comes 0.2 s after the start
    while _alive(pid):
        assert time.monotonic() < deadline, "the hanging hook was not killed"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_missing_hook_program_is_only_logged(caplog):
    CommandHook(HooksSection(command=["/nonexistent/hook"]))(StateChange("idle", "listening", "kitchen"))
    assert "could not start" in caplog.text


def test_led_patterns_with_a_fake_gpio():
    calls = []

    class FakeLed:
        def __init__(self, pin, active_high):
            calls.append(("init", pin, active_high))

        def on(self):
            calls.append("on")

        def off(self):
            calls.append("off")

        def blink(self, on_time, off_time, background):
            calls.append(("blink", on_time, off_time))

    led = GpioLed(LedSection(enabled=True, pin=5, active_high=False), factory=FakeLed)
    for state in ("listening", "thinking", "idle", "muted"):
        led(StateChange("x", state, "kitchen"))
    assert calls == [("init", 5, False), "on", ("blink", 0.15, 0.15), "off", ("blink", 0.05, 1.95)]


def test_led_without_gpiozero_fails_clearly():
    try:
        import gpiozero  # noqa: F401

        pytest.skip("gpiozero is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="gpiozero"):
        GpioLed(LedSection(enabled=True))
