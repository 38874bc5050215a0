"""Conversation items: create, retrieve, delete and truncate, with upstream's errors.

Items are built from the protocol models (`protocol/items.py`) and kept in wire form
without their audio; the audio sits beside them in the `Entry`. Truncation keeps only
the words the listener heard, from the spans the response builder recorded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.formats import AudioFormat, decode, encode
from ..audio.resample import StreamResampler
from ..protocol import client_events as ce
from ..protocol import server_events as ev
from ..protocol.errors import RealtimeProtocolError
from ..protocol.ids import new_id
from ..protocol.items import InputAudio, OutputAudioContent, UserMessage
from .conversation import Conversation, Entry
from .limits import SessionLimits

Emit = Callable[[ev.ServerEvent], None]


def user_audio_item(item_id: str) -> dict[str, Any]:
    """The wire form of a committed user turn (its transcript follows later)."""
    item = UserMessage(id=item_id, object="realtime.item", type="message", role="user", status="completed",
                       content=[InputAudio(type="input_audio", transcript=None)])
    wire = item.model_dump(exclude_none=True)
    wire["content"] = [{"type": "input_audio", "transcript": None}]
    return wire


def audio_part(item: dict[str, Any]) -> dict[str, Any]:
    """The input_audio content part of a user message item."""
    return next(part for part in item["content"] if part["type"] == "input_audio")


def set_transcript(entry: Entry, text: str) -> None:
    """Fill a user audio item's transcript (a copy of the item: events already sent keep theirs)."""
    entry.item = {**entry.item, "content": [dict(part) for part in entry.item["content"]]}
    audio_part(entry.item)["transcript"] = text


def heard_text(entry: Entry, audio_end_ms: float) -> str:
    """The part of an assistant transcript spoken before `audio_end_ms`.

    Whole spans that ended before the cut stay; the span being spoken keeps the
    share of its words that fit its elapsed time.
    """
    heard: list[str] = []
    for span in entry.spans:
        if span.end_ms <= audio_end_ms:
            heard.append(span.text)
            continue
        if span.start_ms < audio_end_ms and span.end_ms > span.start_ms:
            share = (audio_end_ms - span.start_ms) / (span.end_ms - span.start_ms)
            words = span.text.split()
            heard.append(" ".join(words[: int(len(words) * share)]))
        break
    return "".join(heard).rstrip()


