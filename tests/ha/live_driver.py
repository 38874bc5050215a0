"""Runs inside a network namespace: Mosquitto, a real `hass` 2025.4.4 with the Hearth integration
set up through its real config flows, and the server's HomeAssistantTools on the server's MQTT
client. Prints one JSON line of results. Started by tests/ha/test_live_home_assistant.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from hearth.server.mqtt.client import ClientSettings, MqttClient
from hearth.server.session.interfaces import ToolCall
from hearth.server.tools.home_assistant import SUBSCRIPTIONS, HomeAssistantTools
from hearth.server.tools.registry import ToolScope
from hearth.wire import MqttUrl, SatelliteCapabilities, SatelliteStatus, ServerStatus, topics

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
homeassistant:
  name: Test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  internal_url: "http://127.0.0.1:{http_port}"
http:
  server_host: 127.0.0.1
  server_port: {http_port}
api:
conversation:
intent:
logger:
  default: warning
input_boolean:
  kitchen:
    name: Kitchen power
  garage:
    name: Garage power
light:
  - platform: template
    lights:
{lights}
"""
LIGHT = """      {key}:
        friendly_name: {name}
        unique_id: light-{key}
        value_template: "{{{{ is_state('input_boolean.{key}', 'on') }}}}"
        turn_on:
          action: input_boolean.turn_on
          target: {{entity_id: input_boolean.{key}}}
        turn_off:
          action: input_boolean.turn_off
          target: {{entity_id: input_boolean.{key}}}
"""


MQTT_PORT, HTTP_PORT = 18830, 18123


@dataclass
class LiveHome:
    """Mosquitto and `hass` started in `workdir` (stop them with `stop`)."""

    workdir: Path
    broker: subprocess.Popen
    hass: subprocess.Popen
    log: IO[str]
    mqtt_port: int = MQTT_PORT
    http_port: int = HTTP_PORT

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        self.hass.terminate()
        try:
            self.hass.wait(30)
        except subprocess.TimeoutExpired:
            self.hass.kill()
        self.broker.terminate()
        self.broker.wait(10)
        self.log.close()


