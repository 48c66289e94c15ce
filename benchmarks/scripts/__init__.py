"""The maintainer's scripts (speed benchmarks, quality tables, the reference sweep, the regression
gates): run from a checkout, import the library and ``perf`` alone, and are not installed."""