class Items:
    """The item verbs of one session."""

    def __init__(
        self,
        conversation: Conversation,
        emit: Emit,
        input_format: Callable[[], AudioFormat],
        output_format: Callable[[], AudioFormat],
        in_progress: Callable[[str], bool],
        limits: SessionLimits | None = None,
    ) -> None:
        self.conversation = conversation
        self._emit = emit
        self._input_format = input_format
        self._output_format = output_format
        #: Whether an item belongs to a response still being generated.
        self._in_progress = in_progress
        self.limits = limits or SessionLimits()

    # ------------------------------------------------------------ create

    def create(self, event: ce.ConversationItemCreate) -> Entry:
        """Add a client item; returns its entry (audio moved out of the wire form)."""
        data = event.item.model_dump(exclude_none=True)
        if data.get("role") == "assistant" and any(p["type"] == "output_audio" for p in data["content"]):
            raise RealtimeProtocolError(
                message="Assistant messages cannot contain audio content; use output_text.",
                code="invalid_value", param="item.content")
        data["object"] = "realtime.item"
        data["status"] = "completed"
        if data["type"] == "function_call":
            data.setdefault("call_id", new_id("call"))
        entry = self.entry_from_client(data)
        previous = self.conversation.insert(entry, event.previous_item_id)
        self._emit(ev.ConversationItemAdded(previous_item_id=previous, item=entry.item))
        self._emit(ev.ConversationItemDone(previous_item_id=previous, item=entry.item))
        return entry

    def add_server_item(self, item: dict[str, Any]) -> Entry:
        """Add an item the server made itself (a server-side tool's output) at the end."""
        entry = Entry(item=item)
        previous = self.conversation.insert(entry)
        self._emit(ev.ConversationItemAdded(previous_item_id=previous, item=entry.item))
        self._emit(ev.ConversationItemDone(previous_item_id=previous, item=entry.item))
        return entry

    def entry_from_client(self, data: dict[str, Any]) -> Entry:
        """An entry for a client-supplied item; its inline audio moves out of the wire form."""
        limits = self.limits
        text = sum(len(p.get("text") or p.get("transcript") or "") for p in data.get("content", []))
        text += len(data.get("arguments") or "") + len(data.get("output") or "")
        if text > limits.max_item_text_chars:
            raise RealtimeProtocolError(
                message=f"Item too large: {text} characters of text (at most {limits.max_item_text_chars}).",
                code="invalid_value", param="item.content")
        data.setdefault("id", new_id("item"))
        entry = Entry(item=data)
        part = next((p for p in data.get("content", []) if p["type"] == "input_audio"), None)
        if part is not None and part.get("audio"):
            entry.audio = self._decode_audio(part.pop("audio"))
            entry.audio_rate = self._input_format().rate
            part.setdefault("transcript", None)
            if entry.audio_ms > limits.max_item_audio_s * 1000:
                raise RealtimeProtocolError(
                    message=f"Item audio too long: {entry.audio_ms / 1000:.1f} s (at most {limits.max_item_audio_s:g} s).",
                    code="invalid_value", param="item.content")
        return entry

    def _decode_audio(self, payload: str) -> np.ndarray:
        try:
            return decode(self._input_format(), base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise RealtimeProtocolError(message="Invalid 'item.content.audio': expected base64 audio.",
                                        code="invalid_value", param="item.content") from None

    # ------------------------------------------------------------ retrieve / delete

    def retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        entry = self.conversation.get(event.item_id)
        if entry is None:
            raise RealtimeProtocolError(
                message=f"Error retrieving item: the item with id '{event.item_id}' does not exist.",
                code="item_retrieve_invalid_item_id", param="item_id")
        item = {**entry.item, "content": [dict(p) for p in entry.item.get("content", [])]} if "content" in entry.item \
            else dict(entry.item)
        if entry.audio is not None:
            fmt = self._input_format() if item.get("role") == "user" else self._output_format()
            audio = entry.audio
            if entry.audio_rate != fmt.rate:
                audio = StreamResampler(entry.audio_rate, fmt.rate).process(audio, last=True)
            for part in item["content"]:
                if part["type"] in ("input_audio", "output_audio"):
                    part["audio"] = base64.b64encode(encode(fmt, audio)).decode("ascii")
        self._emit(ev.ConversationItemRetrieved(item=item))

    def delete(self, event: ce.ConversationItemDelete) -> None:
        self.conversation.delete(event.item_id)
        self._emit(ev.ConversationItemDeleted(item_id=event.item_id))

    # ------------------------------------------------------------ truncate

    def truncate(self, event: ce.ConversationItemTruncate) -> None:
        entry = self.conversation.get(event.item_id)
        if entry is None:
            raise RealtimeProtocolError(
                message=f"Error truncating item: the item with id '{event.item_id}' does not exist.",
                code="item_truncate_invalid_item_id", param="item_id")
        if entry.item.get("role") != "assistant" or entry.audio is None:
            raise RealtimeProtocolError(
                message="Only assistant messages with audio can be truncated.", code="invalid_value", param="item_id")
        if event.content_index != 0:
            raise RealtimeProtocolError(message="Invalid 'content_index': the item has one content part.",
                                        code="invalid_value", param="content_index")
        if self._in_progress(entry.id):
            raise RealtimeProtocolError(message="Cannot truncate an item while its response is in progress.",
                                        code="invalid_value", param="item_id")
        if event.audio_end_ms > entry.audio_ms + 1:
            raise RealtimeProtocolError(
                message=f"audio_end_ms ({event.audio_end_ms}) is longer than the audio ({entry.audio_ms:.0f} ms).",
                code="invalid_value", param="audio_end_ms")
        self.cut(entry, event.audio_end_ms)

    def cut(self, entry: Entry, audio_end_ms: int) -> None:
        """Keep the first `audio_end_ms` of an assistant item's audio and the words in it."""
        cut = int(audio_end_ms * entry.audio_rate / 1000)
        if entry.audio is not None:
            entry.audio = entry.audio[:cut]
        content = [OutputAudioContent(type="output_audio", transcript=heard_text(entry, audio_end_ms)).wire()]
        entry.item = {**entry.item, "content": content}
        entry.truncated = True
        self._emit(ev.ConversationItemTruncated(item_id=entry.id, content_index=0, audio_end_ms=audio_end_ms))
