"""Runs a real Hearth server (real models, real socket) in a background thread for tests.

The server gets its own event loop, so tests may use theirs freely and the
models load once per test session.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from hearth.server.app import EngineFactory, create_app
from hearth.server.config import ServerConfig, load_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    config: ServerConfig
    port: int
    app: web.Application
    loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def call(self, fn: Any) -> Any:
        """Run a plain function on the server's loop (to inspect live state safely)."""
        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)


def make_config(tmp: Path, settings: dict[str, Any] | None = None) -> ServerConfig:
    """A config file in `tmp` with `settings`; MQTT and zeroconf stay off unless `settings` has them.

    (Their defaults are on: a test server must not grab port 1883 or advertise itself by accident.)
    """
    settings = dict(settings or {})
    settings.setdefault("mqtt", {"enabled": False})
    settings.setdefault("discovery", {"enabled": False})
    path = tmp / "hearth.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


@contextmanager
def run_server(config: ServerConfig, engine_factory: EngineFactory | None = None) -> Iterator[RunningServer]:
    port = free_port()
    loop = asyncio.new_event_loop()
    app = create_app(config, engine_factory=engine_factory)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    started = threading.Event()
    failure: list[BaseException] = []

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as err:  # surfaced to the test below
            failure.append(err)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="hearth-test-server", daemon=True)
    thread.start()
    started.wait(120)
    if failure:
        raise failure[0]
    try:
        yield RunningServer(config=config, port=port, app=app, loop=loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
