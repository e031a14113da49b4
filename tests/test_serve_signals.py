"""`knot serve` stops its runtime on SIGTERM and SIGINT instead of dying on the spot."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .helpers import KnotServer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_runtime_and_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    server = KnotServer(tmp_path)
    server.proc.send_signal(sig)
    # uvicorn re-raises the signal after its own shutdown; with the default handler back that
    # would end the process (exit -15) before the runtime and its spaces were stopped.
    assert server.proc.wait(15) == 0
