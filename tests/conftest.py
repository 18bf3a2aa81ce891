"""Shared pytest setup: float32 by default, quiet progress bars."""

import os

os.environ.setdefault("PATHWISE_QUIET", "1")
