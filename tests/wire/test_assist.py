"""The Home Assistant topics and messages: builders, routing, limits and validation."""

from __future__ import annotations

import json

import pytest

from hearth.wire import (
    Announce,
    ProtocolError,
    SatelliteSettings,
    TimerFinished,
    ToolCall,
    ToolCatalog,
    ToolDefinition,
    ToolResult,
    UnknownMessageType,
    WakeCandidate,
)
from hearth.wire import ha_topics
from hearth.wire.message import MAX_JSON_BYTES, decode_message

SID = "0123456789abcdef0123456789abcdef"


def test_topic_builders():
    assert ha_topics.ha_status() == "hearth/v1/ha/status"
    assert ha_topics.ha_event() == "hearth/v1/ha/event"
    assert ha_topics.ha_command() == "hearth/v1/ha/command"
    assert ha_topics.ha_tools() == "hearth/v1/ha/tools"
    assert ha_topics.ha_tools("kitchen") == "hearth/v1/ha/satellite/kitchen/tools"
    assert ha_topics.ha_settings("kitchen") == "hearth/v1/ha/satellite/kitchen/settings"
    assert ha_topics.ha_activity("kitchen") == "hearth/v1/ha/satellite/kitchen/activity"
    assert ha_topics.all_ha_tools() == "hearth/v1/ha/satellite/+/tools"
    assert ha_topics.all_ha_settings() == "hearth/v1/ha/satellite/+/settings"
    assert ha_topics.all_ha_activity() == "hearth/v1/ha/satellite/+/activity"
    with pytest.raises(ProtocolError):
        ha_topics.ha_tools("a/b")


def test_tools_topic_satellite():
    assert ha_topics.tools_topic_satellite("hearth/v1/ha/satellite/kitchen/tools") == "kitchen"
    assert ha_topics.tools_topic_satellite("hearth/v1/ha/tools") is None
    for bad in ["hearth/v1/ha/satellite/kitchen/settings", "hearth/v1/satellite/kitchen/tools", "hearth/v1/ha/satellite/+/tools"]:
        with pytest.raises(ProtocolError):
            ha_topics.tools_topic_satellite(bad)


def test_each_topic_accepts_only_its_messages():
    call = ToolCall("c1", "HassTurnOn", {"name": "light"})
    result = ToolResult("c1", speech="ok")
    assert ha_topics.decode_ha_command(call.to_json()) == call
    assert ha_topics.decode_ha_event(result.to_json()) == result
    with pytest.raises(ProtocolError, match="not valid on this topic"):
        ha_topics.decode_ha_event(call.to_json(), topic=ha_topics.ha_event())
    with pytest.raises(ProtocolError, match="not valid on this topic"):
        ha_topics.decode_ha_command(result.to_json())
    with pytest.raises(ProtocolError, match="not valid on this topic"):
        ha_topics.decode_tool_catalog(WakeCandidate(SID, "hey_jarvis", 0.9).to_json())
    settings = SatelliteSettings("kitchen", muted=True)
    assert ha_topics.decode_satellite_settings(settings.to_json()) == settings
    with pytest.raises(UnknownMessageType):
        ha_topics.decode_ha_event(b'{"type": "teleport"}')


def test_a_catalog_larger_than_a_control_event_is_accepted():
    """Home Assistant's prompt lists every exposed entity: a big house exceeds 64 KiB."""
    prompt = "- names: Light\n  domain: light\n" * 5000
    catalog = ToolCatalog((ToolDefinition("HassTurnOn"),), satellite_id="kitchen", api_prompt=prompt)
    payload = catalog.to_json()
    assert len(payload) > MAX_JSON_BYTES
    with pytest.raises(ProtocolError, match="too large"):
        decode_message(payload)
    assert ha_topics.decode_tool_catalog(payload) == catalog
    with pytest.raises(ProtocolError, match="too large"):
        ha_topics.decode_tool_catalog(b" " * (ha_topics.MAX_HA_JSON_BYTES + 1))


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"type": 1}', "no string 'type'"),
        (json.dumps({"type": "tool-call", "call_id": "has space", "name": "x", "arguments": {}}).encode(), "request id"),
        (json.dumps({"type": "tool-call", "call_id": "c", "name": "x", "arguments": "{}"}).encode(), "must be an object"),
        (json.dumps({"type": "tool-result", "call_id": ""}).encode(), "request id"),
        (json.dumps({"type": "announce", "request_id": "r", "satellite_id": "+", "text": "x"}).encode(), "id must be"),
        (json.dumps({"type": "timer-finished", "satellite_id": "k", "timer_id": "t", "total_seconds": "5"}).encode(), "must be an integer"),
    ],
)
def test_malformed_ha_payloads(payload: bytes, needle: str):
    decode = ha_topics.decode_ha_command if b"tool-call" in payload else ha_topics.decode_ha_event
    with pytest.raises(ProtocolError) as info:
        decode(payload, topic="hearth/v1/ha/x")
    assert needle in str(info.value)
    assert info.value.context["topic"] == "hearth/v1/ha/x"


def test_catalog_validation():
    with pytest.raises(ProtocolError, match="unique"):
        ToolCatalog((ToolDefinition("a"), ToolDefinition("a")))
    with pytest.raises(ProtocolError, match="empty"):
        ToolDefinition("")
    catalog = ToolCatalog((ToolDefinition("HassTurnOn", parameters={"type": "object"}),))
    assert catalog.tool("HassTurnOn").parameters == {"type": "object"}
    assert catalog.tool("HassTurnOff") is None
    # A Realtime function definition is the nested dict as it is.
    assert catalog.to_dict()["tools"] == [{"name": "HassTurnOn", "description": "", "parameters": {"type": "object"}, "type": "function"}]


def test_settings_validation_and_result_ok():
    with pytest.raises(ProtocolError, match="wake_sensitivity"):
        SatelliteSettings("kitchen", wake_sensitivity="extreme")
    assert ToolResult("c").ok and not ToolResult("c", error="failed").ok
    assert TimerFinished("kitchen", "t").to_dict() == {"type": "timer-finished", "satellite_id": "kitchen", "timer_id": "t"}
    assert Announce("r", "kitchen", "hi").preannounce
