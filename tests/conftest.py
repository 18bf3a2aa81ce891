"""Shared pytest setup: float32 by default, quiet progress bars, and a compilation counter."""

import contextlib
import os

os.environ.setdefault("PATHWISE_QUIET", "1")

import pytest  # noqa: E402

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Count the XLA compilations that happen inside the block, observed from outside the library.

    ``with count_compilations() as n: ...`` then ``n[0]`` is the count (JAX's monitoring events).
    """
    import jax.monitoring as monitoring

    count = [0]

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def compilations():
    """The :func:`count_compilations` context manager, as a fixture."""
    return count_compilations
