"""bench.scale at a tiny size: it runs to its report, and it counts the index caught up
with the fresh shard's last points, fewer than the threshold, still unindexed (2,500
points in chunks of 1,000 or more usually leave some)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from bench import scale
from bench.cgroup import MemoryCgroup


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


def test_scale_runs_in_a_memory_cgroup_of_its_own_and_reports_its_peak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--memory-limit on the real kernel's cgroups (skipped where none can be made): the
    run holds less than the limit, the group is gone afterwards and this process is back
    in the group it was in."""
    home = Path("/proc/self/cgroup").read_text()
    probe = MemoryCgroup.make(f"bench-scale-probe-{os.getpid()}", 1 << 30)
    if probe is None:
        pytest.skip("no memory cgroup can be made here (not root, or no memory controller)")
    probe.delete()
    out = tmp_path / "scale.json"
    argv = [
        "--points", "1000", "--dimension", "8", "--threshold", "500", "--backlog", "800",
        "--catch-up-wait", "300", "--data-dir", str(tmp_path), "--json", str(out),
        "--memory-limit", "1.5",
    ]  # fmt: skip
    assert scale.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["memory_limit_gb"] == 1.5
    assert 0 < results["cgroup_peak_gb"] <= 1.5
    assert results["peak_rss_gb"] <= 1.5
    assert "| peak of the cgroup limited to 1.5 GB |" in capsys.readouterr().out
    assert Path("/proc/self/cgroup").read_text() == home
    assert not any(Path("/sys/fs/cgroup/memory").glob(f"bench-scale-{os.getpid()}"))
    assert not any(Path("/sys/fs/cgroup").glob(f"bench-scale-{os.getpid()}"))
