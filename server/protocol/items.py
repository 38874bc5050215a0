"""Conversation items as they travel on the wire (GA shape, SDK `conversation_item.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["completed", "incomplete", "in_progress"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    def wire(self) -> dict[str, Any]:
        """The JSON form: None-valued optional fields left out, as upstream does."""
        return self.model_dump(exclude_none=True)


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class InputAudio(_Wire):
    type: Literal["input_audio"]
    audio: str | None = None
    transcript: str | None = None


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputTextContent(_Wire):
    type: Literal["output_text"]
    text: str = ""


class OutputAudioContent(_Wire):
    type: Literal["output_audio"]
    audio: str | None = None
    transcript: str | None = None


UserContent = Annotated[Union[InputText, InputAudio, InputImage], Field(discriminator="type")]
AssistantContent = Annotated[Union[OutputTextContent, OutputAudioContent], Field(discriminator="type")]


class _ItemBase(_Wire):
    id: str | None = Field(default=None, max_length=64)
    object: Literal["realtime.item"] | None = None
    status: Status | None = None


class SystemMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["system"]
    content: list[InputText]


class UserMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["user"]
    content: list[UserContent]


class AssistantMessage(_ItemBase):
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[AssistantContent]


class FunctionCall(_ItemBase):
    type: Literal["function_call"]
    name: str
    arguments: str
    call_id: str | None = None


class FunctionCallOutput(_ItemBase):
    type: Literal["function_call_output"]
    call_id: str
    output: str


Message = Annotated[Union[SystemMessage, UserMessage, AssistantMessage], Field(discriminator="role")]
ConversationItem = Annotated[
    Union[Message, FunctionCall, FunctionCallOutput],
    Field(discriminator="type"),
]


class ItemReference(_Wire):
    type: Literal["item_reference"]
    id: str


#: `response.create.response.input` entries: full items or references to existing ones.
ResponseInput = Annotated[
    Union[Message, FunctionCall, FunctionCallOutput, ItemReference],
    Field(discriminator="type"),
]
