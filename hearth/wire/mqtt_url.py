"""``mqtt://user:pass@host:port`` broker URLs (used by the satellite and the server CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import ProtocolError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> "MqttUrl":
        """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://…`` (TLS).

        An empty host (``mqtt://:1883``) is allowed only where the caller
        fills it in (zeroconf TXT records: "the host that advertised this").
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise ProtocolError(f"bad MQTT URL: {err}", url=_redact(url)) from err
        if parts.scheme not in DEFAULT_PORTS:
            raise ProtocolError("MQTT URL scheme must be mqtt:// or mqtts://", url=_redact(url))
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ProtocolError("MQTT URL takes no path, query or fragment", url=_redact(url))
        return cls(
            host=parts.hostname or "",
            port=port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "mqtts",
        )

    def with_host(self, host: str) -> "MqttUrl":
        return MqttUrl(host, self.port, self.username, self.password, self.tls)

    def redacted(self) -> str:
        """The URL for logs: the password is never shown."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.password else (f"{self.username}@" if self.username else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
