"""One module per reproduced paper; each registers itself with fer_bench.registry."""
