"""The registry of server-side tool providers, and the toolbox each session gets from it.

Providers (Home Assistant's catalog over MQTT, tools from the server's configuration)
register with the composition root's `ToolRegistry`. A session receives a
`SessionToolbox` for its scope (a satellite, or a Realtime client): a live view, so a
catalog that Home Assistant refreshes reaches sessions already running.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..session.interfaces import ToolCall, ToolResult
from .schema import realtime_function

_LOGGER = logging.getLogger(__name__)

#: Most server-side tools offered to one session (Home Assistant exposes dozens, not thousands).
MAX_TOOLS = 128


@dataclass(frozen=True)
class ToolScope:
    """Whom a toolbox serves: tools can depend on the device (a satellite's timers)."""

    kind: Literal["satellite", "realtime"]
    satellite_id: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A server-side tool: a Realtime function definition the server executes itself."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def definition(self) -> dict[str, Any]:
        return realtime_function(self.name, self.description, self.parameters)


class ToolProvider(Protocol):
    """A source of server-side tools and the one place their calls run."""

    #: Short name for logs ("home_assistant").
    name: str

    def tools(self, scope: ToolScope) -> Sequence[ToolSpec]:
        """The tools this provider offers in `scope` now."""

    def instructions(self, scope: ToolScope) -> str | None:
        """Text to add to the session's instructions (Home Assistant's API prompt), if any."""

    async def call(self, scope: ToolScope, call: ToolCall) -> ToolResult:
        """Run a call of one of this provider's tools."""


class ToolRegistry:
    def __init__(self) -> None:
        self._providers: list[ToolProvider] = []

    def add(self, provider: ToolProvider) -> None:
        self._providers.append(provider)

    def remove(self, provider: ToolProvider) -> None:
        if provider in self._providers:
            self._providers.remove(provider)

    @property
    def providers(self) -> tuple[ToolProvider, ...]:
        return tuple(self._providers)

    def for_session(self, scope: ToolScope) -> SessionToolbox:
        return SessionToolbox(self, scope)


class SessionToolbox:
    """The `Toolbox` of one session: every provider's tools for its scope, first provider first."""

    def __init__(self, registry: ToolRegistry, scope: ToolScope) -> None:
        self.registry = registry
        self.scope = scope

    def _owners(self) -> dict[str, tuple[ToolProvider, ToolSpec]]:
        owners: dict[str, tuple[ToolProvider, ToolSpec]] = {}
        for provider in self.registry.providers:
            try:
                specs = provider.tools(self.scope)
            except Exception:  # one broken provider must not hide the others' tools
                _LOGGER.exception("tool provider %s failed to list its tools", provider.name)
                continue
            for spec in specs:
                if len(owners) >= MAX_TOOLS:
                    return owners
                owners.setdefault(spec.name, (provider, spec))
        return owners

    def definitions(self) -> list[dict[str, Any]]:
        return [spec.definition() for _provider, spec in self._owners().values()]

    def instructions(self) -> str | None:
        parts = []
        for provider in self.registry.providers:
            text = provider.instructions(self.scope)
            if text:
                parts.append(text)
        return "\n\n".join(parts) or None

    def handles(self, name: str) -> bool:
        return name in self._owners()

    async def call(self, call: ToolCall) -> ToolResult:
        owner = self._owners().get(call.name)
        if owner is None:
            return ToolResult(output='{"error": {"code": "unknown_tool", "message": "No such tool."}}',
                              error="unknown_tool")
        provider, _spec = owner
        return await provider.call(self.scope, call)
