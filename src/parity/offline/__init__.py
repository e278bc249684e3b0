"""The offline engine: executes a plan over a spine, as-of correct, vectorized with Polars."""
