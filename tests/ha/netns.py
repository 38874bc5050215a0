"""Runs a driver script inside a fresh network namespace (loopback up, multicast on it), then removes it.

Home Assistant's network integrations multicast on every interface; inside the namespace they
see only its loopback. Used by tests/ha/test_live_home_assistant.py and bench/voice_to_light.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.conftest_mqtt import find_mosquitto

ROOT = Path(__file__).resolve().parents[2]
HASS = ROOT / ".venv-ha-2025.4" / "bin" / "hass"


class Unavailable(Exception):
    """What the live run needs is missing here (the message says what)."""


def requirements() -> str:
    """The Mosquitto binary; raises Unavailable with the reason when something is missing."""
    if not HASS.exists():
        raise Unavailable("no Home Assistant 2025.4 environment: run .ci/ha-env 2025.4")
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise Unavailable("mosquitto binary not found: apt-get install mosquitto")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise Unavailable("creating a network namespace needs root and iproute2")
    return mosquitto


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def run_driver(driver: str, workdir: Path, *args: str, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run tests/ha/<driver> in a new namespace; (its RESULT json or None, a log tail for failures)."""
    mosquitto = requirements()
    netns = f"hearth-ha-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", netns)
    try:
        for ip_args in (("link", "set", "lo", "up"), ("link", "set", "lo", "multicast", "on"),
                        ("route", "add", "224.0.0.0/4", "dev", "lo")):
            _ip("netns", "exec", netns, "ip", *ip_args)
        run = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, str(ROOT / "tests" / "ha" / driver), str(workdir),
             str(HASS), mosquitto, *args],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        )
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    log = (workdir / "hass.log").read_text() if (workdir / "hass.log").exists() else ""
    tail = f"{run.stdout[-2000:]}\n{run.stderr[-4000:]}\nhass.log:\n{log[-3000:]}"
    if run.returncode != 0 or not lines:
        return None, tail
    return json.loads(lines[-1].removeprefix("RESULT ")), tail
