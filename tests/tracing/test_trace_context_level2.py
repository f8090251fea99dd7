"""W3C Trace Context level 2 (header casing, duplicate and `@` tracestate keys, the random flag) and the
OpenTelemetry defaults: ParentBased(ALWAYS_ON) and the OTEL_* environment variables."""

from __future__ import annotations

from typing import Any

import pytest
from victor_observability import ALWAYS_ON, DistributedTracer

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def parent(flags: str = "01") -> str:
    return f"00-{TRACE}-{SPAN}-{flags}"


tracer = DistributedTracer("level2")


def child_traceparent(t: DistributedTracer, headers: Any) -> str:
    """The traceparent a child of the extracted context sends on."""
    with t.start_span("child", parent=t.extract_context(headers)):
        return str(t.inject_context({})["traceparent"])


# --- header names are case-insensitive, for both headers and every carrier --------------------------------------------

CASINGS = ["tracestate", "TraceState", "TrAcEsTaTe", "TRACESTATE"]


@pytest.mark.parametrize("ts_name", CASINGS)
@pytest.mark.parametrize("tp_name", ["traceparent", "TraceParent", "TRACEPARENT"])
@pytest.mark.parametrize("form", ["dict", "pairs", "asgi"])
def test_both_header_names_match_in_any_case(form: str, tp_name: str, ts_name: str) -> None:
    items = [("host", "example.com"), (tp_name, parent()), ("user-agent", "t"), (ts_name, "congo=t61rcWkgMzE")]
    carrier: Any
    if form == "dict":
        carrier = dict(items)
    elif form == "pairs":
        carrier = items
    else:  # an ASGI scope's headers: a list of (bytes, bytes)
        carrier = [(k.encode(), v.encode()) for k, v in items]
    ctx = tracer.extract_context(carrier)
    assert ctx is not None and ctx.trace_id == TRACE
    assert ctx.tracestate == "congo=t61rcWkgMzE"


def test_lowercase_traceparent_with_title_case_tracestate_and_baggage_in_a_dict() -> None:
    # The dict fast path finds the lowercase traceparent; the others must still be found in any case.
    headers = {"traceparent": parent(), "TraceState": "rojo=00f067aa0ba902b7", "Baggage": "user=alice"}
    ctx = tracer.extract_context(headers)
    assert ctx is not None and ctx.tracestate == "rojo=00f067aa0ba902b7" and ctx.baggage == {"user": "alice"}


def test_repeated_traceparent_in_two_casings_restarts_the_trace() -> None:
    assert tracer.extract_context({"traceparent": parent(), "TraceParent": parent()}) is None


# --- tracestate: duplicate keys and the level 2 key grammar -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "kept"),
    [("foo=1,foo=1", "foo=1"), ("foo=1,bar=2,foo=3", "foo=1,bar=2"), ("foo=1, foo=2 ,baz=3", "foo=1,baz=3")],
)
def test_duplicate_keys_keep_the_list_with_the_first_of_each(header: str, kept: str) -> None:
    ctx = tracer.extract_context({"traceparent": parent(), "tracestate": header})
    assert ctx is not None and ctx.tracestate == kept
    with tracer.start_span("child", parent=ctx):
        assert tracer.inject_context({})["tracestate"] == kept


LEVEL_2_KEYS = [
    "foo@",
    "foo@@bar",
    "foo@bar@baz",
    "t@vvvv",
    "t@" + "v" * 15,
    "t" * 242 + "@v",
    "t" * 254 + "@v",  # 256 characters
    "1abc",
]


@pytest.mark.parametrize("key", LEVEL_2_KEYS)
def test_at_sign_keys_of_the_level_2_grammar_are_accepted(key: str) -> None:
    header = f"{key}=1,other=2"
    ctx = tracer.extract_context({"traceparent": parent(), "tracestate": header})
    assert ctx is not None and ctx.tracestate == header


@pytest.mark.parametrize("key", ["@foo", "t" * 255 + "@v", "z" * 257, "Foo@bar", "foo bar"])
def test_keys_outside_the_grammar_still_drop_the_header(key: str) -> None:
    ctx = tracer.extract_context({"traceparent": parent(), "tracestate": f"{key}=1"})
    assert ctx is not None and ctx.trace_id == TRACE and ctx.tracestate is None


