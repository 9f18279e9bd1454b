"""The benchmarks' shared statistics and report: one quantile method, figures with provenance."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from bench.report import emit, table
from bench.stats import format_ratio, mean, median, quantile, ratio, summary


def test_quantile_interpolates_between_nearest_ranks_like_statistics_inclusive() -> None:
    samples = [7.0, 1.0, 3.0, 10.0, 2.0, 8.0, 4.0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    for point in (5, 50, 95, 99):
        assert math.isclose(quantile(samples, point / 100), cuts[point - 1])
    assert quantile(samples, 0) == 1.0
    assert quantile(samples, 1) == 10.0
    assert median(samples) == statistics.median(samples)
    assert quantile([4.0], 0.99) == 4.0


def test_no_samples_raise_in_the_primitives_and_read_none_in_a_summary() -> None:
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError):
        mean([])
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)
    assert summary([], (50, 95), unit="ms", with_mean=True) == {
        "p50_ms": None,
        "p95_ms": None,
        "mean_ms": None,
    }


def test_summary_scales_rounds_and_names_keys_by_prefix_point_and_unit() -> None:
    seconds = [0.001, 0.002, 0.003, 0.004]
    assert summary(seconds, (50, 99), unit="ms", scale=1000, digits=2, prefix="ttft_") == {
        "ttft_p50_ms": 2.5,
        "ttft_p99_ms": 3.97,
    }
    assert summary([1.0, 2.0], (50,), with_mean=True) == {"p50": 1.5, "mean": 1.5}


def test_ratio_is_none_when_a_side_is_missing_or_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 3.0, digits=2) == 0.33
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0) is None
    assert format_ratio(1.234) == "1.23x"
    assert format_ratio(None) == "-"


def test_table_aligns_numeric_columns_right_and_shows_missing_values_as_dashes() -> None:
    text = table(["server", "tok/s"], [["ours", 12.5], ["peer", None]], title="c=1")
    assert text.splitlines() == [
        "c=1",
        "",
        "| server | tok/s |",
        "| ------ | ----: |",
        "| ours   |  12.5 |",
        "| peer   |     - |",
    ]


def test_every_report_carries_benchmark_date_commit_and_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out" / "x.json"
    report = emit("example", {"p50_ms": 1.0}, path)
    written = json.loads(path.read_text())
    assert written == report == json.loads(capsys.readouterr().out)
    assert list(report)[:4] == ["benchmark", "date", "commit", "machine"]
    assert report["benchmark"] == "example" and report["p50_ms"] == 1.0
    assert report["date"].endswith("+00:00")
    assert report["commit"] and set(report["machine"]) >= {"cpu", "cpus", "python"}
