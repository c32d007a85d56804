"""Robustness tests: every bad input is refused with one clear line, never a traceback."""
