"""Demo data: realistic landing files of e-commerce events for `etl dev`, the tests and the benchmarks."""
