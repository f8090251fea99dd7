"""W3C Trace Context and Baggage propagation: round trips, carriers, and strict rejection of malformed headers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from victor_observability import ALWAYS_OFF, DistributedTracer, SpanContext

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
GOOD = f"00-{TRACE}-{SPAN}-01"

tracer = DistributedTracer("test.propagation")


def extract(headers: object) -> SpanContext | None:
    return tracer.extract_context(headers)


class CaseInsensitiveHeaders(Mapping[str, str]):
    """A read-only mapping like a web framework's request headers (not a dict)."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = {k.lower(): v for k, v in items.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# --- round trips ---------------------------------------------------------------------------------------------------


def test_inject_then_extract_round_trips_across_carriers() -> None:
    with tracer.start_span("client") as span:
        span.set_baggage_item("user", "alice smith")
        as_dict = tracer.inject_context({})
        as_list = tracer.inject_context([])
    assert as_dict["traceparent"] == f"00-{span.trace_id}-{span.span_id}-03"  # sampled, random trace id
    assert as_dict["baggage"] == "user=alice%20smith"
    assert as_list[0] == (b"traceparent", as_dict["traceparent"].encode())
    for carrier in (
        as_dict,
        as_list,
        [(k.upper(), v) for k, v in as_dict.items()],
        {k.title(): v for k, v in as_dict.items()},
        CaseInsensitiveHeaders({k.upper(): v for k, v in as_dict.items()}),
        httpx.Headers(as_dict),
        [(k.encode(), v.encode()) for k, v in as_dict.items()],
    ):
        ctx = extract(carrier)
        assert ctx is not None, carrier
        assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.is_remote) == (span.trace_id, span.span_id, True, True)
        assert ctx.baggage == {"user": "alice smith"}
    server = DistributedTracer("server")
    with server.start_span("handle", parent=extract(as_list)) as handled:
        downstream = server.inject_context({})
    assert handled.trace_id == span.trace_id and handled.parent_span_id == span.span_id
    assert downstream["baggage"] == "user=alice%20smith", "baggage passes on"


def test_tracestate_is_validated_and_passed_on() -> None:
    incoming = {"traceparent": GOOD, "tracestate": "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"}
    with tracer.start_span("server", parent=extract(incoming)):
        out = tracer.inject_context({})
    assert out["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    # Several tracestate headers are one list.
    ctx = extract([("traceparent", GOOD), ("tracestate", "a=1"), ("tracestate", "b=2,tenant@vendor=x")])
    assert ctx is not None and ctx.tracestate == "a=1,b=2,tenant@vendor=x"


def test_no_current_span_leaves_headers_alone_and_unsampled_propagates_flag_off() -> None:
    assert tracer.inject_context({"x": "1"}) == {"x": "1"}
    off = DistributedTracer("off", sampler=ALWAYS_OFF)
    with off.start_span("root") as root:
        headers = off.inject_context({})
    assert headers == {"traceparent": f"00-{root.trace_id}-{root.span_id}-02"}  # random, not sampled
    ctx = extract(headers)
    assert ctx is not None and not ctx.sampled and ctx.trace_flags == 2


# --- malformed traceparent -----------------------------------------------------------------------------------------

BAD_TRACEPARENTS = [
    "",
    " ",
    "00",
    GOOD[:-1],  # one short
    GOOD + "0",  # version 00 must be exactly 55
    GOOD + "-",  # version 00 must be exactly 55
    GOOD.upper(),
    f"00-{TRACE.upper()}-{SPAN}-01",
    f"00-{TRACE}-{SPAN.upper()}-01",
    f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
    f"0g-{TRACE}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
    f"00-{TRACE}-{SPAN}-0g",  # bad flags
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE}-{SPAN}-001",
    f"00-{TRACE}-{SPAN}-F1",
    f"00_{TRACE}-{SPAN}-01",
    f"00-{TRACE}_{SPAN}-01",
    f"00-{TRACE}-{SPAN}_01",
    f"00-{TRACE[:-1]}-{SPAN}0-01",
    f"00-{TRACE}0-{SPAN[:-1]}-01",
    f"00-{TRACE}-{SPAN}-01\x00",
    f"00-{TRACE}-{SPAN}-\u00e901",
    f"cc-{TRACE}-{SPAN}-01x",  # future version: the 56th char must be '-'
    f"cc-{TRACE}-{SPAN}",  # shorter than 55
    f"-00-{TRACE}-{SPAN}-01",
]


@pytest.mark.parametrize("value", BAD_TRACEPARENTS)
def test_malformed_traceparent_is_rejected_without_raising(value: str) -> None:
    assert extract({"traceparent": value}) is None
    assert extract([(b"traceparent", value.encode())]) is None


