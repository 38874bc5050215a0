"""Per-session limits: how much one client may ask of the server at once.

Each bounds work or memory a single request can create, so one session cannot starve
the others (docs/configuration.md, "Limits"; docs/realtime-api.md lists the error codes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..protocol.errors import RealtimeProtocolError


@dataclass(frozen=True)
class SessionLimits:
    #: Longest input buffer without a commit (s); upstream's own limit is 15 minutes.
    max_buffer_s: float = 15 * 60
    #: Longest audio in one client-created item (s): it is transcribed in full.
    max_item_audio_s: float = 120.0
    #: Most text in one client-created item (characters).
    max_item_text_chars: int = 32_768
    #: Out-of-band (`conversation: "none"`) responses running at once.
    max_side_responses: int = 4
    #: Function tools a session may declare, and the JSON size of one tool's definition.
    max_tools: int = 128
    max_tool_bytes: int = 32_768
    #: Audio transcribed speculatively at a pause (s): Whisper's window; longer turns wait for the commit.
    max_speculation_s: float = 30.0
    #: Appends longer than this (s) have their VAD run off the event loop.
    large_append_s: float = 1.0


def check_tools(tools: list[Any], limits: SessionLimits, param: str) -> None:
    """Refuse tool lists whose size would make every turn of the session slow."""
    if len(tools) > limits.max_tools:
        raise RealtimeProtocolError(
            message=f"Too many tools: {len(tools)} (at most {limits.max_tools}).", code="invalid_value", param=param)
    for index, tool in enumerate(tools):
        data = tool.model_dump(exclude_none=True) if hasattr(tool, "model_dump") else tool
        size = len(json.dumps(data, separators=(",", ":")))
        if size > limits.max_tool_bytes:
            raise RealtimeProtocolError(
                message=f"Tool definition too large: {size} bytes (at most {limits.max_tool_bytes}).",
                code="invalid_value", param=f"{param}[{index}]")