def launch(workdir: Path, hass_bin: str, mosquitto_bin: str) -> LiveHome:
    """Start Mosquitto (no Nagle delay, as firmware-config/mosquitto.conf) and `hass` with template lights."""
    (workdir / "mosquitto.conf").write_text(
        f"listener {MQTT_PORT} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
    )
    broker = subprocess.Popen([mosquitto_bin, "-c", str(workdir / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    config_dir = workdir / "ha"
    (config_dir / "custom_components").mkdir(parents=True)
    (config_dir / "custom_components" / "hearth").symlink_to(REPO / "custom_components" / "hearth")
    lights = "".join(LIGHT.format(key=k, name=n) for k, n in (("kitchen", "Kitchen light"), ("garage", "Garage light")))
    (config_dir / "configuration.yaml").write_text(CONFIG.format(http_port=HTTP_PORT, lights=lights))
    log = open(workdir / "hass.log", "w")
    hass = subprocess.Popen([hass_bin, "-c", str(config_dir), "--skip-pip"], stdout=log, stderr=subprocess.STDOUT)
    return LiveHome(workdir, broker, hass, log)


async def onboard(http: aiohttp.ClientSession, home: LiveHome, timeout: float = 90) -> dict[str, str]:
    """Wait for Home Assistant, create its user, return the Authorization header."""
    base = home.base
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.get(f"{base}/api/onboarding") as response:
                if response.status == 200:
                    break
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "Home Assistant did not start"
        await asyncio.sleep(0.5)
    client_id = f"{base}/"
    async with http.post(f"{base}/api/onboarding/users", json={
        "client_id": client_id, "name": "Test", "username": "test", "password": "test-pass-1", "language": "en"}) as r:
        code = (await r.json())["auth_code"]
    async with http.post(f"{base}/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id}) as r:
        token = (await r.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def add_entries(http: aiohttp.ClientSession, home: LiveHome, auth: dict[str, str]) -> None:
    """The MQTT and Hearth entries through their real config flows (Hearth's needs the server online)."""
    base = home.base

    async def flow(handler: str, data: dict) -> dict:
        async with http.post(f"{base}/api/config/config_entries/flow", json={"handler": handler}, headers=auth) as r:
            step = await r.json()
        async with http.post(f"{base}/api/config/config_entries/flow/{step['flow_id']}", json=data, headers=auth) as r:
            return await r.json()

    mqtt_result = await flow("mqtt", {"broker": "127.0.0.1", "port": home.mqtt_port})
    assert mqtt_result.get("type") == "create_entry", mqtt_result
    hearth_result = await flow("hearth", {"server_id": "hearth"})
    assert hearth_result.get("type") == "create_entry", hearth_result


async def entity_state(http: aiohttp.ClientSession, home: LiveHome, auth: dict[str, str], entity_id: str) -> dict:
    async with http.get(f"{home.base}/api/states/{entity_id}", headers=auth) as r:
        return await r.json()


def kitchen_status() -> SatelliteStatus:
    """A satellite's retained status, as hearth.satellite publishes it."""
    return SatelliteStatus("kitchen", name="Kitchen satellite", state="idle", muted=False,
                           capabilities=SatelliteCapabilities(wake_words=("hey_jarvis",)))


async def until_home_assistant_answers(tools: HomeAssistantTools, scope: ToolScope, timeout: float = 20) -> None:
    """The integration publishes its catalogs a few ms before it subscribes to the calls: wait for an answer."""
    deadline = time.monotonic() + timeout
    while (await tools.call(scope, ToolCall("HassTurnOff", '{"name": "Garage light"}', "warm-up", "s0"))).error:
        assert time.monotonic() < deadline, "Home Assistant never answered a tool call"


async def main(workdir: Path, hass_bin: str, mosquitto_bin: str) -> dict:
    home = launch(workdir, hass_bin, mosquitto_bin)
    client = None
    tools_box: dict[str, HomeAssistantTools] = {}
    try:
        await asyncio.sleep(0.5)
        client = MqttClient(
            ClientSettings(MqttUrl("127.0.0.1", home.mqtt_port), "hearth", "hearth-server", protocol="3.1.1",
                           status=ServerStatus("hearth", name="Hearth house")),
            list(SUBSCRIPTIONS), lambda topic, payload: tools_box["t"].handle_message(topic, payload),
        )
        # A generous timeout: this checks the round trip works; its speed is measured, not asserted.
        tools = tools_box["t"] = HomeAssistantTools(client.publish, timeout_s=10.0)
        client.start()
        assert await client.wait_connected(10), "server client did not connect"
        async with aiohttp.ClientSession() as http:
            auth = await onboard(http, home)
            await add_entries(http, home, auth)
            # A satellite appears (its retained status, as hearth.satellite publishes it).
            client.publish(topics.satellite_status("kitchen"), kitchen_status().to_json(), 1, True)
            scope = ToolScope("satellite", "kitchen")
            deadline = time.monotonic() + 20
            while "kitchen" not in tools.catalogs:
                assert time.monotonic() < deadline, "no catalog for the kitchen satellite"
                await asyncio.sleep(0.05)
            catalog = tools.catalogs["kitchen"]
            await until_home_assistant_answers(tools, scope)

            async def light_state(entity_id: str) -> str:
                return (await entity_state(http, home, auth, entity_id))["state"]

            round_trips, to_state = [], []
            for index in range(10):
                name = "HassTurnOn" if index % 2 == 0 else "HassTurnOff"
                expected = "on" if index % 2 == 0 else "off"
                start = time.perf_counter()
                result = await tools.call(scope, ToolCall(name, '{"name": "Kitchen light"}', f"c{index}", "s1"))
                round_trips.append((time.perf_counter() - start) * 1000)
                assert result.error is None, result
                while await light_state("light.kitchen") != expected:
                    assert time.perf_counter() - start < 5
                    await asyncio.sleep(0.005)
                to_state.append((time.perf_counter() - start) * 1000)
            bad = await tools.call(scope, ToolCall("HassTurnOn", '{"name": "Nonexistent lamp"}', "c-bad", "s1"))
            return {
                "tools": sorted(t.name for t in catalog.tools),
                "prompt_names_kitchen_light": "Kitchen light" in (catalog.api_prompt or ""),
                "kitchen_light": await light_state("light.kitchen"),
                "round_trip_p50_ms": round(statistics.median(round_trips), 1),
                "call_to_state_p50_ms": round(statistics.median(to_state), 1),
                "unknown_name": {"error": bad.error, "speech": bad.speech},
            }
    finally:
        if client is not None:
            await client.stop()
        home.stop()


if __name__ == "__main__":
    workdir, hass_bin, mosquitto_bin = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    print("RESULT " + json.dumps(asyncio.run(main(workdir, hass_bin, mosquitto_bin))))
