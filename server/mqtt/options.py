"""Options of the satellite transport (`mqtt.*`): the broker connection, the bridge, the embedded broker.

Declared once here; `server/config.py` reads them from the YAML file and the bridge, the
client and the broker receive the built classes. Importing this module loads neither paho
nor amqtt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import voluptuous as vol

from hearth.server.options import (
    Maybe,
    boolean,
    existing_file,
    integer,
    mapping_of,
    non_empty,
    number,
    one_of,
    option,
    schema_of,
    section,
    string,
)


def mqtt_url(value: Any) -> str:
    """`mqtt://[user[:password]@]host[:port]` or `mqtts://…` (hearth.wire parses it)."""
    from hearth.wire import MqttUrl, ProtocolError

    try:
        url = MqttUrl.parse(non_empty(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err).split(" (")[0]) from None
    if not url.host:
        raise vol.Invalid("the broker URL needs a host, e.g. mqtt://192.168.1.10:1883")
    return value


def node_id(value: Any) -> str:
    """A server or satellite id: one MQTT topic level (hearth.wire's rule)."""
    from hearth.wire import ProtocolError, check_node_id

    try:
        return check_node_id(string(value))
    except ProtocolError as err:
        raise vol.Invalid(str(err).split(" (")[0]) from None


@dataclass(frozen=True)
class MqttTlsConfig:
    ca_file: Path | None = option(None, "CA certificate (PEM) that signed the broker's; null = the system store",
                                  Maybe(existing_file))
    cert_file: Path | None = option(None, "client certificate (PEM), for brokers that ask for one",
                                    Maybe(existing_file))
    key_file: Path | None = option(None, "private key (PEM) of cert_file", Maybe(existing_file))
    insecure: bool = option(False, "skip the broker host name check (testing only)", boolean)


@dataclass(frozen=True)
class EmbeddedBrokerConfig:
    host: str = option("127.0.0.1", "embedded broker bind address (0.0.0.0 for the house); no client is ever "
                       "anonymous", non_empty)
    port: int = option(1883, "embedded broker TCP port; taken by a broker that lets the server in: that one is used",
                       integer(1, 65535), unit="TCP port")
    username: str | None = option(None, "one more account on the embedded broker (e.g. homeassistant), with the "
                                  "ACL's rights for that name; null = none", Maybe(non_empty))
    password: str | None = option(None, "password of that account", Maybe(non_empty), secret=True)


@dataclass(frozen=True)
class SatelliteSettings:
    """Per-satellite session settings; None means the `session` default."""

    voice: str | None = option(None, "output voice; null = session.voice", Maybe(non_empty))
    instructions: str | None = option(None, "system prompt; null = session.instructions", Maybe(string))
    language: str | None = option(None, "ISO-639-1 code of the speech; null = engine.stt.language", Maybe(non_empty))
    #: Its account on the embedded broker (username = the satellite id); None = no account.
    password: str | None = option(None, "its password on the embedded broker (username = the satellite id); "
                                  "null = it cannot log in there", Maybe(non_empty), secret=True)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = option(True, "serve satellites over MQTT; false = no broker, no bridge", boolean)
    #: `mqtt://user:pass@host:port` of an external broker; None = the embedded broker.
    url: str | None = option(None, "external broker mqtt://[user[:password]@]host[:port] or mqtts://; "
                             "null = start the embedded broker", Maybe(mqtt_url), secret=True)
    server_id: str = option("hearth", "this server's id in hearth/v1/server/<id>/status", node_id)
    username: str | None = option(None, "broker username (wins over the one in url)", Maybe(non_empty))
    password: str | None = option(None, "broker password (wins over the one in url)", Maybe(non_empty), secret=True)
    client_id: str | None = option(None, "MQTT client id; null = hearth-server-<server_id>", Maybe(non_empty))
    protocol: Literal["auto", "5", "3.1.1"] = option("auto", "auto (MQTT 5, else 3.1.1), 5 or 3.1.1",
                                                     one_of("auto", "5", "3.1.1"))
    keepalive_s: int = option(30, "the broker publishes the last will after 1.5 x this of silence",
                              integer(5, 3600), unit="seconds")
    reconnect_min_s: float = option(0.5, "wait before the first reconnect; doubles per failure", number(0.1),
                                    unit="seconds")
    reconnect_max_s: float = option(30.0, "longest wait between reconnects", number(0.1), unit="seconds")
    tls: MqttTlsConfig = section(MqttTlsConfig, "TLS for mqtts:// URLs")
    broker: EmbeddedBrokerConfig = section(EmbeddedBrokerConfig, "the embedded broker (amqtt), used when url is null")
    arbitration_window_ms: int = option(200, "time to collect wake words from several satellites before "
                                        "picking one", integer(0, 5000), unit="ms")
    stream_timeout_s: float = option(5.0, "without mic audio for this long, a listening session is closed",
                                     number(0.5), unit="seconds")
    ack_timeout_s: float = option(10.0, "wait for playback-finished after the reply has played", number(0.5),
                                  unit="seconds")
    satellites: Mapping[str, SatelliteSettings] = option(
        {}, "satellite id -> {voice, instructions, language, password}",
        mapping_of(node_id, schema_of(SatelliteSettings)))

    @property
    def embedded(self) -> bool:
        """True when the server runs its own broker (no `url` configured)."""
        return self.enabled and self.url is None


def account_errors(mqtt: MqttConfig) -> list[tuple[str, str]]:
    """Embedded-broker accounts that would get more than their own rights, or half an account."""
    from .acl import SERVER_USER, SERVICE_USERS

    errors = []
    broker = mqtt.broker
    if mqtt.embedded and (broker.username is None) != (broker.password is None):
        errors.append(("mqtt.broker.password", "set both mqtt.broker.username and mqtt.broker.password, or neither"))
    if broker.username == SERVER_USER:
        errors.append(("mqtt.broker.username", f"{SERVER_USER!r} is the server's own account; pick another name"))
    for sat_id, sat in mqtt.satellites.items():
        if sat.password is not None and sat_id in SERVICE_USERS:
            errors.append((f"mqtt.satellites.{sat_id}.password", f"{sat_id!r} is a service account name with "
                           "rights over every satellite; give this satellite another id"))
    return errors
