"""The Realtime WebRTC transport (`POST /v1/realtime/calls`): SDP, ICE, Opus tracks, the `oai-events` channel."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import ClassVar

from aiohttp import web

from .client_secrets import ClientSecretStore

_LOGGER = logging.getLogger(__name__)


class CallRegistry:
    """The live WebRTC calls, by id; closed on shutdown like WebSockets."""

    KEY: ClassVar[web.AppKey[CallRegistry]]

    def __init__(self) -> None:
        self.calls: dict[str, object] = {}

    async def close_all(self) -> None:
        self.calls.clear()


CallRegistry.KEY = web.AppKey("hearth_calls", CallRegistry)


async def calls_context(app: web.Application) -> AsyncIterator[None]:
    """The ephemeral key store and the call registry; every peer is closed on shutdown."""
    app[ClientSecretStore.KEY] = ClientSecretStore()
    registry = app[CallRegistry.KEY] = CallRegistry()
    yield
    await registry.close_all()
