"""Fail on any breached threshold in k6 `--summary-export` files.

    python loadtest/check_summary.py summary.json [more.json ...]

Prints every threshold with the value k6 observed, and exits 1 when any was
breached (2 when a file cannot be read, or has no thresholds at all: a script
without thresholds gates nothing). k6 marks a breached threshold `true` in the
export; that mark is what counts here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_EXPRESSION = re.compile(r"^\s*(?P<stat>[a-z]+(?:\(\s*[\d.]+\s*\))?)\s*(?P<op>[<>=!]=*)")


@dataclass(frozen=True)
class Threshold:
    metric: str
    expression: str
    breached: bool
    observed: str

    def line(self) -> str:
        mark = "BREACHED" if self.breached else "ok"
        return f"{mark:8} {self.metric}: {self.expression} (observed {self.observed})"


def observed_value(values: dict[str, Any], expression: str) -> str:
    """The statistic a threshold expression is about, as k6 exported it."""
    match = _EXPRESSION.match(expression)
    if match is None:
        return "?"
    stat = match["stat"].replace(" ", "")
    # Rate metrics export their rate as `value`; counters export `rate` and `count`.
    key = "value" if stat == "rate" and "value" in values else stat
    if key not in values:
        return f"{stat} not exported (add it to summaryTrendStats)"
    value = values[key]
    if isinstance(value, float):
        return f"{stat}={value:.6g}"
    return f"{stat}={value}"


def thresholds_of(summary: dict[str, Any]) -> list[Threshold]:
    found: list[Threshold] = []
    metrics = summary.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError("no `metrics` object: not a k6 --summary-export file")
    for metric, values in sorted(metrics.items()):
        if not isinstance(values, dict):
            continue
        for expression, breached in (values.get("thresholds") or {}).items():
            found.append(
                Threshold(metric, expression, bool(breached), observed_value(values, expression))
            )
    return found


def check(paths: list[Path], out: Any = sys.stdout) -> int:
    status = 0
    for path in paths:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            thresholds = thresholds_of(summary)
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read: {exc}", file=out)
            status = max(status, 2)
            continue
        if not thresholds:
            print(f"{path}: no thresholds: nothing was gated", file=out)
            status = max(status, 2)
            continue
        breached = [t for t in thresholds if t.breached]
        print(f"{path}: {len(thresholds)} thresholds, {len(breached)} breached", file=out)
        for threshold in thresholds:
            print(f"  {threshold.line()}", file=out)
        if breached:
            status = max(status, 1)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", nargs="+", type=Path, help="k6 --summary-export files")
    args = parser.parse_args(argv)
    return check(args.summaries)


if __name__ == "__main__":
    sys.exit(main())
