"""The benchmark of the durable agent loop: `uv run python bench/run.py` (see `bench/run.py`)."""