# --- the random flag (trace-flags 0x02) -------------------------------------------------------------------------------


def test_new_traces_carry_the_random_flag() -> None:
    with tracer.start_span("root") as root:
        assert tracer.inject_context({})["traceparent"] == f"00-{root.trace_id}-{root.span_id}-03"
        assert root.context.trace_flags == 3


@pytest.mark.parametrize(
    ("incoming", "outgoing"), [("03", "03"), ("01", "01"), ("02", "02"), ("00", "00"), ("ff", "03")]
)
def test_the_random_flag_propagates_from_the_parent(incoming: str, outgoing: str) -> None:
    sent = child_traceparent(tracer, {"traceparent": parent(incoming)})
    assert sent.startswith(f"00-{TRACE}-") and sent.endswith("-" + outgoing)
    ctx = tracer.extract_context({"traceparent": parent(incoming)})
    assert ctx is not None and ctx.trace_flags == int(outgoing, 16)


# --- sampling: ParentBased(ALWAYS_ON) by default ----------------------------------------------------------------------


def test_a_remote_unsampled_parent_gives_an_unsampled_child_by_default() -> None:
    t = DistributedTracer("default-sampler")
    assert t.sampler.description == "ParentBased(root=AlwaysOn)"
    with t.start_span("child", parent=t.extract_context({"traceparent": parent("00")})) as span:
        assert not span.context.sampled
        assert t.inject_context({})["traceparent"].endswith("-00")
    with t.start_span("child", parent=t.extract_context({"traceparent": parent("01")})) as span:
        assert span.context.sampled
    with t.start_span("root") as span:
        assert span.context.sampled


def test_an_explicit_sampler_wins_over_the_default() -> None:
    t = DistributedTracer("always", sampler=ALWAYS_ON)
    with t.start_span("child", parent=t.extract_context({"traceparent": parent("00")})) as span:
        assert span.context.sampled


# --- the OpenTelemetry environment variables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arg", "description"),
    [
        ("", "", "ParentBased(root=AlwaysOn)"),
        ("parentbased_always_on", "", "ParentBased(root=AlwaysOn)"),
        ("always_on", "", "AlwaysOn"),
        ("ALWAYS_OFF", "", "AlwaysOff"),
        ("traceidratio", "0.25", "TraceIdRatio(0.25)"),
        ("traceidratio", "", "TraceIdRatio(1)"),
        ("traceidratio", "1.5", "TraceIdRatio(1)"),  # out of range: warned, default 1.0
        ("traceidratio", "half", "TraceIdRatio(1)"),
        ("parentbased_always_off", "", "ParentBased(root=AlwaysOff)"),
        ("parentbased_traceidratio", "0.1", "ParentBased(root=TraceIdRatio(0.1))"),
        ("jaeger_remote", "", "ParentBased(root=AlwaysOn)"),  # unsupported: warned, default
    ],
)
def test_otel_traces_sampler(monkeypatch: pytest.MonkeyPatch, name: str, arg: str, description: str) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert DistributedTracer("env").sampler.description == description


def test_otel_traces_sampler_does_not_override_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert DistributedTracer("code", sampler=ALWAYS_ON).sampler.description == "AlwaysOn"


def test_otel_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert DistributedTracer().service_name == "checkout"
    assert DistributedTracer("given").service_name == "given"  # code wins, as in the SDKs
    monkeypatch.setenv("OTEL_SERVICE_NAME", "")  # empty is unset
    assert DistributedTracer().service_name == "victor"


@pytest.mark.parametrize(("value", "disabled"), [("true", True), ("TRUE", True), ("false", False), ("", False)])
def test_otel_sdk_disabled(monkeypatch: pytest.MonkeyPatch, value: str, disabled: bool) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    t = DistributedTracer("sdk", sampler=ALWAYS_ON)
    with t.start_span("root") as span:
        assert span.context.sampled is not disabled
        headers = t.inject_context({})
    assert "traceparent" in headers  # disabled records nothing, but contexts still propagate
    assert len(t.finished_spans()) == (0 if disabled else 1)
