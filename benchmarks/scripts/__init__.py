"""The maintainer's scripts (speed benchmarks, quality tables, the reference sweeps, the regression
gates): run from a checkout, not installed; each imports the library and ``perf`` (the gates also
their package's shared part), never another script."""
