"""The cascade's thinking stage: from conversation context to reply text and tool calls.

Brains (Home Assistant intents, an OpenAI-compatible LLM, or both) only decide
*what* to say; the engine around them handles speech. Text is streamed as
deltas so speech can start before the reply is complete; a function call is
emitted complete, optionally after its arguments streamed in pieces
(`OutputFunctionCallDelta`, the LLM brain). A brain that cannot answer yields one `Declined` and
nothing else, so brains compose (`auto` asks the next one) without matching
reply strings; when a decline reaches the engine, its `reply` is spoken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from hearth.server.session.interfaces import (
    Declined,
    OutputFunctionCall,
    OutputFunctionCallDelta,
    OutputText,
    OutputUsage,
    ResponseRequest,
)

#: What a brain emits: reply text deltas and function calls (complete, or streamed in pieces
#: and then complete), or a single decline; a brain that measured its tokens adds `OutputUsage`.
BrainEvent = OutputText | OutputFunctionCallDelta | OutputFunctionCall | OutputUsage | Declined


class Brain(Protocol):
    def respond(self, request: ResponseRequest) -> AsyncIterator[BrainEvent]:
        """Stream the reply for `request`. Cancelling the iteration must stop all work."""
        ...
