"""Test support code shared by the test suite and the benchmarks (no pytest imports)."""
