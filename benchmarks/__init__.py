"""knot-runtime benchmarks: `make bench` (all) or `python -m benchmarks NAME... [--quick]`."""
