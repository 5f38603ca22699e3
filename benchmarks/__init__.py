"""optlab benchmarks: one module per concern, each with ``run(...) -> dict``."""
