"""The cascade's thinking stage: from conversation context to reply text and tool calls.

Brains (Home Assistant intents, an OpenAI-compatible LLM, or both) only decide
*what* to say; the engine around them handles speech. Text is streamed as
deltas so speech can start before the reply is complete; a function call is
emitted once, complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from hearth.server.session.interfaces import OutputFunctionCall, OutputText, ResponseRequest

#: What a brain emits: reply text deltas and complete function calls.
BrainEvent = OutputText | OutputFunctionCall


class Brain(Protocol):
    def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        """Stream the reply for `request`. Cancelling the iteration must stop all work."""
        ...
