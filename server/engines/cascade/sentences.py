"""Incremental sentence splitting of streamed reply text, for sentence-by-sentence TTS.

Speech can start as soon as the first sentence is complete, so the splitter
hands out each sentence the moment its end is certain. The pieces partition the
input exactly (whitespace included), so joining them gives back the streamed
text: the engine uses them as transcript deltas as well as TTS input.

Rules, chosen to err on the side of *not* splitting (a missed split only delays
audio; a wrong split breaks the prosody of a sentence):

* A sentence ends at a run of `.`, `!`, `?` or `…` (optionally followed by
  closing quotes or brackets) that is followed by whitespace, or at a newline.
  "3.5", "1,000" and "example.com" never split because no whitespace follows.
* Titles and Latin abbreviations ("Dr.", "Mr.", "St.", "e.g.", "i.e.", "vs.")
  and single capital initials ("J. Smith") never end a sentence.
* Other dotted short forms ("etc.", "a.m.", "U.S.") end one only when the next
  word starts with a capital letter, so they wait for that word.
* First-chunk rule (a documented latency choice): the *first* piece of a
  reply ends at its first clause boundary (`,` `;` `:` followed by whitespace)
  that comes at least `first_clause_chars` characters in, when no sentence end
  comes before it, so "Sure, here's one." starts speaking at "Sure,". Piper's
  time to first audio grows with the piece (on 2 cores ~50 ms for "Sure,"
  against ~140 ms for the whole sentence). Later pieces are always whole
  sentences.
"""

from __future__ import annotations

_TERMINATORS = frozenset(".!?…")
_CLOSERS = frozenset("\"')]}”’»")
_CLAUSE_MARKS = frozenset(",;:")

#: Never the end of a sentence: a name or example always follows.
_NEVER_FINAL = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "e.g", "i.e", "cf", "approx", "fig"}
)
#: Sometimes the end of a sentence: decided by the case of the next word.
_MAYBE_FINAL = frozenset({"etc", "inc", "ltd", "co", "a.m", "p.m", "u.s", "u.k", "no"})

#: Default for the first-chunk rule: the shortest opening clause (in characters, its
#: mark included) that goes out on its own, so "Sure," and "Okay," do and "Hm," does not.
FIRST_CLAUSE_CHARS = 5

_WAIT = -1  # "cannot decide until more text arrives"


class SentenceSplitter:
    """Feed text deltas, get complete sentences back as soon as they end."""

    def __init__(self, *, first_clause_chars: int | None = FIRST_CLAUSE_CHARS) -> None:
        """`first_clause_chars=None` turns the first-chunk clause rule off."""
        self._buffer = ""
        self._first_clause_chars = first_clause_chars
        self._emitted = False

    def feed(self, delta: str) -> list[str]:
        """Add a text delta; return the pieces completed by it (possibly none)."""
        self._buffer += delta
        pieces: list[str] = []
        while True:
            end = _sentence_end(self._buffer, final=False)
            if end is None and not self._emitted:
                end = self._first_clause_end()
            if end is None or end == _WAIT:
                break
            pieces.append(self._take(end))
        return pieces

    def flush(self) -> list[str]:
        """End of the stream: return every remaining piece (the last may lack a terminator)."""
        pieces: list[str] = []
        while self._buffer:
            end = _sentence_end(self._buffer, final=True)
            pieces.append(self._take(len(self._buffer) if end in (None, _WAIT) else end))
        return pieces

    def _take(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end], self._buffer[end:]
        self._emitted = True
        return piece

    def _first_clause_end(self) -> int | None:
        limit = self._first_clause_chars
        if limit is None:
            return None
        buf = self._buffer
        for i in range(max(limit - 1, 0), len(buf) - 1):
            if buf[i] in _CLAUSE_MARKS and buf[i + 1].isspace():
                end = _skip_space(buf, i + 1)
                # Trailing spaces belong to this piece: wait until the next word starts.
                return end if end < len(buf) else None
        return None


def split_sentences(text: str, *, first_clause_chars: int | None = None) -> list[str]:
    """Split a complete text into pieces that join back to `text`."""
    splitter = SentenceSplitter(first_clause_chars=first_clause_chars)
    return splitter.feed(text) + splitter.flush()


def is_speakable(piece: str) -> bool:
    """True when a piece holds something to say (not just spaces or punctuation)."""
    return any(ch.isalnum() for ch in piece)


def _sentence_end(buf: str, *, final: bool) -> int | None:
    """End index (after trailing whitespace) of the first sentence in `buf`.

    None: no sentence end in `buf`. _WAIT: the first candidate end needs more
    text to decide (never returned when `final`).
    """
    n = len(buf)
    i = 0
    while i < n:
        ch = buf[i]
        if ch == "\n":
            if buf[:i].strip():
                return _skip_space(buf, i)
            i += 1
            continue
        if ch not in _TERMINATORS:
            i += 1
            continue
        j = i
        while j < n and buf[j] in _TERMINATORS:
            j += 1
        while j < n and buf[j] in _CLOSERS:
            j += 1
        if j == n:
            return n if final else _WAIT
        if not buf[j].isspace():
            i = j
            continue
        if buf[i:j] == "." or (j - i > 1 and buf[i] == "." and buf[i + 1] in _CLOSERS):
            verdict = _abbreviation_verdict(buf, i, j, final=final)
            if verdict == _WAIT:
                return _WAIT
            if verdict is False:
                i = j
                continue
        return _skip_space(buf, j)
    return None


def _abbreviation_verdict(buf: str, dot: int, after: int, *, final: bool) -> bool | int:
    """Whether the single '.' at `dot` ends a sentence: True, False or _WAIT."""
    start = dot
    while start > 0 and (buf[start - 1].isalpha() or buf[start - 1] == "."):
        start -= 1
    word = buf[start:dot]
    if not word:
        return True
    lowered = word.lower()
    if lowered in _NEVER_FINAL or (len(word) == 1 and word.isupper()):
        return False
    if lowered in _MAYBE_FINAL or "." in word:
        nxt = _skip_space(buf, after)
        if nxt == len(buf):
            return True if final else _WAIT
        return buf[nxt].isupper()
    return True


def _skip_space(buf: str, i: int) -> int:
    while i < len(buf) and buf[i].isspace():
        i += 1
    return i
