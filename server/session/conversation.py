"""The default conversation: ordered items plus the audio the wire forms leave out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..protocol.errors import RealtimeProtocolError
from .usage import text_tokens


@dataclass
class SpokenSpan:
    """Where one piece of the assistant's transcript sits in its audio (ms)."""

    text: str
    start_ms: float
    end_ms: float


@dataclass
class Entry:
    """One conversation item: its wire dict (without audio) and side data."""

    item: dict[str, Any]
    #: int16 mono audio of an input_audio / output_audio part, and its rate.
    audio: np.ndarray | None = None
    audio_rate: int = 0
    #: For assistant audio: which text was spoken when (drives truncation).
    spans: list[SpokenSpan] = field(default_factory=list)
    #: An assistant item cut to what the listener heard.
    truncated: bool = False
    #: The last text counted and its token count: a long conversation is not recounted per response.
    _counted: tuple[str, int] | None = field(default=None, repr=False, compare=False)

    def tokens(self, text: str) -> int:
        """`text_tokens(text)` for text of this item, counted again only when it changed."""
        if self._counted is None or self._counted[0] != text:
            self._counted = (text, text_tokens(text))
        return self._counted[1]

    @property
    def id(self) -> str:
        return self.item["id"]

    @property
    def audio_ms(self) -> float:
        if self.audio is None or not self.audio_rate:
            return 0.0
        return 1000.0 * len(self.audio) / self.audio_rate


class Conversation:
    """Ordered items with upstream's insertion rules (`previous_item_id`, "root")."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._by_id: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(list(self._entries))

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._by_id

    def get(self, item_id: str) -> Entry | None:
        return self._by_id.get(item_id)

    def last_id(self) -> str | None:
        return self._entries[-1].id if self._entries else None

    def previous_id(self, item_id: str) -> str | None:
        for index, entry in enumerate(self._entries):
            if entry.id == item_id:
                return self._entries[index - 1].id if index else None
        return None

    def insert(self, entry: Entry, previous_item_id: str | None = None) -> str | None:
        """Add an item; returns the id it follows (None at the start).

        `previous_item_id` None appends, "root" inserts first, an id inserts
        after that item; an unknown id is an error and nothing is added.
        """
        if entry.id in self._by_id:
            raise RealtimeProtocolError(
                message=f"Item with id '{entry.id}' already exists.", code="invalid_value", param="item.id"
            )
        if previous_item_id is None:
            index = len(self._entries)
        elif previous_item_id == "root":
            index = 0
        else:
            target = self._by_id.get(previous_item_id)
            if target is None:
                raise RealtimeProtocolError(
                    message=f"Error adding item: the previous item with id '{previous_item_id}' does not exist.",
                    code="invalid_value",
                    param="previous_item_id",
                )
            index = self._entries.index(target) + 1
        self._entries.insert(index, entry)
        self._by_id[entry.id] = entry
        return self._entries[index - 1].id if index else None

    def delete(self, item_id: str) -> Entry:
        entry = self._by_id.pop(item_id, None)
        if entry is None:
            raise RealtimeProtocolError(
                message=f"Error deleting item: the item with id '{item_id}' does not exist.",
                code="item_delete_invalid_item_id",
                param="item_id",
            )
        self._entries.remove(entry)
        return entry

    def entries(self) -> list[Entry]:
        return list(self._entries)
