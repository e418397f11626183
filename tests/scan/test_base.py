"""The shared scanner machinery: one recorded call, the status table, the streaming bridge, options."""

from __future__ import annotations

import threading
import time
from typing import Any

import click
import pytest
from click.testing import CliRunner

from auditor.model import Unknown, UnknownCode
from auditor.scan.base import CallCounter
from auditor.scan.calls import (
    BODY_LIMIT,
    HTTP_STATUS,
    CallRecorder,
    RawAnswer,
    RawShape,
    RetrySettings,
    TransportFailure,
    status_code,
    status_unknown,
    transport_unknown,
)
from auditor.scan.command import common_scan_options, retry_settings
from auditor.scan.threads import stream

SHAPE = RawShape(size="bytes", body="body", truncated="truncated", status="status")


class Broken(Exception):
    """A malformed answer carrying its raw bytes."""

    def __init__(self, body: bytes) -> None:
        super().__init__("malformed answer")
        self.raw = RawAnswer(200, body)


def _recorder(counter: CallCounter) -> CallRecorder:
    def classify(exc: Exception, call: str) -> Unknown:
        return Unknown(code=UnknownCode.ERROR, reason=f"{exc} ({call})")

    def evidence(exc: Exception, call: str) -> tuple[Any, str]:
        return (exc.raw.excerpt(SHAPE) if isinstance(exc, Broken) else None), str(exc)

    return CallRecorder(counter, classify, evidence, absent=lambda exc: isinstance(exc, KeyError))


def test_call_answers_value_and_records_evidence() -> None:
    counter = CallCounter()
    answer = _recorder(counter).call("svc:Get", ["tags"], {"name": "b"}, lambda: {"ok": 1})
    assert answer.ok and answer.value == {"ok": 1} and answer.unknown is None
    assert answer.evidence.call == "svc:Get" and answer.evidence.response == {"ok": 1}
    assert answer.evidence.attributes == ["tags"] and answer.evidence.request == {"name": "b"}
    assert answer.seconds >= 0 and counter.snapshot() == {"svc:Get": 1}


def test_call_never_raises_and_bounds_raw_bytes() -> None:
    counter = CallCounter()
    body = b"x" * (BODY_LIMIT * 3)

    def perform() -> None:
        raise Broken(body)

    answer = _recorder(counter).call("svc:Get", ["tags"], None, perform)
    assert answer.value is None and isinstance(answer.error, Broken)
    assert answer.unknown == Unknown(code=UnknownCode.ERROR, reason="malformed answer (svc:Get)")
    response = answer.evidence.response
    assert response == {"status": 200, "bytes": len(body), "body": "x" * BODY_LIMIT, "truncated": True}
    assert answer.evidence.error == "malformed answer" and counter.total == 1


def test_call_survives_a_failing_classifier_and_marks_absent() -> None:
    def classify(exc: Exception, call: str) -> Unknown:
        raise RuntimeError("bug")

    recorder = CallRecorder(CallCounter(), classify, absent=lambda exc: isinstance(exc, KeyError))

    def missing() -> None:
        raise KeyError("none")

    def failing() -> None:
        raise ValueError("bad")

    assert recorder.call("a", [], None, missing).absent
    answer = recorder.call("a", [], None, failing)
    assert answer.unknown is not None and answer.unknown.code is UnknownCode.ERROR
    assert answer.evidence.error == "ValueError: bad"


def test_uncounted_values_are_not_calls() -> None:
    counter = CallCounter()
    _recorder(counter).call("a", [], None, lambda: None, counted=lambda value: value is not None)
    assert counter.total == 0


def test_raw_answer_without_body() -> None:
    assert RawAnswer(None, None).excerpt(SHAPE) == {"status": None, "bytes": None, "body": None}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, UnknownCode.ACCESS_DENIED),
        (403, UnknownCode.ACCESS_DENIED),
        (408, UnknownCode.TIMEOUT),
        (429, UnknownCode.THROTTLED),
        (500, UnknownCode.ERROR),
        (503, UnknownCode.ERROR),
        (504, UnknownCode.TIMEOUT),
        (None, UnknownCode.ERROR),
    ],
)
def test_status_table(status: int | None, code: UnknownCode) -> None:
    assert status_code(status) is code


def test_source_overrides_and_wording() -> None:
    assert status_code(503, {503: UnknownCode.THROTTLED}) is UnknownCode.THROTTLED
    unknown = status_unknown(429, "svc:List")
    assert unknown.code is UnknownCode.THROTTLED and unknown.reason.startswith("HTTP 429: throttled")
    assert all(meaning.wording for meaning in HTTP_STATUS.values())
    assert transport_unknown(TransportFailure.TIMEOUT, "x").code is UnknownCode.TIMEOUT
    assert transport_unknown(TransportFailure.RESET, "x").code is UnknownCode.ERROR
    assert transport_unknown(TransportFailure.TLS, "x").code is UnknownCode.ERROR
    assert transport_unknown(TransportFailure.NO_CREDENTIALS, "x").code is UnknownCode.NO_CREDENTIALS


