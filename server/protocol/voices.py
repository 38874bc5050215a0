"""The Realtime API's built-in voice names and its speed range: the one list the server keeps.

A client may send any of these names; the server's own config may add custom names
(`engine.tts.voices`). Kept free of pydantic so the config can import it cheaply.
"""

from __future__ import annotations

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

#: `audio.output.speed`: 1.0 is normal, higher is faster.
MIN_SPEED = 0.25
MAX_SPEED = 1.5
