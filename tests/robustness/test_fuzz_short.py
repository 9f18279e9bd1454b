"""A short version of bench/fuzz_gateway.py (5,000+ requests live in bench/)."""

from __future__ import annotations

from bench.fuzz_gateway import fuzz


def test_schema_driven_fuzzing_finds_no_5xx_hangs_or_malformed_errors() -> None:
    report = fuzz(400, seed=7)
    assert report["requests"] >= 350
    assert report["server_errors"] == 0, report["failures"]
    assert report["hangs"] == 0, report["failures"]
    assert report["failure_count"] == 0, report["failures"]
    assert report["gateway_alive_after"]
