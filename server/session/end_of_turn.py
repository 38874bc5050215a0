"""The staged end of turn: when a silence means the user is done.

A fixed silence is either slow (500 ms) or cuts people off mid-sentence. `semantic_vad`
(and the satellites, which default to it) stages the decision instead:

1. at `QUICK_SILENCE_MS[eagerness]` of silence, an engine's `TurnEndModel` gives a
   fast, rough transcript of the turn so far and the intent it matches, if any
   (the cascade: short-window Whisper, ~40 ms, and Home Assistant's matcher). A
   match that does not read as a fragment ends the turn at once;
2. otherwise the full transcript (speculative, started once the guess is in) is asked
   whether it `sounds_complete` or matches an intent (without trailing off), after
   `SEMANTIC_MIN_SILENCE[eagerness]`;
3. otherwise the silence cap `SEMANTIC_MAX_SILENCE[eagerness]` ends it.

Nothing here acts on the rough transcript: it only ends the turn and lets the session
start a reply speculatively (held until the commit, dropped if the user goes on). The
item's transcript and every tool call wait for the full transcript.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: semantic_vad: silence before the fast transcript + intent match may end the turn (ms).
QUICK_SILENCE_MS = {"high": 100, "medium": 150, "auto": 150, "low": 300}
#: semantic_vad: silence needed after a complete-sounding full transcript, and the cap (ms).
SEMANTIC_MIN_SILENCE = {"high": 200, "medium": 350, "auto": 350, "low": 600}
SEMANTIC_MAX_SILENCE = {"high": 2000, "medium": 4000, "auto": 4000, "low": 8000}

_TRAILING_CONTINUATIONS = re.compile(
    r"\b(and|or|but|so|because|the|a|an|to|of|with|for|in|on|at|um|uh|like|then|if|my|your|is|set|turn)"
    r"\W*$", re.IGNORECASE
)
_WORDS = re.compile(r"[a-z0-9']+")


def reads_unfinished(text: str) -> bool:
    """Whether a transcript ends like a sentence fragment ("turn on the", "set a timer for,")."""
    text = text.strip()
    return not text or text.endswith(("...", "…", ",", "-")) or _TRAILING_CONTINUATIONS.search(text) is not None


def sounds_complete(text: str) -> bool:
    """Whether a (full) transcript reads like a finished request."""
    text = text.strip()
    return not reads_unfinished(text) and text[-1] in ".!?"


def same_words(a: str, b: str) -> bool:
    """Two transcripts say the same words (case and punctuation aside)."""
    return _WORDS.findall(a.lower()) == _WORDS.findall(b.lower())


@dataclass(frozen=True)
class TurnGuess:
    """A rough transcript of the turn so far and what it asks for."""

    text: str
    #: The intent the text matches (e.g. "HassTurnOn"); None when it matches none.
    intent: str | None = None

    @property
    def complete(self) -> bool:
        """A request that stands on its own: it matched an intent and does not trail off."""
        return self.intent is not None and not reads_unfinished(self.text)


class TurnEndModel(Protocol):
    """An engine's fast judge of the turn so far (optional: `EngineSession.end_of_turn`)."""

    async def guess(self, audio: np.ndarray, *, tools: Sequence[dict[str, Any]], instructions: str) -> TurnGuess:
        """Transcribe float32 16 kHz `audio` roughly and match it against what the session can do."""

    async def match(self, text: str, *, tools: Sequence[dict[str, Any]], instructions: str) -> str | None:
        """The intent a (full) transcript matches, if any."""
