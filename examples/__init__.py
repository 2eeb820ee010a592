"""Runnable examples from the README (import them with `--import examples.<name>`)."""