def test_bridge_yields_everything_then_ends() -> None:
    def drive(emit: Any, stop: threading.Event) -> None:
        for n in range(50):
            emit(n)

    closed: list[bool] = []
    assert list(stream(drive, capacity=4, name="t", close=lambda: closed.append(True))) == list(range(50))
    assert closed == [True]


def test_bridge_ends_when_a_worker_raises() -> None:
    def drive(emit: Any, stop: threading.Event) -> None:
        emit(1)
        raise RuntimeError("worker failed")

    got: list[int] = []
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="worker failed"):
        for item in stream(drive, capacity=4, name="t"):
            got.append(item)
    assert got == [1] and time.monotonic() - started < 5


def test_bridge_ends_when_the_consumer_stops_early() -> None:
    stopped = threading.Event()

    def drive(emit: Any, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():  # an endless producer, blocked on a full queue
            emit(n)
            n += 1
        stopped.set()

    items = stream(drive, capacity=2, name="t")
    assert next(items) == 0
    started = time.monotonic()
    items.close()  # type: ignore[attr-defined]
    assert stopped.is_set() and time.monotonic() - started < 5


@click.command()
@common_scan_options
def _probe(retry: RetrySettings, **_: Any) -> None:
    click.echo(repr(retry))


def _settings(*args: str) -> str:
    result = CliRunner().invoke(_probe, ["--output", "x.jsonl", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--max-retries", "3"], ["--max-attempts", "4"]),
        (["--read-timeout", "7"], ["--timeout", "7"]),
    ],
)
def test_old_option_names_set_the_same_setting(old: list[str], new: list[str]) -> None:
    assert _settings(*old) == _settings(*new)


def test_old_and_new_name_together_is_a_usage_error() -> None:
    result = CliRunner().invoke(_probe, ["--output", "x", "--max-retries", "1", "--max-attempts", "2"])
    assert result.exit_code == 2 and "not both" in result.output


def test_config_option_names_map_like_flags() -> None:
    assert retry_settings({"max_retries": 2, "retry_deadline": 5.0}) == RetrySettings(
        max_attempts=3, retry_deadline=5.0
    )


def test_unused_setting_is_refused() -> None:
    from auditor.errors import InputError

    with pytest.raises(InputError, match="--retry-deadline"):
        RetrySettings(retry_deadline=1.0).refuse_unsupported("aws", frozenset({"max_attempts"}))
    merged = RetrySettings(timeout=3.0).merged(timeout=30.0, max_attempts=5)
    assert (merged.timeout, merged.max_attempts) == (3.0, 5)


@pytest.mark.parametrize(
    ("source", "section", "given", "refused"),
    [
        ("aws", {}, {"retry-deadline": 5}, "--retry-deadline"),
        ("aws", {}, {"retry-backoff": 1}, "--retry-backoff"),
        ("gcp", {"projects": ["p"]}, {"max-attempts": 3}, "--max-attempts"),
        ("gcp", {"projects": ["p"]}, {"max-retries": 2}, "--max-attempts"),
        ("gcp", {"projects": ["p"]}, {"retry-after-max": 3}, "--retry-after-max"),
        ("azure", {"subscriptions": ["s"]}, {"retry-deadline": 5}, "--retry-deadline"),
    ],
)
def test_config_check_refuses_a_setting_the_scanner_does_not_use(
    source: str, section: dict[str, Any], given: dict[str, Any], refused: str
) -> None:
    from auditor.scan.calls import unused_setting
    from auditor.sources import sources

    model = sources()[source].section
    with pytest.raises(ValueError) as caught:
        model.model_validate({**section, "options": given}).check()
    # the words the scanner refuses the flag with (RetrySettings.refuse_unsupported)
    assert str(caught.value).endswith(unused_setting(source, refused[2:].replace("-", "_")))
    assert refused in str(caught.value)


@pytest.mark.parametrize(
    ("source", "section", "given"),
    [
        ("aws", {}, {"max-attempts": 3, "timeout": 2, "connect-timeout": 1, "read-timeout": 2}),
        ("gcp", {"projects": ["p"]}, {"retry-deadline": 5, "retry-backoff": 1, "timeout": 2}),
        ("azure", {"subscriptions": ["s"]}, {"max-retries": 2, "retry-after-max": 3, "retry-backoff": 1}),
    ],
)
def test_config_check_accepts_the_settings_the_scanner_uses(
    source: str, section: dict[str, Any], given: dict[str, Any]
) -> None:
    from auditor.sources import sources

    sources()[source].section.model_validate({**section, "options": given}).check()
