"""Local spaces: named workloads the runtime starts, stops and health-checks.

service.py  the spaces of a runtime and the system events their changes raise
spec.py     the space model: what a user declares and what the runtime keeps
process.py  a space's process, in its own group, stopped with SIGTERM then SIGKILL
health.py   one health probe (HTTP or command) and the transition rule
"""

from __future__ import annotations

from .service import Spaces, SpacesPart

__all__ = ["Spaces", "SpacesPart"]
