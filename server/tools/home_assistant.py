"""Home Assistant's tools, from the Hearth integration's catalogs over MQTT.

The integration (custom_components/hearth) publishes one retained
``tool-catalog`` per satellite (plus a device-less one) on
``hearth/v1/ha/…/tools``. This provider keeps the newest of each, offers its
tools and ``api_prompt`` to the session of that satellite (and the device-less
catalog to Realtime WebSocket sessions, when enabled), and runs calls by
publishing a ``tool-call`` and waiting for the ``tool-result`` with the same
correlation id. A new catalog replaces the old one at once, so Home Assistant
coming back needs no server restart; a call that gets no answer in time (Home
Assistant down or slow) is a spoken failure, and the session goes on.

The MQTT bridge feeds :meth:`HomeAssistantTools.handle_message` with messages
on :data:`SUBSCRIPTIONS` and gives it its ``publish``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hearth.wire import (
    IntegrationStatus,
    ProtocolError,
    ToolCall as WireToolCall,
    ToolCatalog,
    ToolErrorCode,
    ToolResult as WireToolResult,
    UnknownMessageType,
    ha_topics,
)
from hearth.wire.arguments import check_arguments
from hearth.wire.topics import QOS_CONTROL

from ..session.interfaces import ToolCall, ToolResult
from .registry import ToolScope, ToolSpec

_LOGGER = logging.getLogger(__name__)

#: (topic, QoS) pairs the MQTT bridge subscribes to for this provider.
SUBSCRIPTIONS: tuple[tuple[str, int], ...] = (
    (ha_topics.all_ha_tools(), QOS_CONTROL),
    (ha_topics.ha_tools(), QOS_CONTROL),
    (ha_topics.ha_event(), QOS_CONTROL),
    (ha_topics.ha_status(), QOS_CONTROL),
)

#: Default wait for Home Assistant's answer: a device request fails aloud within 3 s.
DEFAULT_TIMEOUT_S = 2.5

Publish = Callable[[str, bytes, int, bool], bool]


@dataclass
class _Pending:
    future: asyncio.Future[WireToolResult]
    name: str


class HomeAssistantTools:
    """The `ToolProvider` for Home Assistant's exposed devices (see module doc)."""

    name = "home_assistant"

    def __init__(self, publish: Publish, *, timeout_s: float = DEFAULT_TIMEOUT_S, realtime_sessions: bool = False) -> None:
        self._publish = publish
        self.timeout_s = timeout_s
        #: Offer the device-less catalog to Realtime WebSocket sessions too.
        self.realtime_sessions = realtime_sessions
        self.catalogs: dict[str | None, ToolCatalog] = {}
        self.integration: IntegrationStatus | None = None
        self._pending: dict[str, _Pending] = {}
        #: Event-topic messages other parts of the server handle (announce, timers, conversation).
        self.on_event: Callable[[object], None] | None = None

    # -- what sessions see ---------------------------------------------------------
    def catalog(self, scope: ToolScope) -> ToolCatalog | None:
        if scope.kind == "satellite":
            return self.catalogs.get(scope.satellite_id) or self.catalogs.get(None)
        return self.catalogs.get(None) if self.realtime_sessions else None

    def tools(self, scope: ToolScope) -> Sequence[ToolSpec]:
        catalog = self.catalog(scope)
        if catalog is None:
            return ()
        return tuple(
            ToolSpec(tool.name, tool.description, tool.parameters or {"type": "object", "properties": {}})
            for tool in catalog.tools
        )

    def instructions(self, scope: ToolScope) -> str | None:
        catalog = self.catalog(scope)
        return catalog.api_prompt if catalog else None

    # -- running a call -------------------------------------------------------------
    async def call(self, scope: ToolScope, call: ToolCall) -> ToolResult:
        catalog = self.catalog(scope)
        tool = catalog.tool(call.name) if catalog else None
        if catalog is None or tool is None:
            return _failure(ToolErrorCode.UNKNOWN_TOOL, f"Home Assistant has no {call.name} here.")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return _failure(ToolErrorCode.INVALID_ARGUMENTS, f"The arguments for {call.name} are not JSON.")
        problems = check_arguments(tool.parameters, arguments)
        if problems:
            return _failure(ToolErrorCode.INVALID_ARGUMENTS, f"Bad arguments for {call.name}: " + "; ".join(problems))
        if self.integration is not None and not self.integration.online:
            return _failure(ToolErrorCode.UNAVAILABLE, "Home Assistant is not available right now.")

        call_id = uuid.uuid4().hex
        message = WireToolCall(call_id, call.name, arguments, satellite_id=catalog.satellite_id)
        future: asyncio.Future[WireToolResult] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = _Pending(future, call.name)
        try:
            if not self._publish(ha_topics.ha_command(), message.to_json(), QOS_CONTROL, False):
                return _failure(ToolErrorCode.UNAVAILABLE, "I can't reach Home Assistant right now.")
            async with asyncio.timeout(self.timeout_s):
                result = await future
        except TimeoutError:
            _LOGGER.warning("Home Assistant did not answer %s within %.1f s", call.name, self.timeout_s)
            return _failure(ToolErrorCode.TIMEOUT, "Home Assistant did not answer in time.")
        finally:
            self._pending.pop(call_id, None)
        if not result.ok:
            return _failure(result.error or ToolErrorCode.FAILED, result.message or "Home Assistant could not do that.")
        return ToolResult(output=json.dumps(result.result or {}, ensure_ascii=False), speech=result.speech)

    # -- MQTT --------------------------------------------------------------------------
    def handle_message(self, topic: str, payload: bytes) -> bool:
        """Take one message on our topics; False when the topic is not ours. Never raises."""
        try:
            if topic == ha_topics.ha_event():
                self._on_event(payload, topic)
            elif topic == ha_topics.ha_status():
                if payload:
                    self.integration = ha_topics.decode_integration_status(payload, topic=topic)
                    if not self.integration.online:
                        self._fail_pending("Home Assistant went offline.")
            elif topic.startswith(ha_topics.HA_ROOT) and topic.endswith("/tools"):
                self._on_catalog(topic, payload)
            else:
                return False
        except UnknownMessageType as err:
            _LOGGER.debug("ignoring %s", err)
        except ProtocolError as err:
            _LOGGER.warning("ignoring a malformed message from Home Assistant: %s", err)
        return True

    def _on_catalog(self, topic: str, payload: bytes) -> None:
        satellite_id = ha_topics.tools_topic_satellite(topic)
        if not payload:  # the integration took its catalog back (unloaded, device removed)
            self.catalogs.pop(satellite_id, None)
            return
        catalog = ha_topics.decode_tool_catalog(payload, topic=topic)
        if catalog.satellite_id != satellite_id:
            raise ProtocolError("catalog's satellite_id does not match its topic", topic=topic)
        self.catalogs[satellite_id] = catalog
        _LOGGER.info("Home Assistant catalog for %s: %d tools (revision %s)",
                     satellite_id or "device-less use", len(catalog.tools), catalog.revision)

    def _on_event(self, payload: bytes, topic: str) -> None:
        event = ha_topics.decode_ha_event(payload, topic=topic)
        if isinstance(event, WireToolResult):
            pending = self._pending.get(event.call_id)
            if pending is not None and not pending.future.done():
                pending.future.set_result(event)
            return
        if self.on_event is not None:
            self.on_event(event)

    def _fail_pending(self, message: str) -> None:
        for call_id, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_result(WireToolResult(call_id, error=ToolErrorCode.UNAVAILABLE, message=message))

    def close(self) -> None:
        self._fail_pending("The server is shutting down.")


def _failure(code: str, message: str) -> ToolResult:
    output = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)
    return ToolResult(output=output, speech=message, error=code)
