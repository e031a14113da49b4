"""`%knot replay SINK`: a replay's report as an HTML table in Jupyter, as `knot replay`
prints it elsewhere; `.report` holds the `ReplayReport` for code to use."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Protocol

from .._replay import ReplayedEvent, ReplayReport, ReplayStatus

__all__ = ["ReplayView"]

ROWS_SHOWN = 200  # events that differ shown in full; the summary counts them all
_COLOURS = {
    ReplayStatus.SAME: "#6a6",
    ReplayStatus.CHANGED: "#c80",
    ReplayStatus.NOW_FAILING: "#c33",
    ReplayStatus.NOW_PASSING: "#393",
    ReplayStatus.NO_RECORD: "#888",
}
_DIFFERENT = (ReplayStatus.CHANGED, ReplayStatus.NOW_FAILING, ReplayStatus.NOW_PASSING)


class _Pretty(Protocol):
    def text(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True, repr=False)
class ReplayView:
    report: ReplayReport

    def text(self) -> str:
        return self.report.render_text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        report = self.report
        counts = "".join(
            f'<td style="color:{_COLOURS[status]}"><b>{report.count(status)}</b> '
            f"{html.escape(status.label)}</td>"
            for status in ReplayStatus
        )
        notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in report.notes)
        differing = [e for e in report.events if e.status in _DIFFERENT]
        rows = "".join(self._row(e) for e in differing[:ROWS_SHOWN])
        if not differing:
            rows = '<tr><td colspan="4">every event ran as its record says (or has none)</td></tr>'
        more = len(differing) - ROWS_SHOWN
        cut = f"<p>{more} more events differ (their diffs are in .report)</p>" if more > 0 else ""
        return (
            f'<div class="knot-replay"><p><b>replay of {html.escape(report.sink)}</b> '
            f"(version <code>{html.escape(report.version[:12])}</code>): "
            f"{len(report.events)} events, nothing delivered or journaled</p>"
            f"<table><tr>{counts}</tr></table>{notes}"
            "<table><thead><tr><th>status</th><th>seq</th><th>event</th><th>then → now</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>{cut}</div>"
        )

    @staticmethod
    def _row(event: ReplayedEvent) -> str:
        lines = []
        for line in event.diff[2:]:  # the ---/+++ header says only then/now
            style = {"+": "color:#393", "-": "color:#c33", "@": "color:#888"}.get(line[:1], "")
            lines.append(f'<span style="{style}">{html.escape(line)}</span>')
        notes = "".join(f"<br><i>{html.escape(n)}</i>" for n in event.notes)
        colour = _COLOURS[event.status]
        return (
            f'<tr><td style="color:{colour}"><b>{html.escape(event.status.label)}</b></td>'
            f"<td>{event.seq}</td><td>{html.escape(event.type)}<br>"
            f"<code>{html.escape(event.id)}</code>{notes}</td>"
            f'<td><pre style="margin:0">{chr(10).join(lines)}</pre></td></tr>'
        )
