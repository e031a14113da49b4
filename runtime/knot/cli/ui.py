"""`knot ui`: where the dashboard of a running runtime is, opened in a browser when one is there."""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser

from .._client import Client
from .common import Subparsers, add_command

__all__ = ["has_display", "register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "ui",
        _ui,
        "Print the address of the running runtime's dashboard (/ui) and open it in a browser "
        "when this machine has one.",
        "  knot ui\n  knot ui --no-open          only print the address\n",
    )
    p.add_argument("--no-open", action="store_true", help="print the address, open nothing")


def has_display() -> bool:
    """Whether a graphical browser could open here: on Linux and the BSDs only with a display
    (else webbrowser would start a text browser in this terminal, or nothing)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _ui(args: argparse.Namespace) -> int:
    with Client() as client:
        client.request("GET", "/healthz", expect=(200, 503))  # says so when nothing answers
        address = f"{client.url}/ui"
    print(address)
    if args.no_open or not has_display():
        return 0
    try:
        opened = webbrowser.open(address)
    except webbrowser.Error:
        opened = False
    if not opened:
        print("(no browser could be opened here: open the address above)", file=sys.stderr)
    return 0
