"""A sink worker's results pipe (sandbox/results.py), read by the runtime only when it looks."""

from __future__ import annotations

import os

import pytest

from knot.sandbox.results import ResultsPipe, TooLong


def test_whole_lines_come_out_in_order_and_a_partial_one_waits_for_its_end() -> None:
    pipe = ResultsPipe(max_line=1024)
    try:
        assert pipe.lines() == []
        assert not pipe.unread()
        os.write(pipe.write_fd, b"one\ntwo\nthr")
        assert pipe.unread()
        assert pipe.lines() == [b"one", b"two"]
        assert not pipe.unread()
        assert pipe.lines() == []
        os.write(pipe.write_fd, b"ee\n")
        assert pipe.lines() == [b"three"]
        pipe.handed_over()  # the writer's copy is gone: what was written is still read
        assert pipe.write_fd == -1
        assert pipe.lines() == []
    finally:
        pipe.close()


def test_a_line_past_the_limit_is_refused() -> None:
    pipe = ResultsPipe(max_line=16)
    try:
        os.write(pipe.write_fd, b"x" * 17)
        with pytest.raises(TooLong):
            pipe.lines()
    finally:
        pipe.close()


def test_the_read_end_is_not_inherited_and_never_blocks() -> None:
    pipe = ResultsPipe(max_line=16)
    try:
        assert not os.get_inheritable(pipe.read_fd)
        assert not os.get_inheritable(pipe.write_fd)  # pass_fds hands it to the worker alone
        assert not os.get_blocking(pipe.read_fd)
    finally:
        pipe.close()
    assert pipe.read_fd == -1
