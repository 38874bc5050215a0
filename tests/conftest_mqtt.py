"""A real Mosquitto broker for tests, on a free port (shared by satellite and server tests).

Use it from a conftest.py (``tests`` is a package)::

    from tests.conftest_mqtt import MosquittoBroker, mosquitto  # noqa: F401  (re-exports the fixture)

or put that line in tests/conftest.py to make ``mosquitto`` available everywhere.

The fixture skips (with the reason printed in pytest's summary) only when the
``mosquitto`` binary is missing (``apt-get install mosquitto``). Any other
failure to start is an error. ``broker.restart()`` stops and starts it on the
same port (no persistence, so retained messages are lost, as after a real
restart without a persistence file).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MosquittoBroker:
    """A mosquitto process listening on 127.0.0.1:<port>, anonymous access, no persistence."""

    def __init__(self, binary: str, workdir: Path, *, port: int | None = None, extra_config: str = "") -> None:
        self.binary = binary
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_config = extra_config
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence false",
                    # 0 = no limit: the default drops QoS 0 audio bursts (30 % of 20,000 frames in a trial)
                    "max_queued_messages 0",
                    # as firmware-config/mosquitto.conf: no Nagle delay (~40 ms) on small answers
                    "set_tcp_nodelay true",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    f"user {getpass.getuser()}",
                    self.extra_config,
                    "",
                ]
            )
        )

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto broker per test."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    broker = MosquittoBroker(binary, tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
