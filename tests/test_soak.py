"""The soak (`make soak`, minutes long, not run here) must keep working: its verdict, and one
very short run end to end."""

from __future__ import annotations

import pytest
from benchmarks import soak
from benchmarks.soak import Sample, fit_slope, verdict


def samples(rss: list[float], fds: list[int], every: float = 60.0) -> list[Sample]:
    return [
        Sample(i * every, r, f, r, f, 3, 0, 0)
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_the_slope_is_least_squares() -> None:
    assert fit_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert fit_slope([0, 1, 2, 3], [5, 5, 5, 5]) == 0.0
    assert fit_slope([1], [9]) == 0.0


def test_flat_and_growing() -> None:
    noisy_but_flat = samples([100, 101, 99, 100.5, 100, 99.5], [50, 51, 50, 50, 51, 50])
    assert verdict(noisy_but_flat, rss_limit=1.0, fd_limit=0.5, warm_up=0).flat
    leaking = samples([100, 102, 104, 106, 108, 110], [50] * 6)  # 2 MB a minute
    result = verdict(leaking, rss_limit=1.0, fd_limit=0.5, warm_up=0)
    assert not result.flat
    assert result.rss_slope == pytest.approx(2.0)
    assert "GROWING" in result.lines[0]
    fd_leak = samples([100] * 6, [50, 51, 52, 53, 54, 55])
    assert not verdict(fd_leak, rss_limit=1.0, fd_limit=0.5, warm_up=0).flat
    # Warm-up growth before the cut is not a leak.
    warming = samples([60, 90, 100, 100, 100, 100], [40, 50, 50, 50, 50, 50])
    assert verdict(warming, rss_limit=1.0, fd_limit=0.5, warm_up=120).flat


def test_a_short_soak_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    quick = ["--minutes", "0.06", "--interval", "1", "--reload", "1", "--rate", "60"]
    code = soak.main([*quick, "--rss-slope", "1000", "--fd-slope", "1000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: FLAT" in out
    assert "delivery: all delivered" in out
    assert "requests:" in out
    assert ", 0 failed" in out
