"""Token accounting for `response.done.usage`.

Hearth runs no tokenizer-priced model, so it reports counts by documented
rules instead of inventing upstream's internals (docs/realtime-api.md, "Usage"):

- text tokens: words and punctuation marks (regex `\\w+|[^\\w\\s]`), a close
  proxy for BPE counts on English;
- input audio: one token per 100 ms of user audio in the context;
- output audio: one token per 50 ms of generated speech.

These are the rates OpenAI publishes for its realtime audio tokens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")

INPUT_AUDIO_MS_PER_TOKEN = 100
OUTPUT_AUDIO_MS_PER_TOKEN = 50

#: ASCII characters by class under the same rule ("w" word, " " space, "p" punctuation), taken
#: from the regex itself, so the fast count below agrees with it by construction.
_CLASSES = bytes.maketrans(
    bytes(range(128)),
    bytes(ord("w" if re.fullmatch(r"\w", chr(c)) else " " if re.fullmatch(r"\s", chr(c)) else "p")
          for c in range(128)))


def text_tokens(text: str) -> int:
    """Words and punctuation marks in `text` (the `_TOKEN` rule).

    Counting runs on the event loop for every item a response reads and every delta it
    writes, so it must stay cheap for a 30,000-character message: ASCII text is classified
    with one `bytes.translate` (~40x faster than the regex), other text uses the regex.
    """
    if not text.isascii():
        return len(_TOKEN.findall(text))
    classes = b" " + text.encode("ascii").translate(_CLASSES)
    # A word starts at every "w" that follows a space or a punctuation mark.
    return classes.count(b"p") + classes.count(b" w") + classes.count(b"pw")


def audio_tokens(ms: float, ms_per_token: int) -> int:
    return math.ceil(ms / ms_per_token) if ms > 0 else 0


@dataclass
class Usage:
    input_text: int = 0
    input_audio: int = 0
    output_text: int = 0
    output_audio_ms: float = 0.0
    #: (input, output) text tokens an engine measured itself (an LLM endpoint's usage); these
    #: replace the word counts for text.
    measured: tuple[int, int] | None = None

    def wire(self) -> dict:
        output_audio = audio_tokens(self.output_audio_ms, OUTPUT_AUDIO_MS_PER_TOKEN)
        if self.measured is not None:
            self.input_text, self.output_text = self.measured
        input_tokens = self.input_text + self.input_audio
        output_tokens = self.output_text + output_audio
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": self.input_text,
                "audio_tokens": self.input_audio,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": self.output_text, "audio_tokens": output_audio},
        }
