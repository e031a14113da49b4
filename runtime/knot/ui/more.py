"""The dashboard's other pages: audit, scripts, methods, spaces, and the cluster.

Scripts (their source and reload history) are the project's, so only a caller who may manage
global sinks sees them, as only they may change what scripts define; the rest follow the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import Response

from .._exceptions import NotFound, PermissionDenied
from ..cluster.part import ClusterPart
from ..cluster.status import cluster_status
from ..scripts.reload import Reload, Reloader, display_path, is_script_name
from .web import Ctx, page

__all__ = ["audit_page", "cluster_page", "methods_page", "scripts_page", "spaces_page"]

AUDIT_ROWS = (50, 200, 1000)
SOURCE_LIMIT = 200_000  # characters of a script shown
FOLDERS = ("sinks", "methods")


@page
async def audit_page(ctx: Ctx) -> Response:
    """Dashboard: the audit log, filtered by sink."""
    sink = ctx.arg("sink") or None
    n = int(ctx.arg("n")) if ctx.arg("n") in {str(x) for x in AUDIT_ROWS} else AUDIT_ROWS[0]
    own = None
    if not ctx.caller.manage_global_sinks:  # as GET /api/audit: one's own sinks' entries
        owner = ctx.caller.owner
        own = [s.name for s in ctx.runtime.sinks() if owner and s.spec.owner == owner]
    entries = await ctx.runtime.audit_entries(limit=n, sink=sink, sinks=own)
    return ctx.render(
        "audit.html",
        title="Audit",
        entries=list(reversed(entries)),
        sink=sink or "",
        n=n,
        sizes=AUDIT_ROWS,
    )


def _reloader(ctx: Ctx) -> Reloader | None:
    return next((p for p in ctx.runtime.parts if isinstance(p, Reloader)), None)


def _scripts(ctx: Ctx) -> list[dict[str, Any]]:
    """Every script file in the watched folders, with its last reload (newest first)."""
    reloader = _reloader(ctx)
    history: list[Reload] = list(reloader.history) if reloader is not None else []
    runtime = ctx.runtime
    root = runtime.resolve(runtime.config.scripts.dir)
    found: dict[str, dict[str, Any]] = {}
    for kind in FOLDERS:
        folder = root / kind
        paths = sorted(folder.glob("*.py")) if folder.is_dir() else []
        for path in paths:
            if is_script_name(path.name):
                shown = display_path(runtime.project, path)
                found[shown] = {"path": shown, "kind": kind, "name": path.stem, "last": None}
    for reload in history:
        if reload.kind not in FOLDERS:
            continue
        shown = display_path(runtime.project, reload.path)
        entry = found.setdefault(
            shown, {"path": shown, "kind": reload.kind, "name": reload.name, "last": None}
        )
        entry["last"] = reload  # the history is oldest first: the last one wins
    for entry in found.values():
        problem = runtime.registry.problem(entry["name"]) if entry["kind"] == "sinks" else ""
        entry["problem"] = problem
    return sorted(found.values(), key=lambda e: (e["kind"], e["path"]))


@page
async def scripts_page(ctx: Ctx) -> Response:
    """Dashboard: the scripts, their state, last reload, errors (`file:line:col`) and source."""
    if not ctx.caller.manage_global_sinks:
        raise PermissionDenied(
            f"User {ctx.caller.name!r} may not read the project's scripts: that needs the "
            'permission "Manage Global Event Sinks".'
        )
    scripts = _scripts(ctx)
    view = ctx.arg("view")
    source = ""
    if view:
        entry = next((e for e in scripts if e["path"] == view), None)
        if entry is None:
            raise NotFound(f"There is no script {view!r} in the scripts folder.", what=view)
        try:
            source = (ctx.runtime.project / Path(view)).read_text(errors="replace")
        except OSError as exc:
            source = f"(the file cannot be read: {exc.strerror})"
        if len(source) > SOURCE_LIMIT:
            source = source[:SOURCE_LIMIT] + f"\n… (cut at {SOURCE_LIMIT} characters)"
    reloader = _reloader(ctx)
    recent = list(reversed(reloader.history))[:20] if reloader is not None else []
    template = "_scripts_body.html" if ctx.request.headers.get("hx-request") else "scripts.html"
    return ctx.render(
        template, title="Scripts", scripts=scripts, view=view, source=source, recent=recent
    )


@page
async def methods_page(ctx: Ctx) -> Response:
    """Dashboard: the method scripts' methods, with a form to call one."""
    methods = ctx.runtime.methods
    return ctx.render(
        "methods.html",
        title="Methods",
        methods=[m.to_dict() for m in methods.all()],
        scripts=methods.statuses(),
        chosen=ctx.arg("method"),
    )


@page
async def spaces_page(ctx: Ctx) -> Response:
    """Dashboard: the spaces with state and health, start / stop and a log tail."""
    spaces = ctx.runtime.spaces
    owner = ctx.caller.owner or None
    listed = [s.to_dict() for s in spaces.list(owner=owner)]
    log_of = ctx.arg("log")
    lines: list[str] = []
    if log_of:
        lines = await spaces.logs(log_of, lines=100, owner=owner)
    template = "_spaces_body.html" if ctx.request.headers.get("hx-request") else "spaces.html"
    return ctx.render(template, title="Spaces", spaces=listed, log_of=log_of, lines=lines)


@page
async def cluster_page(ctx: Ctx) -> Response:
    """The nodes sharing this project through NATS, the sinks and method scripts each serves,
    and each sink's lag (as `knot cluster status`); a lone runtime says it is one node."""
    for part in ctx.runtime.parts:
        if isinstance(part, ClusterPart) and part.membership is not None:
            status = await cluster_status(part.membership)
            return ctx.render("cluster.html", title="Cluster", cluster=status)
    return ctx.render(
        "cluster.html", title="Cluster", cluster=None, store=str(ctx.runtime.store.path)
    )
