"""The fast short-window transcript and the cascade's end-of-turn judge, on real models (not timed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hearth.server.engines.cascade.brain_intents import IntentsBrain
from hearth.server.engines.cascade.fast_stt import (
    FastTranscriber,
    QuickTurnJudge,
    first_sentence,
    intent_matcher,
)
from hearth.server.engines.cascade.stt import WhisperTranscriber

TOOLS = [{"type": "function", "name": name, "description": "", "parameters": {"type": "object", "properties": {
    "name": {"type": "string", "enum": ["Kitchen Light", "Porch Light", "Living Room Lamp"]},
    "brightness": {"type": "integer"}}}} for name in ("HassTurnOn", "HassTurnOff", "HassLightSet")]


@pytest.fixture(scope="module")
def judge(transcriber: WhisperTranscriber) -> QuickTurnJudge:
    brain = IntentsBrain()
    matcher = intent_matcher(brain)
    assert matcher is brain
    return QuickTurnJudge(FastTranscriber(transcriber), matcher)


def test_first_sentence() -> None:
    assert first_sentence(" Turn on the light. Turn on the light. Turn on") == "Turn on the light."
    assert first_sentence("What time is it? What") == "What time is it?"
    assert first_sentence("turn on the") == "turn on the"


def test_fast_transcript_of_a_command(transcriber: WhisperTranscriber, kitchen_light: np.ndarray) -> None:
    fast = FastTranscriber(transcriber)
    text = fast.transcribe_blocking(kitchen_light)
    # the short window may mishear a word; never the whole thing, and never a repeat
    words = text.lower().strip(".").split()
    assert "kitchen" in words and "light" in words and len(words) <= 6, text
    assert fast.transcribe_blocking(np.zeros(16000, dtype=np.float32)) in ("", "you", "You.", "."), "silence"
    assert fast.transcribe_blocking(np.zeros(100, dtype=np.float32)) == ""


@pytest.mark.parametrize("said, intent", [
    ("What time is it?", "HassGetCurrentTime"),
    ("Set the living room lamp to fifty percent.", "HassLightSet"),
])
async def test_judge_matches_whole_requests(judge: QuickTurnJudge, speak_16k: Callable[[str], np.ndarray],
                                            said: str, intent: str) -> None:
    guess = await judge.guess(speak_16k(said), tools=TOOLS, instructions="")
    assert guess.intent == intent and guess.complete, guess


@pytest.mark.parametrize("fragment", ["Turn on the", "Set a timer for", "Set the living room lamp to",
                                      "Turn off the lights in the"])
async def test_judge_never_calls_a_fragment_complete(judge: QuickTurnJudge, speak_16k: Callable[[str], np.ndarray],
                                                     fragment: str) -> None:
    guess = await judge.guess(speak_16k(fragment), tools=TOOLS, instructions="")
    assert not guess.complete, guess


