"""The sandbox, child side: what runs inside a worker process.

    sink.py           the sink-script worker process: JSON-RPC over stdin/stdout, `run`
    method.py         the method-script worker process: threads, serial/concurrent, cancel
    runner.py         runs compiled sink scripts on events
    method_runner.py  one method script: loaded once, called on threads
    policy.py         what a script may say (the load-time check)
    guards.py         what it may touch when it runs: builtins, attribute and write guards
    modules.py        the modules a script may import, rebuilt from safe public names
    event_module.py   `knot.event` as scripts see it, and each run's budget
    method_module.py  `knot.methods` and Scriptling's `runtime.jsonrpc` as method scripts see them
    plain.py          values from scripts, copied to exact builtin types before use
    wall.py           the OS-level wall: descriptors, environment, Landlock, rlimits, seccomp

Nothing here imports the runtime: only the standard library, this package, `knot._json` and
`knot._jsonrpc` (the JSON-RPC framing both ends of the pipe share, itself standard library
only). A worker boots with a bare `knot` package and loads only these modules.
"""
