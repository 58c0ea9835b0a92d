"""Property tests of the envelope codec: round trips, and clear rejection of bad input."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm import Codec, DecodeError, EncodeError, Envelope, Kind, Message, MessageTooLarge, new_id
from swarm.messages import UnknownMessage

codec = Codec(max_bytes=64 * 1024)


class Sample(Message):
    text: str
    count: int
    ratio: float
    tags: list[str]
    extra: dict[str, int]


samples = st.builds(
    Sample,
    text=st.text(max_size=200),
    count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ratio=st.floats(allow_nan=False),
    tags=st.lists(st.text(max_size=20), max_size=10),
    extra=st.dictionaries(st.text(max_size=10), st.integers(-1000, 1000), max_size=5),
)

envelopes = st.builds(
    Envelope,
    id=st.just(new_id()) | st.text(min_size=1, max_size=40),
    kind=st.sampled_from(list(Kind)),
    type=st.text(max_size=40),
    sender=st.text(max_size=40),
    recipient=st.text(max_size=60),
    priority=st.integers(-10, 10),
    attempt=st.integers(1, 100),
    max_attempts=st.integers(1, 100),
    deadline=st.none() | st.floats(0, 2e9),
    idempotency_key=st.none() | st.text(max_size=60),
    created_at=st.floats(0, 2e9),
    reply_to=st.none() | st.text(max_size=30),
    traceparent=st.none() | st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    epoch=st.integers(0, 2**40),
    signature=st.none() | st.binary(max_size=64),
)


@given(samples)
def test_payload_round_trip(sample: Sample) -> None:
    env = Envelope(
        id=new_id(), kind=Kind.TASK, type="Sample", sender="s", payload=codec.encode_payload(sample)
    )
    decoded = codec.decode(codec.encode(env))
    assert codec.decode_payload(decoded, Sample) == sample
    assert codec.decode_any(decoded) == sample


@given(envelopes)
def test_envelope_round_trip(env: Envelope) -> None:
    assert codec.decode(codec.encode(env)) == env


@given(st.binary(max_size=2048))
@settings(max_examples=300)
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        codec.decode(data)
    except DecodeError as exc:
        assert "malformed envelope" in str(exc)


@given(envelopes, st.integers(min_value=1, max_value=30))
def test_truncated_envelopes_are_rejected_clearly(env: Envelope, cut: int) -> None:
    data = codec.encode(env)
    with pytest.raises(DecodeError):
        codec.decode(data[: max(0, len(data) - cut)])


@given(st.integers(min_value=1, max_value=4096))
def test_oversized_input_is_rejected_before_parsing(extra: int) -> None:
    small = Codec(max_bytes=256)
    with pytest.raises(MessageTooLarge) as info:
        small.decode(b"\x00" * (256 + extra))
    assert info.value.size == 256 + extra and info.value.limit == 256


def test_oversized_payload_is_rejected_at_encode() -> None:
    small = Codec(max_bytes=256)
    with pytest.raises(MessageTooLarge, match="exceeds the limit of 256 bytes"):
        small.encode_payload(Sample(text="x" * 300, count=1, ratio=0.0, tags=[], extra={}))


def test_foreign_msgpack_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="malformed envelope"):
        codec.decode(msgspec.msgpack.encode({"hello": "world"}))
    with pytest.raises(DecodeError):
        codec.decode(msgspec.msgpack.encode([1, 2, 3]))


def test_unencodable_values_raise_encode_error() -> None:
    with pytest.raises(EncodeError, match="cannot encode"):
        codec.encode_payload({"x": object()})
    with pytest.raises(EncodeError):
        codec.encode_payload(math)


def test_payload_of_the_wrong_shape_is_a_decode_error() -> None:
    env = Envelope(
        id="1", kind=Kind.TASK, type="Sample", sender="s", payload=codec.encode_payload({"text": 1})
    )
    with pytest.raises(DecodeError, match="payload of 'Sample' is invalid"):
        codec.decode_payload(env, Sample)


def test_unknown_type_names_decode_to_unknown_message() -> None:
    value = codec.decode_value("nobody.knows", codec.encode_payload({"a": 1}))
    assert value == UnknownMessage(name="nobody.knows", data={"a": 1})
    assert codec.decode_value("", codec.encode_payload([1, 2])) == [1, 2]
    assert codec.decode_value("", None) is None


def test_codec_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Codec(max_bytes=0)


# -- hostile bytes: decoding raises the codec's own errors, nothing else ----------

_OWN_ERRORS = (DecodeError, MessageTooLarge)


def _nested_map(depth: int) -> bytes:
    return b"\x81\xa1a" * depth + b"\xc0"


def _nested_array(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def _every_decode(data: bytes) -> None:
    """Run every decode entry point of the codec on ``data``; each may only raise its own errors."""
    for call in (
        lambda: codec.decode(data),
        lambda: codec.decode_value("", data),
        lambda: codec.decode_value("Sample", data),
        lambda: codec.decode_value("NoSuchType", data),
        lambda: codec.decode_payload(_env_with(data), Sample),
        lambda: codec.decode_payload(_env_with(data), dict),
    ):
        try:
            call()
        except _OWN_ERRORS:
            pass


def _env_with(payload: bytes) -> Envelope:
    return Envelope(id="x", kind=Kind.TASK, type="Sample", sender="s", payload=msgspec.Raw(payload))


@pytest.mark.parametrize("depth", [1_000, 10_000, 60_000])
def test_deep_nesting_is_a_decode_error(depth: int) -> None:
    # The repro: a 3 KB map nested 1 000 deep raised RecursionError.
    big = Codec(max_bytes=1 << 20)
    for data in (_nested_map(depth), _nested_array(depth)):
        with pytest.raises(DecodeError):
            big.decode(data)
        with pytest.raises(DecodeError):
            big.decode_value("", data)
        with pytest.raises(DecodeError):
            big.decode_payload(_env_with(data), Sample)
    _every_decode(_nested_map(1_000))


def test_deep_nesting_inside_an_envelope_payload_is_a_decode_error() -> None:
    env = Envelope(
        id="1", kind=Kind.TASK, type="Sample", sender="s", payload=msgspec.Raw(_nested_map(3000))
    )
    data = codec.encode(env)
    try:
        decoded = codec.decode(data)
    except DecodeError:
        return
    with pytest.raises(DecodeError):
        codec.decode_any(decoded)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdd\xff\xff\xff\xff",  # array of 4 G elements, no body
        b"\xdf\xff\xff\xff\xff",  # map of 4 G pairs
        b"\xdb\xff\xff\xff\xff",  # str of 4 GB
        b"\xc6\xff\xff\xff\xff",  # bin of 4 GB
        b"\xc9\xff\xff\xff\xff\x01",  # ext of 4 GB
        b"\x85\xa2id\x01\xa4kind\xc3\xa4type\x92\xa6sender\xc0\xa7payload\x00",  # wrong types
        b"",
        b"\xc1",  # never used
    ],
)
def test_huge_lengths_and_wrong_types_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(data)
    _every_decode(data)


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def _hostile(draw: st.DrawFn) -> bytes:
    """Bytes from outside: valid msgpack, nested deep, cut, spliced, or random."""
    how = draw(st.sampled_from(["value", "nested", "cut", "splice", "random"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    base = msgspec.msgpack.encode(draw(_msgpack_values))
    if how == "nested":
        depth = draw(st.integers(1, 5_000))
        head = draw(st.sampled_from([b"\x81\xa1a", b"\x91", b"\x82\xa1a\x01\xa1b"]))
        return head * depth + base
    if how == "cut":
        return base[: draw(st.integers(0, max(0, len(base) - 1)))]
    if how == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.binary(min_size=1, max_size=16)) + base[at:]
    return base


@given(_hostile())
@settings(max_examples=400, deadline=None)
def test_fuzz_decoding_raises_only_codec_errors(data: bytes) -> None:
    _every_decode(data)
