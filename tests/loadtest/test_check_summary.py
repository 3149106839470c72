"""The summary checker: a breached threshold anywhere fails the run, and says which."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from loadtest.check_summary import check


def write(tmp_path: Path, metrics: dict[str, Any]) -> Path:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"root_group": {}, "metrics": metrics}))
    return path


def run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    status = check([path], out)
    return status, out.getvalue()


def test_all_thresholds_held_passes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "http_req_duration": {"p(95)": 12.5, "thresholds": {"p(95)<200": False}},
            "graphql_errors": {
                "passes": 0,
                "fails": 10,
                "value": 0,
                "thresholds": {"rate<0.01": False},
            },
            "iterations": {"count": 10, "rate": 2.0},
        },
    )
    status, out = run(path)
    assert status == 0
    assert "2 thresholds, 0 breached" in out
    assert "p(95)=12.5" in out


def test_every_breach_is_listed_and_fails(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "http_req_duration{operation:Recall}": {
                "p(99)": 80.0,
                "thresholds": {"p(99)<50": True, "p(95)<200": False},
            },
            "graphql_errors": {"value": 0.2, "thresholds": {"rate<0.01": True}},
            "vectors_upserted": {"count": 10, "rate": 5.0, "thresholds": {"rate>=1000": True}},
        },
    )
    status, out = run(path)
    assert status == 1
    assert "3 breached" in out
    assert "BREACHED http_req_duration{operation:Recall}: p(99)<50 (observed p(99)=80)" in out
    assert "BREACHED graphql_errors: rate<0.01 (observed rate=0.2)" in out
    assert "BREACHED vectors_upserted: rate>=1000 (observed rate=5)" in out


def test_a_summary_without_thresholds_gates_nothing_and_fails(tmp_path: Path) -> None:
    status, out = run(write(tmp_path, {"iterations": {"count": 1, "rate": 1.0}}))
    assert status == 2
    assert "no thresholds" in out


def test_an_unreadable_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("not json")
    assert run(path)[0] == 2
    assert run(tmp_path / "missing.json")[0] == 2
