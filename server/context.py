"""What every request handler needs: the config, the engine, the tools and the live sessions."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from aiohttp import web

from .session.interfaces import SpeechEngine
from .sessions import SessionRegistry
from .tools.registry import ToolRegistry

if TYPE_CHECKING:
    from .config import ServerConfig


@dataclass
class ServerContext:
    KEY: ClassVar[web.AppKey[ServerContext]]

    config: ServerConfig
    engine: SpeechEngine
    tools: ToolRegistry
    sessions: SessionRegistry
    websockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)

    @property
    def session_defaults(self) -> dict:
        return self.sessions.policy.defaults


ServerContext.KEY = web.AppKey("hearth_context", ServerContext)
