"""Per-session limits: how much one client may ask of the server at once.

Each bounds work or memory a single request can create, so one session cannot starve
the others (docs/configuration.md, `server.limits`, lists them with their error codes).
A plain dataclass with no imports, so the configuration can take its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionLimits:
    #: Longest input buffer without a commit (s); upstream's own limit is 15 minutes.
    max_buffer_s: float = 900.0
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
    #: Newest conversation items an engine sees per response (upstream truncates to its window too).
    max_context_items: int = 256


def duration_words(seconds: float) -> str:
    """"60 minutes" as upstream says it; limits that are not whole minutes in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    whole = max(1, round(seconds))
    return f"{whole} second{'' if whole == 1 else 's'}"
