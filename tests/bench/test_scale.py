"""bench.scale at a tiny size: it runs to its report, and it counts the index caught up
with the fresh shard's last points, fewer than the threshold, still unindexed (2,500
points in chunks of 1,000 or more usually leave some)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import scale


def test_scale_runs_to_its_report_with_points_left_under_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scale.json"
    argv = [
        "--points", "2500", "--dimension", "8", "--batch", "250",
        "--threshold", "1000", "--backlog", "2000", "--merge-max-points", "3000",
        "--catch-up-wait", "300", "--data-dir", str(tmp_path), "--json", str(out),
    ]  # fmt: skip
    assert scale.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["ingest"]["written"] == 2500
    assert results["ingest"]["queries"] > 0
    assert 0 <= results["unindexed_left"] < 1000
    assert math.isfinite(results["catch_up_seconds"]) and math.isfinite(results["merged_seconds"])
    assert results["after"]["recall_at_10"] > 0.5
    assert "| caught up after ingest |" in capsys.readouterr().out
    assert not any(tmp_path.glob("bench-scale-*"))  # the store is removed without --keep
