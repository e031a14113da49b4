"""The notebook: `%knot` magics over an embedded runtime or a running `knot serve`.

    magics.py    the `%knot` / `%%knot` magics: parse a line as the CLI does, call the backend
    backends.py  where the magics send their work: embedded runtime or HTTP client
    display.py   what the magics return: HTML tables in Jupyter, text elsewhere

`knot.ipython` is the `%load_ext knot` shim that wires them into a kernel.
"""
