"""Zeroconf (mDNS/DNS-SD) advertisement of a house server, as satellites read it.

The server registers a service of type ``_hearth._tcp.local.`` whose TXT
record carries the keys below (all values are UTF-8 strings). Satellites with
no broker configured browse for it and connect to the advertised broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import ProtocolError
from .mqtt_url import MqttUrl
from .version import PROTOCOL_VERSION

SERVICE_TYPE = "_hearth._tcp.local."

#: TXT key: wire protocol major version the server speaks (``"1"``). Required.
TXT_PROTOCOL = "proto"
#: TXT key: the broker satellites should use, ``mqtt://host:port`` or ``mqtts://host:port``,
#: never with credentials. An empty host (``mqtt://:1883``) means "the address this
#: service was advertised from". Required.
TXT_MQTT = "mqtt"
#: TXT key: the server id (as in ``hearth/v1/server/<id>/status``). Optional.
TXT_SERVER_ID = "id"
#: TXT key: the server's software version. Optional.
TXT_VERSION = "version"


@dataclass(frozen=True)
class ServerAdvert:
    protocol: int
    mqtt: MqttUrl
    server_id: str | None = None
    version: str | None = None

    def to_txt(self) -> dict[str, str]:
        """The TXT properties a server registers."""
        url = self.mqtt
        scheme = "mqtts" if url.tls else "mqtt"
        txt = {TXT_PROTOCOL: str(self.protocol), TXT_MQTT: f"{scheme}://{url.host}:{url.port}"}
        if self.server_id:
            txt[TXT_SERVER_ID] = self.server_id
        if self.version:
            txt[TXT_VERSION] = self.version
        return txt

    @classmethod
    def from_txt(
        cls, properties: Mapping[bytes | str, bytes | str | None], *, address: str | None = None
    ) -> "ServerAdvert":
        """Parse TXT properties (as zeroconf gives them: bytes keys and values)."""
        txt = {_text(k): _text(v) for k, v in properties.items() if v is not None}
        try:
            protocol = int(txt[TXT_PROTOCOL])
        except (KeyError, ValueError) as err:
            raise ProtocolError("TXT record lacks a numeric 'proto'", txt=txt) from err
        if TXT_MQTT not in txt:
            raise ProtocolError("TXT record lacks 'mqtt'", txt=txt)
        url = MqttUrl.parse(txt[TXT_MQTT])
        if url.username or url.password:
            url = MqttUrl(url.host, url.port, tls=url.tls)
        if not url.host or url.host in ("0.0.0.0", "::"):
            if not address:
                raise ProtocolError("TXT 'mqtt' has no host and no address is known", txt=txt)
            url = url.with_host(address)
        return cls(protocol=protocol, mqtt=url, server_id=txt.get(TXT_SERVER_ID), version=txt.get(TXT_VERSION))

    @property
    def compatible(self) -> bool:
        return self.protocol == PROTOCOL_VERSION


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
