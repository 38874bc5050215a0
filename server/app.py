"""The composition root: `create_app(config)` builds the server the CLI and the tests run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from importlib.metadata import PackageNotFoundError, version

from aiohttp import WSCloseCode, web

from .config import ServerConfig
from .console import add_console
from .errors import StartupError
from .context import ServerContext
from .engines.factory import build_engine, session_defaults
from .session.interfaces import SpeechEngine
from .scheduler import FairExecutor
from .sessions import SessionPolicy, SessionRegistry
from .tools.registry import ToolRegistry
from .transports.auth import require_access
from .transports.client_secrets import create_client_secret
from .transports.webrtc import add_routes as add_call_routes
from .transports.webrtc import calls_context
from .transports.websocket import realtime_websocket

__all__ = ["EngineFactory", "StartupError", "create_app"]

_LOGGER = logging.getLogger(__name__)

EngineFactory = Callable[[ServerConfig, Executor], SpeechEngine]


def create_app(config: ServerConfig, *, engine_factory: EngineFactory | None = None) -> web.Application:
    """Build the aiohttp application.

    `engine_factory` replaces the configured engine (tests use a scripted one);
    by default the engine named in the config is built and warmed up at start,
    so the first turn is as fast as any other.
    """
    app = web.Application(client_max_size=16 * 1024 * 1024)
    factory = engine_factory or build_engine

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        executor = FairExecutor(max_workers=config.engine.workers, thread_name_prefix="hearth-infer")
        try:
            loop = asyncio.get_running_loop()
            engine = await loop.run_in_executor(executor, factory, config, executor)
            await engine.warm_up()
            tools = ToolRegistry()
            policy = SessionPolicy(defaults=session_defaults(config),
                                   max_duration_s=config.server.max_session_duration_s,
                                   tool_timeout_s=config.server.tool_timeout_s,
                                   tools_for_clients=config.server.tools_for_clients,
                                   limits=config.server.limits.session_limits())
            sessions = SessionRegistry(engine, tools, policy)
            app[ServerContext.KEY] = ServerContext(config=config, engine=engine, tools=tools, sessions=sessions)
            _LOGGER.info("engine ready")
            yield
            await sessions.close_all()
            await engine.close()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def close_websockets(app: web.Application) -> None:
        ctx = app.get(ServerContext.KEY)
        if ctx is None:
            return
        for ws in list(ctx.websockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(calls_context)
    # Each long-lived resource has its own cleanup_ctx; they start after the engine (in
    # this order) and stop before it, in reverse. Imported only when enabled, so a server
    # without MQTT or zeroconf does not load paho, amqtt or zeroconf.
    if config.mqtt.enabled:
        from .mqtt.service import bridge_context, broker_context

        if config.mqtt.embedded:
            app.cleanup_ctx.append(broker_context())
        app.cleanup_ctx.append(bridge_context(_version()))
    if config.discovery.enabled:
        from .discovery import discovery_context

        app.cleanup_ctx.append(discovery_context(_version()))
    app.on_shutdown.append(close_websockets)
    for prefix in ("/v1", ""):
        app.router.add_get(f"{prefix}/realtime", realtime_websocket)
        app.router.add_post(f"{prefix}/realtime/client_secrets", create_client_secret)
    add_call_routes(app)
    add_console(app, config.server.api_key)
    app.router.add_get("/healthz", health)
    app.router.add_get("/v1/hearth/timings", timings)
    return app


def _version() -> str | None:
    try:
        return version("hearth-voice")
    except PackageNotFoundError:
        return None


async def health(request: web.Request) -> web.Response:
    ctx = request.app[ServerContext.KEY]
    body: dict[str, object] = {"status": "ok", "sessions": len(ctx.sessions)}
    if ctx.config.mqtt.enabled:
        from .mqtt.bridge import MqttBridge
        from .mqtt.client import MqttClient

        client, bridge = request.app.get(MqttClient.KEY), request.app.get(MqttBridge.KEY)
        body["mqtt"] = {"connected": bool(client and client.connected),
                        "satellite_sessions": len(bridge.conversations) if bridge else 0}
    return web.json_response(body)


async def timings(request: web.Request) -> web.Response:
    """Stage timestamps of recent turns of live sessions (for bench/latency.py)."""
    ctx = request.app[ServerContext.KEY]
    require_access(request, ctx.config.server)
    sessions = []
    for session in ctx.sessions:
        sessions.append({
            "id": session.id,
            "turns": [{"item_id": t.item_id, "response_id": t.response_id, "marks": t.marks}
                      for t in session.timings.recent],
        })
    return web.json_response({"sessions": sessions})
