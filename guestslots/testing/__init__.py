"""Support for tests and benchmarks (never imported by guestslots at run time)."""
