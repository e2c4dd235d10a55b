"""Differential test: the Rust-backed BanHammer against the benchmark's pure-Python reference
(bench/bench_incr.py), on one manual clock, must give the same answers and action calls."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
import bench_incr  # noqa: E402


@pytest.mark.parametrize("return_rates", [False, True])
@pytest.mark.parametrize("tokens", [3, 40, 500])
def test_same_answers_as_the_pure_python_reference(tokens, return_rates):
    (rust_answers, rust_calls), (py_answers, py_calls) = bench_incr.compare(
        calls=8_000, tokens=tokens, return_rates=return_rates
    )
    # The workload reaches every threshold and both answers, or the comparison proves little.
    passed = [a[0] if return_rates else a for a in rust_answers]
    assert 0 < passed.count(False) < len(passed)
    assert {c[0] for c in rust_calls} == {"block_local", "report_central", "record_local"}
    assert rust_calls == py_calls
    assert rust_answers == py_answers
