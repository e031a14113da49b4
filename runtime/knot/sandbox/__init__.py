"""The script sandbox, parent side: the runtime's handle on its worker processes.

    process.py         one worker seen from the runtime: requests, deadlines, SIGKILL
    pool.py            the workers of a runtime's script sinks: one process per sink
    method_process.py  one method-script worker: concurrent requests over one pipe

The child side, `worker/`, is what runs inside those processes (the rules, the modules
scripts get, the OS wall); it imports nothing of the runtime but `knot.types`. This package
imports nothing at import time, so a worker process that boots `knot.sandbox.worker.sink`
loads only what it runs.
"""
