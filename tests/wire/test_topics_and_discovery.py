"""Topics, broker URLs, the zeroconf TXT record, and the module's own dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hearth.wire import MqttUrl, ProtocolError, topics
from hearth.wire.discovery import SERVICE_TYPE, ServerAdvert
from hearth.wire.topics import SatelliteChannel, SatelliteTopic, ServerChannel, ServerTopic


def test_topic_builders():
    assert topics.satellite_status("kitchen") == "hearth/v1/satellite/kitchen/status"
    assert topics.satellite_event("kitchen") == "hearth/v1/satellite/kitchen/event"
    assert topics.satellite_audio("kitchen") == "hearth/v1/satellite/kitchen/audio"
    assert topics.satellite_command("kitchen") == "hearth/v1/satellite/kitchen/command"
    assert topics.satellite_reply("kitchen") == "hearth/v1/satellite/kitchen/reply"
    assert topics.server_status("house-1") == "hearth/v1/server/house-1/status"
    assert topics.all_satellites(SatelliteChannel.AUDIO) == "hearth/v1/satellite/+/audio"
    assert topics.all_server_statuses() == "hearth/v1/server/+/status"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "has space", "-lead", "x" * 65, "kü"])
def test_ids_that_would_break_topics_are_refused(bad: str):
    with pytest.raises(ProtocolError):
        topics.satellite_status(bad)


def test_channel_properties():
    assert SatelliteChannel.AUDIO.qos == 0 and SatelliteChannel.REPLY.qos == 0
    assert SatelliteChannel.EVENT.qos == 1 and SatelliteChannel.COMMAND.qos == 1
    assert SatelliteChannel.STATUS.retained and not SatelliteChannel.EVENT.retained
    assert {c for c in SatelliteChannel if c.from_satellite} == {
        SatelliteChannel.STATUS,
        SatelliteChannel.EVENT,
        SatelliteChannel.AUDIO,
    }


def test_parse_topic():
    assert topics.parse_topic("hearth/v1/satellite/kitchen/audio") == SatelliteTopic("kitchen", SatelliteChannel.AUDIO)
    assert topics.parse_topic("hearth/v1/server/house/status") == ServerTopic("house", ServerChannel.STATUS)
    for bad in [
        "hearth/v2/satellite/kitchen/audio",
        "hearth/v1/satellite/kitchen/video",
        "hearth/v1/satellite/kitchen",
        "hearth/v1/toaster/kitchen/status",
        "hearth/v1/satellite/+/audio",
        "homeassistant/v1/satellite/kitchen/audio",
    ]:
        with pytest.raises(ProtocolError):
            topics.parse_topic(bad)


def test_mqtt_url():
    url = MqttUrl.parse("mqtt://sat%2Fkitchen:p%40ss@broker.lan:1884")
    assert url == MqttUrl("broker.lan", 1884, "sat/kitchen", "p@ss", tls=False)
    assert "p@ss" not in url.redacted() and "***" in url.redacted()
    assert MqttUrl.parse("mqtts://broker") == MqttUrl("broker", 8883, tls=True)
    assert MqttUrl.parse("mqtt://[::1]:1883").host == "::1"
    assert MqttUrl.parse("mqtt://:1883").host == ""
    for bad in ["http://broker", "broker:1883", "mqtt://broker:99999", "mqtt://broker/path", "mqtt://b?x=1"]:
        with pytest.raises(ProtocolError):
            MqttUrl.parse(bad)


def test_bad_url_errors_do_not_leak_passwords():
    with pytest.raises(ProtocolError) as info:
        MqttUrl.parse("http://user:secret@broker")
    assert "secret" not in str(info.value)


def test_discovery_txt_round_trip():
    assert SERVICE_TYPE == "_hearth._tcp.local."
    advert = ServerAdvert(protocol=1, mqtt=MqttUrl("192.0.2.10", 1883), server_id="house", version="0.1.0")
    txt = advert.to_txt()
    assert txt == {"proto": "1", "mqtt": "mqtt://192.0.2.10:1883", "id": "house", "version": "0.1.0"}
    as_zeroconf = {k.encode(): v.encode() for k, v in txt.items()}
    assert ServerAdvert.from_txt(as_zeroconf) == advert
    assert advert.compatible


def test_discovery_empty_host_means_the_advertising_address():
    advert = ServerAdvert.from_txt({b"proto": b"1", b"mqtt": b"mqtt://:1883"}, address="192.0.2.7")
    assert advert.mqtt == MqttUrl("192.0.2.7", 1883)
    advert = ServerAdvert.from_txt({b"proto": b"1", b"mqtt": b"mqtts://0.0.0.0:8883"}, address="192.0.2.7")
    assert advert.mqtt == MqttUrl("192.0.2.7", 8883, tls=True)
    with pytest.raises(ProtocolError):
        ServerAdvert.from_txt({b"proto": b"1", b"mqtt": b"mqtt://:1883"})


def test_discovery_never_takes_credentials_from_txt():
    advert = ServerAdvert.from_txt({b"proto": b"1", b"mqtt": b"mqtt://u:p@h:1883"})
    assert advert.mqtt.username is None and advert.mqtt.password is None


@pytest.mark.parametrize("txt", [{}, {b"proto": b"x", b"mqtt": b"mqtt://h"}, {b"proto": b"1"}])
def test_discovery_bad_txt(txt):
    with pytest.raises(ProtocolError):
        ServerAdvert.from_txt(txt)


def test_wire_package_is_stdlib_only():
    """The satellite, the server and HA all import it: it must not pull anything in."""
    code = (
        "import sys, json, pkgutil, importlib; import hearth.wire as w\n"
        "[importlib.import_module('hearth.wire.' + m.name) for m in pkgutil.iter_modules(w.__path__)]\n"
        "top = {n.split('.')[0] for n in sys.modules}\n"
        "print(json.dumps(sorted(top - set(sys.stdlib_module_names) - {'hearth', '__main__', '_distutils_hack'} - {n for n in top if n.startswith('__editable__')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
