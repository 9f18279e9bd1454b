"""A short version of bench/load_test.py (the 64-client, 2-minute run lives in bench/)."""

from __future__ import annotations

from bench.load_test import run_load


def test_sixteen_streaming_clients_for_fifteen_seconds_lose_nothing() -> None:
    report = run_load(clients=16, duration=15, warmup=5, max_tokens=16)
    assert report["requests_ok"] > 0
    assert report["errors"] == 0
    assert report["engine_slots_busy_at_end"] == 0
    assert report["engine_queue_at_end"] == 0
