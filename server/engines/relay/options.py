"""The relay engine's options, declared once (`engine.type: relay`); no network library imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hearth.server.options import (
    REQUIRED,
    Maybe,
    existing_file,
    integer,
    non_empty,
    number,
    option,
    schema_of,
    tag,
)

from ..cascade.options import http_url, read_key


@dataclass(frozen=True)
class UpstreamConfig:
    """The upstream Realtime server: OpenAI's GA API, or another Hearth."""

    base_url: str = option(REQUIRED, "the upstream's root, e.g. https://api.openai.com/v1", http_url)
    model: str = option("gpt-realtime", "the upstream's Realtime model", non_empty)
    api_key: str | None = option(None, "the upstream's API key; null = api_key_file, else none", Maybe(non_empty),
                                 secret=True)
    api_key_file: Path | str | None = option(None, "file holding the upstream's API key", Maybe(existing_file))
    connect_timeout_s: float = option(10.0, "to open the upstream WebSocket", number(0.1), unit="seconds")
    response_timeout_s: float = option(15.0, "from response.create to response.created, and between events",
                                       number(0.1), unit="seconds")
    #: None passes the session's voice (an OpenAI voice name).
    voice: str | None = option(None, "voice asked of the upstream; null = the session's", Maybe(non_empty))

    def key(self) -> str:
        return read_key(self.api_key, self.api_key_file, "relay engine")


@dataclass(frozen=True, kw_only=True)
class RelayConfig:
    """`engine.type: relay`: an upstream Realtime server hears each session and makes its responses."""

    type: Literal["relay"] = tag("relay")
    workers: int = option(2, "inference threads shared by all sessions", integer(1), unit="threads")
    upstream: UpstreamConfig = option(REQUIRED, "the upstream Realtime server", schema_of(UpstreamConfig))
