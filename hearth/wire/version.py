"""The wire protocol's version.

The major version is part of every topic (``hearth/v1/...``): a change that
an older peer cannot ignore gets a new major version and new topics. Adding
an optional field or a new message type is not such a change (decoders ignore
unknown keys; unknown message types raise ``UnknownMessageType``, which
receivers skip).
"""

PROTOCOL_VERSION = 1
