"""The running server takes Home Assistant's catalog from its broker and offers it to a satellite's session."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho

from hearth.server.session.testing import ScriptedEngine

from hearth.server.context import ServerContext
from hearth.server.tools.registry import ToolScope
from hearth.wire import ToolCatalog, ToolDefinition, ha_topics
from tests.mqtt.conftest import ScriptedServer, start_scripted_server


def test_a_published_catalog_reaches_the_satellites_toolbox(tmp_path):
    engine = ScriptedEngine()
    context, port = start_scripted_server(tmp_path, engine, {"broker": {
        "username": "homeassistant", "password": "ha-secret"}})
    with context as running:
        _catalog_reaches_toolbox(ScriptedServer(running, engine, port))


def _catalog_reaches_toolbox(scripted_server: ScriptedServer) -> None:
    connected = threading.Event()
    ha = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fake-ha")
    ha.username_pw_set("homeassistant", "ha-secret")
    ha.on_connect = lambda *args: connected.set()
    ha.connect("127.0.0.1", scripted_server.broker_port)
    ha.loop_start()
    assert connected.wait(5), "Home Assistant's account could not log in"
    try:
        catalog = ToolCatalog((ToolDefinition("HassTurnOn", "Turns on a device", {"type": "object", "properties": {}}),),
                              satellite_id="kitchen", api_prompt="Static Context: - names: Kitchen light")
        ha.publish(ha_topics.ha_tools("kitchen"), catalog.to_json(), qos=1, retain=True).wait_for_publish(5)

        def toolbox():
            ctx = scripted_server.server.app[ServerContext.KEY]
            box = ctx.tools.for_session(ToolScope("satellite", "kitchen"))
            return [d["name"] for d in box.definitions()], box.instructions()

        deadline = time.monotonic() + 5
        while (found := scripted_server.call(toolbox))[0] != ["HassTurnOn"]:
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        assert "Kitchen light" in found[1]
    finally:
        ha.loop_stop()
        ha.disconnect()
