"""Runs the house server until interrupted (`hearth server`)."""

from __future__ import annotations

import logging
import ssl
import sys

from aiohttp import web

from .app import create_app
from .config import ServerConfig, TlsOptions
from .errors import StartupError
from .transports.auth import RedactingAccessLogger

_LOGGER = logging.getLogger(__name__)

#: Exit status when a part cannot start (`hearth.cli` uses 2 for an invalid configuration).
EXIT_STARTUP = 1


def run(config: ServerConfig) -> None:
    host, port = config.server.host, config.server.port
    auth = "API key required" if config.server.api_key else "no API key (loopback only)" \
        if not config.server.allow_unauthenticated else "no API key (allow_unauthenticated)"
    _LOGGER.info("loading models; the server listens once they are warm")
    try:
        tls = ssl_context(config.server.tls)
    except StartupError as err:
        print(f"hearth server: cannot start: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STARTUP) from None
    ws, http = ("wss", "https") if tls else ("ws", "http")

    def ready(_: object) -> None:
        print(f"Hearth is ready: {ws}://{host}:{port}/v1/realtime ({auth})", flush=True)
        print(f"Console: {http}://{host}:{port}/", flush=True)
        if config.mqtt.enabled:
            from .mqtt.service import broker_url

            kind = "embedded broker" if config.mqtt.embedded else "broker"
            print(f"Satellites: {broker_url(config.mqtt).redacted()} ({kind})", flush=True)

    app = create_app(config)
    app.on_startup.append(_announce(ready))
    try:
        web.run_app(app, host=host, port=port, print=None, shutdown_timeout=5.0, ssl_context=tls,
                    access_log_class=RedactingAccessLogger)
    except StartupError as err:  # a missing model, a busy port: the message says what to change
        print(f"hearth server: cannot start: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STARTUP) from None


def ssl_context(tls: TlsOptions) -> ssl.SSLContext | None:
    """The server's TLS context from `server.tls`, or None for plain HTTP.

    Raises StartupError naming the file when the certificate or key cannot be loaded.
    """
    if tls.cert is None or tls.key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as err:
        raise StartupError(f"cannot load server.tls.cert {tls.cert} with server.tls.key {tls.key}: "
                           f"{getattr(err, 'reason', None) or err}") from None
    return context


def _announce(callback):  # noqa: ANN001, ANN202 - aiohttp signal signature
    async def on_startup(app: web.Application) -> None:
        callback(app)

    return on_startup
