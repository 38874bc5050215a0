"""What every request handler needs: the config, the engine, and the live sessions."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from .session.interfaces import SpeechEngine
from .session.session import RealtimeSession

if TYPE_CHECKING:
    from .config import ServerConfig


@dataclass
class ServerContext:
    KEY: ClassVar[web.AppKey[ServerContext]]

    config: ServerConfig
    engine: SpeechEngine
    #: Session defaults in Realtime wire form, built once from the config.
    session_defaults: dict[str, Any]
    sessions: weakref.WeakSet[RealtimeSession] = field(default_factory=weakref.WeakSet)
    websockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)


ServerContext.KEY = web.AppKey("hearth_context", ServerContext)
