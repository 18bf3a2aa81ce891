"""A process that trains run after run (tune's trials) drops its compiled programs before it holds more memory maps
than Linux allows: past ``vm.max_map_count`` XLA's CPU compiler crashes the process."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from pathwise import compiled, train

linux = pytest.mark.skipif(compiled.memory_maps() is None or compiled.map_limit() is None,
                           reason="needs /proc/self/maps and /proc/sys/vm/max_map_count (Linux)")


@linux
def test_every_compiled_program_holds_memory_maps_until_the_caches_are_cleared():
    """The reason for the release: compiling adds maps, clearing the caches gives them back."""
    fns = [jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cumsum(x)) for i in range(60)]
    jax.clear_caches()
    before = compiled.memory_maps()
    for i, f in enumerate(fns):
        f(jnp.ones(i + 1)).block_until_ready()
    held = compiled.memory_maps()
    assert held - before >= 3 * 60, (before, held)  # ~18 per program with jax 0.10.2
    jax.clear_caches()
    assert compiled.memory_maps() < before + (held - before) / 4, (before, held, compiled.memory_maps())


@linux
def test_release_if_crowded_clears_the_caches_only_past_its_fraction_of_the_limit():
    f = jax.jit(lambda x: x + 1.0)
    f(jnp.ones(2))
    assert f._cache_size() == 1
    assert compiled.release_if_crowded(1.0) is False and f._cache_size() == 1
    assert compiled.release_if_crowded(0.0) is True and f._cache_size() == 0


def test_nothing_is_measured_or_dropped_without_proc(monkeypatch, tmp_path):
    monkeypatch.setattr(compiled, "MAPS", tmp_path / "absent")
    assert compiled.memory_maps() is None and compiled.release_if_crowded(0.0) is False


def test_each_run_checks_before_it_compiles(monkeypatch):
    calls = []
    monkeypatch.setattr(compiled, "release_if_crowded", lambda *a: calls.append(a) or False)
    train.make_run("ddpg", "Pendulum-v1", 0, overrides={"hidden": (8,), "critic_hidden": (8,)})
    assert calls == [()]
