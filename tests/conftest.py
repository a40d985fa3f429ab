"""Settings for the whole suite."""

from hypothesis import settings

# Hypothesis fails an example that takes over 200 ms by default: a timing threshold, and on a
# shared 2-core machine a loaded moment fails a correct property. Timings belong in the
# benchmarks; here only the laws are checked.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
