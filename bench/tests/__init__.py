"""Unit tests of highpress_bench: pure, fast, no processes (stdlib unittest)."""