def test_future_versions_are_read_as_the_spec_says() -> None:
    ctx = extract({"traceparent": f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"})
    assert ctx is not None and ctx.trace_id == TRACE and ctx.sampled
    ctx = extract({"traceparent": f"01-{TRACE}-{SPAN}-09"})
    assert ctx is not None and ctx.sampled and ctx.trace_flags == 1, "unknown flags are not passed on"
    with tracer.start_span("child", parent=ctx):
        assert tracer.inject_context({})["traceparent"].startswith("00-"), "we propagate the version we speak"


def test_whitespace_repeats_missing_and_odd_carriers() -> None:
    assert extract({"traceparent": f"  {GOOD}\t"}) is not None
    assert extract([("traceparent", GOOD), ("traceparent", GOOD)]) is None, "repeated traceparent restarts"
    for carrier in ({}, [], {"tracestate": "a=1"}, {"traceparent": 5}, None, 5, "traceparent", [("a",)], [1, 2]):
        assert extract(carrier) is None


# --- malformed tracestate ------------------------------------------------------------------------------------------

BAD_TRACESTATES = [
    "Congo=t61",  # uppercase key
    "congo",  # no '='
    "congo=",  # empty value
    "=x",
    "congo=a=b",  # '=' in value
    "@b=x",  # a key starts with a letter or a digit
    "k=\x7f",
    "k=a,b=c\x01",
    "k=" + "x" * 257,  # value too long
    "k" * 257 + "=x",  # key too long
    ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
    "k=v," * 6000,  # far over any legal length
]


@pytest.mark.parametrize("value", BAD_TRACESTATES)
def test_malformed_tracestate_is_discarded_but_the_trace_continues(value: str) -> None:
    ctx = extract({"traceparent": GOOD, "tracestate": value})
    assert ctx is not None and ctx.trace_id == TRACE
    assert ctx.tracestate is None
    with tracer.start_span("child", parent=ctx):
        assert "tracestate" not in tracer.inject_context({})


def test_tracestate_limits_that_are_legal() -> None:
    thirty_two = ",".join(f"k{i}=v" for i in range(32))
    ctx = extract({"traceparent": GOOD, "tracestate": thirty_two})
    assert ctx is not None and ctx.tracestate == thirty_two
    long_member = "big=" + "x" * 256
    ctx = extract({"traceparent": GOOD, "tracestate": f"a=1,{long_member},b=2"})
    assert ctx is not None
    with tracer.start_span("child", parent=ctx):
        out = tracer.inject_context({})
    assert out["tracestate"] == "a=1,big=" + "x" * 256 + ",b=2"
    many = ",".join(f"k{i:02}=" + "v" * 40 for i in range(20))
    with tracer.start_span("child", parent=extract({"traceparent": GOOD, "tracestate": many})):
        out = tracer.inject_context({})
    assert len(out["tracestate"]) <= 512 and out["tracestate"].startswith("k00="), "truncated from the end"


def test_baggage_parsing_is_lenient_per_member() -> None:
    ctx = extract({"traceparent": GOOD, "baggage": "a=1, b = two%20words ;prop=x, bad key=3, c=%E2%9C%93, d=%zz"})
    assert ctx is not None and ctx.baggage == {"a": "1", "b": "two words", "c": "\u2713"}
    assert extract({"traceparent": GOOD, "baggage": "a=" + "x" * 9000}).baggage == {}  # type: ignore[union-attr]


def test_span_context_constructor_validates() -> None:
    assert SpanContext(TRACE, SPAN).traceparent == GOOD
    for bad_trace, bad_span in ((TRACE.upper(), SPAN), ("0" * 32, SPAN), (TRACE, "0" * 16), (TRACE, "xyz")):
        with pytest.raises(ValueError, match="_id"):
            SpanContext(bad_trace, bad_span)
    with pytest.raises(ValueError, match="tracestate"):
        SpanContext(TRACE, SPAN, tracestate="A=1")


# --- properties ----------------------------------------------------------------------------------------------------

hex_lower = st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_string_never_raises(value: str) -> None:
    ctx = extract({"traceparent": value, "tracestate": value, "baggage": value})
    if ctx is not None:
        assert value.strip(" \t")[2] == "-"


@settings(max_examples=500, deadline=None)
@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
    st.integers(0, 254),
    st.text(alphabet="0123456789abcdef-", max_size=20),
)
def test_valid_headers_parse_and_round_trip(trace: int, span: int, flags: int, version: int, tail: str) -> None:
    header = f"{version:02x}-{trace:032x}-{span:016x}-{flags:02x}"
    if version != 0 and tail:
        header += "-" + tail
    ctx = extract({"traceparent": header})
    assert ctx is not None
    assert ctx.trace_id_int == trace and ctx.span_id_int == span and ctx.sampled == bool(flags & 1)
    assert extract({"traceparent": ctx.traceparent}) == ctx
    upper = header[:55].upper() + header[55:]
    assert extract({"traceparent": upper}) is None or upper == header, "uppercase hex is refused"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 54), st.characters())
def test_single_character_corruption_is_rejected_or_equivalent(position: int, char: str) -> None:
    corrupted = GOOD[:position] + char + GOOD[position + 1 :]
    ctx = extract({"traceparent": corrupted})
    if ctx is not None and corrupted != GOOD:
        # Only a change that is itself a valid lowercase hex digit in an id/flags/version field survives.
        assert char in "0123456789abcdef" and GOOD[position] != "-"
