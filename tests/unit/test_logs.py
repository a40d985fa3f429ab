"""JSON log lines and the periodic summaries (pure: records and an injected clock)."""

import json
import logging

import pytest

from supernode.cli import main
from supernode.config import ServerSettings
from supernode.log_summary import CounterDeltas, Summary, log_due
from supernode.logs import JsonFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("supernode", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_documented_keys_and_the_extra_fields() -> None:
    line = json.loads(
        JsonFormatter({"worker": 2}).format(_record("swept %d", 3, counts={"expired": 3}))
    )
    assert line["level"] == "INFO" and line["logger"] == "supernode"
    assert line["msg"] == "swept 3"
    assert line["counts"] == {"expired": 3} and line["worker"] == 2
    assert line["ts"].endswith("+00:00") and "T" in line["ts"]
    assert "args" not in line and "lineno" not in line  # the record's own attributes stay out


def test_a_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = __import__("sys").exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]


@pytest.mark.parametrize(("field", "value"), [("log_format", "xml"), ("log_level", "loud")])
def test_unknown_log_settings_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"server.{field}"):
        ServerSettings(**{field: value})  # type: ignore[arg-type]


def test_a_summary_is_due_once_per_interval_and_only_with_news() -> None:
    now = [0.0]
    summary = Summary(lambda: now[0], interval=60)
    summary.add({"expired": 2, "purged": 0})
    assert summary.due() is None  # the interval has not passed
    now[0] = 61
    summary.add({"expired": 1})
    assert summary.due() == ({"expired": 3}, 61)
    now[0] = 200
    assert summary.due() is None  # nothing happened since
    summary.add({"purged": 0})
    assert summary.due() is None  # zeros are not news


def test_counter_deltas_are_what_grew_since_the_last_snapshot() -> None:
    deltas = CounterDeltas()
    assert deltas({"rate_limited": 5, "overload_shed": 0}) == {
        "rate_limited": 5,
        "overload_shed": 0,
    }
    assert deltas({"rate_limited": 7, "overload_shed": 1}) == {
        "rate_limited": 2,
        "overload_shed": 1,
    }


def test_log_due_writes_one_line_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    summary = Summary(lambda: now[0], interval=60)
    summary.add({"rate_limited": 4, "unauthenticated": 1})
    log = logging.getLogger("supernode.test")
    with caplog.at_level(logging.INFO, "supernode.test"):
        log_due(log, summary, "calls refused")
        now[0] = 60
        log_due(log, summary, "calls refused")
        log_due(log, summary, "calls refused")
    assert [r.getMessage() for r in caplog.records] == [
        "calls refused in the last 60 s: rate_limited 4, unauthenticated 1"
    ]
    assert caplog.records[0].counts == {"rate_limited": 4, "unauthenticated": 1}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--log-format", "xml", "server.log_format: 'xml', one of text, json"),
        ("--log-level", "loud", "server.log_level: 'loud', one of DEBUG"),
    ],
)
def test_serve_refuses_unknown_log_settings(
    flag: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--tls-plaintext", flag, value]) == 2
    assert said in capsys.readouterr().err
