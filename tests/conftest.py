"""Shared pytest setup: float32 by default, quiet progress bars, XLA's cheap compilation for the default suite, and
a compilation counter.

The default suite (``-m 'not slow'``, what ``make test`` runs) compiles its programs with most of XLA's
optimizations off (``jax_disable_most_optimizations``): its programs are small and run briefly, so compiling them
costs far more than running them, and the unoptimized programs compute the same values up to floating-point
rounding. Runs that select the slow learning checks (``make test-slow``, ``-m slow``) keep the optimizations, as a
user's training does; ``PATHWISE_TEST_OPTIMIZE=1`` keeps them for any run, and a test module that sets
``OPTIMIZED = True`` keeps them for its own tests (where the rounding matters: differently batched programs compared
after many chaotic iterations). The setting reaches subprocesses that a test starts through the environment.
"""

import contextlib
import os

os.environ.setdefault("PATHWISE_QUIET", "1")

import pytest  # noqa: E402

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def pytest_configure(config):
    """Turn most XLA optimizations off for the default suite (see the module docstring), before JAX compiles."""
    default_suite = "not slow" in (config.getoption("markexpr") or "")
    if default_suite and os.environ.get("PATHWISE_TEST_OPTIMIZE") != "1":
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
        import jax

        jax.config.update("jax_disable_most_optimizations", True)


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


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """After each test module, drop every compiled program (``jax.clear_caches()``) once the worker holds 40% of the
    memory maps Linux allows it (``pathwise.compiled``: XLA maps each compiled program into the process, and past
    ``vm.max_map_count`` the next compile crashes). A pytest-xdist worker that had compiled most of the suite's
    programs crashed so (a segfault or abort in ``backend_compile_and_load``, in whichever program came next, at
    ~95% of a run) in five of the six first ``make test`` runs in fresh clones on 2026-12-07 (jax 0.10.2). Clearing
    after every module kept a worker under ~12,300 maps but made a first run in a fresh clone take 695 s (every
    module compiling its shared programs again); at 40% each worker cleared once or twice and the first run took
    608 s (568 s run again)."""
    yield
    import sys

    if "jax" in sys.modules:
        from pathwise import compiled

        compiled.release_if_crowded(0.4)


@pytest.fixture(autouse=True, scope="module")
def _optimized_module(request):
    """A module whose ``OPTIMIZED = True`` compiles with XLA's optimizations even in the default suite (results
    compared across differently batched programs over long chaotic solves, where the rounding matters)."""
    if not getattr(request.module, "OPTIMIZED", False):
        yield
        return
    import jax

    before = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") == "1"
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        jax.clear_caches()


@pytest.fixture
def compilations():
    """The :func:`count_compilations` context manager, as a fixture."""
    return count_compilations
