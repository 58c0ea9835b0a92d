"""The one codec for envelopes and payloads: msgpack through msgspec, with a size limit.

Encoding errors surface at the sender; decoding errors are reported as
:class:`~swarm.errors.DecodeError` (or :class:`~swarm.errors.MessageTooLarge`)
so a receiver can count and drop a bad message instead of crashing.

Example:
    >>> from swarm.codec import Codec
    >>> from swarm.messages import Envelope, Kind, Message
    >>> class Hello(Message):
    ...     name: str
    >>> codec = Codec(max_bytes=1024)
    >>> env = Envelope(id="1", kind=Kind.TASK, type="Hello", sender="me",
    ...                payload=codec.encode_payload(Hello(name="bee")))
    >>> codec.decode_payload(codec.decode(codec.encode(env)), Hello)
    Hello(name='bee')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from swarm.constants import DEFAULT_MAX_MESSAGE_BYTES
from swarm.errors import DecodeError, EncodeError, MessageTooLarge
from swarm.messages import Envelope, Message, UnknownMessage, lookup_message_type

__all__ = ["DECODE_FAILURES", "Codec"]

T = TypeVar("T")

#: Everything msgspec's decoders raise on bad bytes. ``RecursionError``: msgspec
#: guards its recursion with the interpreter's limit, so a few kilobytes of
#: nested maps raise it; it is bad input like any other, never a crash.
DECODE_FAILURES: tuple[type[Exception], ...] = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
)

_NONE = msgspec.Raw(b"\xc0")


class Codec:
    """Encodes and decodes envelopes and payloads, enforcing a size limit.

    Args:
        max_bytes: Largest encoded envelope accepted, in bytes.
    """

    __slots__ = ("_decoders", "_encoder", "_env_decoder", "max_bytes")

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._encoder = msgspec.msgpack.Encoder()
        self._env_decoder = msgspec.msgpack.Decoder(Envelope)
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    def encode_payload(self, value: Any) -> msgspec.Raw:
        """Encode a payload (a :class:`Message`, or builtin data) for an envelope.

        Raises:
            EncodeError: The value cannot be encoded.
            MessageTooLarge: The encoded value alone exceeds the limit.
        """
        if value is None:
            return _NONE
        try:
            data = self._encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode {type(value).__name__}: {exc}") from exc
        if len(data) > self.max_bytes:
            raise MessageTooLarge(len(data), self.max_bytes)
        return msgspec.Raw(data)

    def encode(self, envelope: Envelope) -> bytes:
        """Encode an envelope.

        Raises:
            EncodeError: A field cannot be encoded.
            MessageTooLarge: The result exceeds the limit.
        """
        try:
            data = self._encoder.encode(envelope)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode envelope: {exc}") from exc
        if len(data) > self.max_bytes:
            raise MessageTooLarge(len(data), self.max_bytes)
        return data

    def decode(self, data: bytes | bytearray | memoryview) -> Envelope:
        """Decode an envelope, rejecting oversized or malformed input.

        Raises:
            MessageTooLarge: The input exceeds the limit (checked before parsing).
            DecodeError: The input is not a valid envelope.
        """
        if len(data) > self.max_bytes:
            raise MessageTooLarge(len(data), self.max_bytes)
        try:
            return self._env_decoder.decode(data)
        except DECODE_FAILURES as exc:
            raise DecodeError(f"malformed envelope: {exc}") from exc

    def decode_payload(self, envelope: Envelope, type_: type[T]) -> T:
        """Decode an envelope's payload into ``type_``.

        Raises:
            DecodeError: The payload does not match ``type_``.
        """
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = self._decoder(type_)
        try:
            return decoder.decode(envelope.payload)  # type: ignore[no-any-return]
        except DECODE_FAILURES as exc:
            raise DecodeError(f"payload of {envelope.type!r} is invalid: {exc}") from exc

    def payload_decoder(self, type_: type[T]) -> Callable[[Any], T] | None:
        """The function :meth:`decode_payload` decodes ``type_`` with, for hot loops.

        It raises one of :data:`DECODE_FAILURES`, not
        :class:`~swarm.errors.DecodeError`: on those, call :meth:`decode_payload`
        for the error to surface. None in a subclass overriding
        :meth:`decode_payload`, whose override must run.
        """
        if type(self).decode_payload is not Codec.decode_payload:
            return None
        return self._decoder(type_).decode

    def decode_any(self, envelope: Envelope) -> Any:
        """Decode an envelope's payload by its type name; see :meth:`decode_value`."""
        return self.decode_value(envelope.type, envelope.payload)

    def decode_value(self, type_name: str, data: bytes | msgspec.Raw | None) -> Any:
        """Decode a payload by its registered type name, or as builtins.

        A registered :class:`Message` type gives an instance of it; an unknown
        type name gives :class:`UnknownMessage`; no type name gives builtins.

        Raises:
            DecodeError: The data does not fit the named type.
        """
        if data is None:
            return None
        cls = lookup_message_type(type_name) if type_name else None
        try:
            if cls is not None:
                return self._decoder(cls).decode(data)
            value = self._decoder(Any).decode(data)
        except DECODE_FAILURES as exc:
            raise DecodeError(f"payload of {type_name!r} is invalid: {exc}") from exc
        return UnknownMessage(name=type_name, data=value) if type_name else value

    def _decoder(self, type_: Any) -> msgspec.msgpack.Decoder[Any]:
        decoder = self._decoders.get(type_)
        if decoder is None:
            decoder = self._decoders[type_] = msgspec.msgpack.Decoder(type_)
        return decoder

    @staticmethod
    def type_name(value: Any) -> str:
        """Wire type name of a payload value: its message type, or empty for builtins."""
        return value.type_name if isinstance(value, Message) else ""
