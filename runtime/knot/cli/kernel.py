"""`knot kernel install`: a Jupyter kernelspec that preloads the notebook extension."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .common import Subparsers, add_command

__all__ = ["DISPLAY_NAME", "KERNEL_NAME", "register"]

KERNEL_NAME = "knot"
DISPLAY_NAME = "Knot (Python)"


def register(sub: Subparsers) -> None:
    kernel = add_command(
        sub,
        "kernel",
        None,
        "Jupyter kernel for notebooks (`knot kernel install`).",
        "  knot kernel install --user\n",
    )
    actions = kernel.add_subparsers(title="actions", metavar="ACTION")
    p = add_command(
        actions,
        "install",
        _install,
        f"Install the {DISPLAY_NAME!r} kernelspec: this Python with the knot extension preloaded.",
        "  knot kernel install --user\n  knot kernel install --prefix .venv\n",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user only")
    where.add_argument("--prefix", default=None, help="under PREFIX/share/jupyter (a venv)")
    p.add_argument("--name", default=KERNEL_NAME, help=f"kernelspec name (default {KERNEL_NAME})")


def _install(args: argparse.Namespace) -> int:
    # Imported here: the rest of the CLI must not pay for (or need) Jupyter.
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as staging:
        spec = write_kernel_spec(
            Path(staging) / args.name,
            overrides={"display_name": DISPLAY_NAME},
            extra_arguments=["--ext=knot"],
        )
        try:
            dest = KernelSpecManager().install_kernel_spec(
                spec, kernel_name=args.name, user=args.user, prefix=args.prefix
            )
        except OSError as exc:
            print(
                f"knot: cannot install the kernelspec: {exc.strerror or exc} "
                f"({exc.filename or 'the Jupyter data folder'}); try --user or --prefix.",
                file=sys.stderr,
            )
            return 1
    print(f"Installed the kernelspec {args.name!r} ({DISPLAY_NAME}) in {dest}")
    return 0
