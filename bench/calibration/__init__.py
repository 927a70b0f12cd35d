"""The harness's own benchmarks: the cost of one hop per client stack, the generator's ceiling, the monolith against a
hello world."""
