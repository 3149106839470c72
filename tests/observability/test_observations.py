"""Operation metrics and request log lines recorded in batches (graph/telemetry/observations.py):
a scrape counts every operation answered before it, a line keeps its request's time and
id, nothing waits past LOG_FLUSH_SECONDS or is lost at shutdown."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from graph.telemetry.observations import MAX_OPERATION_NAMES, OperationNames
from tests.conftest import make_settings

WAIT_SECONDS = 10


def operations(name: str, outcome: str = "success") -> float:
    labels = {"operation_type": "query", "operation_name": name, "outcome": outcome}
    return REGISTRY.get_sample_value("graphql_operations_total", labels) or 0.0


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "graphql request"]


def serving(tmp_path: Path, **settings: object) -> TestClient:
    """The app with these settings, to be entered (its lifespan runs the recorder)."""
    return TestClient(create_app(make_settings(tmp_path, **settings)))


def probe(client: TestClient, name: str, request_id: str) -> None:
    response = client.post(
        "/graphql",
        json={"query": f"query {name} {{ health {{ status }} }}"},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 200 and "errors" not in response.json()


def test_a_scrape_counts_every_operation_answered_before_it(tmp_path: Path) -> None:
    with serving(tmp_path, log_flush_seconds=60) as client:
        before = operations("ScrapeProbe")
        for n in range(3):
            probe(client, "ScrapeProbe", f"scrape-{n}")
        assert operations("ScrapeProbe") == before  # waiting for its batch
        text = client.get("/metrics").text
        assert operations("ScrapeProbe") == before + 3
        assert 'operation_name="ScrapeProbe"' in text


def test_a_line_keeps_the_time_and_id_of_its_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(tmp_path, log_flush_seconds=60) as client, caplog.at_level(logging.INFO):
        answered = time.time()
        probe(client, "LineProbe", "line-1")
        time.sleep(0.3)
        assert request_lines(caplog) == []
        recorded = time.time()
        client.app.state.record_operations()  # type: ignore[attr-defined]
        (line,) = request_lines(caplog)
    assert line.request_id == "line-1"  # type: ignore[attr-defined]
    assert line.operation_name == "LineProbe"  # type: ignore[attr-defined]
    assert answered <= line.created < recorded
    assert line.elapsed_ms >= 0  # type: ignore[attr-defined]


def test_operations_are_recorded_within_the_interval_without_a_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(tmp_path, log_flush_seconds=0.1) as client, caplog.at_level(logging.INFO):
        before = operations("TimedProbe")
        probe(client, "TimedProbe", "timed-1")
        started = time.monotonic()
        # The recorder counts, then logs, in its own thread: wait for both.
        while operations("TimedProbe") == before or not request_lines(caplog):
            assert time.monotonic() - started < WAIT_SECONDS
            time.sleep(0.02)
        assert operations("TimedProbe") == before + 1
        assert [r.request_id for r in request_lines(caplog)] == ["timed-1"]  # type: ignore[attr-defined]


def test_what_waits_is_recorded_at_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = operations("ShutdownProbe")
    with caplog.at_level(logging.INFO):
        with serving(tmp_path, log_flush_seconds=60) as client:
            probe(client, "ShutdownProbe", "shutdown-1")
        assert operations("ShutdownProbe") == before + 1
        assert [r.request_id for r in request_lines(caplog)] == ["shutdown-1"]  # type: ignore[attr-defined]


def test_flush_seconds_0_records_each_operation_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(tmp_path, log_flush_seconds=0) as client, caplog.at_level(logging.INFO):
        before = operations("EachProbe")
        probe(client, "EachProbe", "each-1")
        assert operations("EachProbe") == before + 1
        assert [r.request_id for r in request_lines(caplog)] == ["each-1"]  # type: ignore[attr-defined]


def test_with_operation_metrics_and_request_lines_off_nothing_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        serving(tmp_path, log_flush_seconds=60, metrics_operations=False) as client,
        caplog.at_level(logging.WARNING),
    ):
        before = operations("OffProbe")
        probe(client, "OffProbe", "off-1")
        client.get("/metrics")
        assert operations("OffProbe") == before
        assert request_lines(caplog) == []


def test_operation_names_fold_into_one_label_past_the_bound() -> None:
    names = OperationNames()
    assert names.label(None) == "anonymous"
    assert names.label("bad name!") == "other"
    kept = [names.label(f"Op{n}") for n in range(MAX_OPERATION_NAMES)]
    assert kept == [f"Op{n}" for n in range(MAX_OPERATION_NAMES)]
    assert names.label("OneTooMany") == "other"
    assert names.label("Op0") == "Op0"
