"""Home Assistant's tools over a real Mosquitto: catalogs in, calls out, answers back, failures spoken.

The server side is the real provider on the real server MQTT client; Home Assistant's side is
a paho client speaking the exact wire format of custom_components/hearth (tests_ha/ tests the
integration itself against Home Assistant).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest

from tests.conftest_mqtt import MosquittoBroker, find_mosquitto

from hearth.server.mqtt.client import ClientSettings, MqttClient
from hearth.server.session.interfaces import ToolCall
from hearth.server.tools.home_assistant import DEFAULT_TIMEOUT_S, SUBSCRIPTIONS, HomeAssistantTools
from hearth.server.tools.registry import ToolRegistry, ToolScope
from hearth.wire import (
    IntegrationStatus,
    MqttUrl,
    ServerStatus,
    ToolCatalog,
    ToolDefinition,
    ToolResult as WireToolResult,
    ha_topics,
)

KITCHEN = ToolScope("satellite", "kitchen")
TURN_ON = ToolDefinition(
    "HassTurnOn",
    "Turns on/opens a device or entity",
    {"type": "object", "properties": {"name": {"type": "string"}, "area": {"type": "string"}}, "required": []},
)


def catalog(*tools: ToolDefinition, satellite_id: str | None = "kitchen", prompt: str = "Static Context: - names: Kitchen light") -> ToolCatalog:
    return ToolCatalog(tools or (TURN_ON,), satellite_id=satellite_id, api_prompt=prompt, llm_api=("assist",), revision="r1")


class FakeHomeAssistant:
    """Home Assistant's integration on the wire: publishes catalogs, answers tool calls."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[dict] = []
        self.answering = True
        self.lights: dict[str, bool] = {"Kitchen light": False}
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fake-ha")
        self.client.on_message = self._on_message
        # As every Hearth peer does (docs/mqtt-protocol.md): without it Nagle adds ~40 ms a hop.
        self.client.on_socket_open = lambda client, userdata, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected = threading.Event()
        self.client.on_connect = lambda *args: (self.client.subscribe(ha_topics.ha_command(), qos=1), self.connected.set())

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connected.wait(5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def _on_message(self, client, userdata, message) -> None:
        call = json.loads(message.payload)
        self.calls.append(call)
        if not self.answering:
            return
        name = call["arguments"].get("name")
        if name in self.lights:
            self.lights[name] = True
            answer = WireToolResult(call["call_id"], result={"response_type": "action_done"}, speech="Turned on the light")
        else:
            answer = WireToolResult(call["call_id"], error="no-match", message=f"I can't control the {name}.")
        client.publish(ha_topics.ha_event(), answer.to_json(), qos=1)


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[MosquittoBroker]:
    """Mosquitto with set_tcp_nodelay (its default Nagles every small answer by ~40 ms)."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found: apt-get install mosquitto")
    broker = MosquittoBroker(binary, tmp_path / "mosquitto")  # the shared config sets set_tcp_nodelay
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def home_assistant(mosquitto) -> Iterator[FakeHomeAssistant]:
    ha = FakeHomeAssistant(mosquitto.port)
    ha.start()
    yield ha
    ha.stop()


@pytest.fixture
async def provider(mosquitto) -> HomeAssistantTools:
    box: dict[str, HomeAssistantTools] = {}
    client = MqttClient(
        ClientSettings(MqttUrl("127.0.0.1", mosquitto.port), "hearth", "srv", protocol="3.1.1", status=ServerStatus("hearth")),
        list(SUBSCRIPTIONS),
        lambda topic, payload: box["tools"].handle_message(topic, payload),
    )
    box["tools"] = tools = HomeAssistantTools(client.publish)
    client.start()
    assert await client.wait_connected(5)
    yield tools
    tools.close()
    await client.stop()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def call(name: str = "HassTurnOn", arguments: str = '{"name": "Kitchen light"}') -> ToolCall:
    return ToolCall(name=name, arguments=arguments, call_id="call_1", session_id="s1")


async def test_catalog_tools_and_prompt_reach_the_satellites_session(provider: HomeAssistantTools, home_assistant: FakeHomeAssistant):
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog().to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs)
    registry = ToolRegistry()
    registry.add(provider)
    toolbox = registry.for_session(KITCHEN)
    assert [d["name"] for d in toolbox.definitions()] == ["HassTurnOn"]
    assert toolbox.definitions()[0]["parameters"]["properties"]["name"] == {"type": "string"}
    assert "Kitchen light" in toolbox.instructions()
    # Another satellite without its own catalog gets nothing until a device-less one exists;
    # WebSocket sessions get the device-less one only when enabled.
    assert provider.tools(ToolScope("satellite", "attic")) == ()
    home_assistant.publish(ha_topics.ha_tools(), catalog(satellite_id=None).to_json(), retain=True)
    await until(lambda: None in provider.catalogs)
    assert [t.name for t in provider.tools(ToolScope("satellite", "attic"))] == ["HassTurnOn"]
    assert provider.tools(ToolScope("realtime")) == ()
    provider.realtime_sessions = True
    assert [t.name for t in provider.tools(ToolScope("realtime"))] == ["HassTurnOn"]


async def test_a_call_round_trips_and_speaks_home_assistants_words(provider: HomeAssistantTools, home_assistant: FakeHomeAssistant):
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog().to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs)
    result = await provider.call(KITCHEN, call())
    assert result.error is None and result.speech == "Turned on the light"
    assert json.loads(result.output) == {"response_type": "action_done"}
    assert home_assistant.lights["Kitchen light"]
    sent = home_assistant.calls[-1]
    assert sent["type"] == "tool-call" and sent["satellite_id"] == "kitchen" and sent["arguments"] == {"name": "Kitchen light"}

    refused = await provider.call(KITCHEN, call(arguments='{"name": "garage door"}'))
    assert refused.error == "no-match" and refused.speech == "I can't control the garage door."
    assert json.loads(refused.output)["error"]["code"] == "no-match"

    # Calls one after another each get their own answer (the round trip's time is bench/voice_to_light.py's).
    for _ in range(20):
        assert (await provider.call(KITCHEN, call())).error is None


async def test_bad_calls_are_refused_before_home_assistant(provider: HomeAssistantTools, home_assistant: FakeHomeAssistant):
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog().to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs)
    cases = [
        (call(arguments='{"name": 5}'), "invalid-arguments", "'name' must be a string"),
        (call(arguments='{"nmae": "x"}'), "invalid-arguments", "not a known argument"),
        (call(arguments="{not json"), "invalid-arguments", "not JSON"),
        (call(name="HassTeleport"), "unknown-tool", "no HassTeleport"),
    ]
    for bad, code, needle in cases:
        result = await provider.call(KITCHEN, bad)
        assert result.error == code and needle in result.speech
    assert home_assistant.calls == []


async def test_home_assistant_down_is_a_spoken_failure_within_3_s_and_coming_back_needs_no_restart(
    provider: HomeAssistantTools, home_assistant: FakeHomeAssistant
):
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog().to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs)
    home_assistant.answering = False  # Home Assistant hangs (or crashed: its MQTT client has no will)
    # "Within 3 s" is the timeout's setting; the call ends on that timeout, not before (load only delays).
    assert provider.timeout_s == DEFAULT_TIMEOUT_S < 3.0
    start = time.monotonic()
    result = await asyncio.wait_for(provider.call(KITCHEN, call()), 30)
    assert result.error == "timeout" and result.speech == "Home Assistant did not answer in time."
    assert time.monotonic() - start >= provider.timeout_s

    # The integration unloads: offline status, catalog taken back; calls fail at once.
    home_assistant.publish(ha_topics.ha_status(), IntegrationStatus("offline").to_json(), retain=True)
    home_assistant.publish(ha_topics.ha_tools("kitchen"), b"", retain=True)
    await until(lambda: "kitchen" not in provider.catalogs)
    assert provider.tools(KITCHEN) == ()

    # Home Assistant comes back with a new catalog: the next call works, no restart.
    lights_set = ToolDefinition("HassLightSet", "Sets brightness", {"type": "object", "properties": {"name": {"type": "string"}}})
    home_assistant.answering = True
    home_assistant.publish(ha_topics.ha_status(), IntegrationStatus("online").to_json(), retain=True)
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog(TURN_ON, lights_set).to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs and provider.integration.online)
    assert [t.name for t in provider.tools(KITCHEN)] == ["HassTurnOn", "HassLightSet"]
    assert (await provider.call(KITCHEN, call())).error is None


async def test_offline_integration_fails_calls_at_once(provider: HomeAssistantTools, home_assistant: FakeHomeAssistant):
    home_assistant.publish(ha_topics.ha_tools("kitchen"), catalog().to_json(), retain=True)
    home_assistant.publish(ha_topics.ha_status(), IntegrationStatus("offline").to_json(), retain=True)
    await until(lambda: "kitchen" in provider.catalogs and provider.integration is not None)
    sent = len(home_assistant.calls)
    result = await asyncio.wait_for(provider.call(KITCHEN, call()), 30)
    # At once: refused without asking Home Assistant, so no timeout was waited for ("timeout" otherwise).
    assert result.error == "unavailable" and len(home_assistant.calls) == sent


def test_malformed_messages_never_raise():
    tools = HomeAssistantTools(lambda *args: True)
    assert tools.handle_message(ha_topics.ha_tools("kitchen"), b"{nope") is True
    assert tools.handle_message(ha_topics.ha_tools("kitchen"), catalog(satellite_id="attic").to_json()) is True
    assert tools.handle_message(ha_topics.ha_event(), b'{"type": "teleport"}') is True
    assert tools.handle_message(ha_topics.ha_status(), b"[]") is True
    assert tools.handle_message("hearth/v1/satellite/kitchen/event", b"{}") is False
    assert tools.catalogs == {}
    # Other events go to whoever handles them (announcements, timers, the conversation agent).
    seen = []
    tools.on_event = seen.append
    tools.handle_message(ha_topics.ha_event(), b'{"type":"timer-finished","satellite_id":"kitchen","timer_id":"t1"}')
    assert seen and seen[0].type == "timer-finished"
