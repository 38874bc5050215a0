"""Options of the zeroconf advertisement (`discovery.*`), declared once.

Kept apart from `discovery.py` so the config loads without zeroconf.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import Maybe, boolean, non_empty, option


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = option(True, "advertise _hearth._tcp.local. with zeroconf", boolean)
    name: str | None = option(None, "service instance name; null = Hearth <mqtt.server_id>", Maybe(non_empty))
    address: str | None = option(None, "IPv4 address to advertise; null = this host's addresses", Maybe(non_empty))
