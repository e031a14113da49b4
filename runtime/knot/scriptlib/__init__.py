"""The runtime's side of the libraries scripts import to do real work.

    service.py   ScriptLibraries: answers workers' `http`, `kv` and `secret` requests, per
                 script (ScriptRef) and per run (RunUse); dry runs record requests (DryRunLog)
    http.py      requests made with aiohttp, kept to `http_allow` at every hop and connection
    checks.py    what a request may be and where it may go (the URL, the addresses)
    transport.py the aiohttp side, imported at the first request (not with `import knot`)
    kv.py        `knot.kv` operations against the store's ExpiringKv, with quotas
    secrets.py   secrets from [secrets] and KNOT_SECRET_<NAME>, and their Redactor
    scratch.py   an ExpiringKv in memory: where a dry run's writes go

The worker's side (what scripts see) is `sandbox/worker/http_module.py` and `kv_module.py`.
"""

from __future__ import annotations

from .service import DryRunLog, RecordedRequest, RunUse, ScriptLibraries, ScriptRef

__all__ = ["DryRunLog", "RecordedRequest", "RunUse", "ScriptLibraries", "ScriptRef"]
