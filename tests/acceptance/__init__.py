"""Reliability acceptance suite: real worker processes, real signals, SQL counts."""
