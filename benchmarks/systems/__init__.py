"""The systems a benchmark run compares, each behind :class:`benchmarks.systems.base.System`."""
