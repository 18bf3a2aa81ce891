"""``mirror``: a reflection the task is invariant under doubles the model's data (D and its mirror image) and
starts half of svgk's and mbrl's imagined rollouts from mirrored states. The image teaches the model the half of
the state space its data never visited; signs of the wrong count, signs that are not ±1, signs under which the
registered reward changes, and the option where no model reads it are refused."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import loops
from pathwise.algorithms import get, mbrl, svg0, svgk
from pathwise.loops.model_based import fit_data, mirror_half, mirrored
from pathwise.models import Dataset, DynamicsModel, FitConfig, fit
from pathwise.models.fit import split_blocks
from pathwise.spec import from_env
from pathwise.systems import Pendulum

#: Pendulum-v1 observes (cos θ, sin θ, θ̇) and is unchanged by θ -> -θ with the torque negated.
PENDULUM_MIRROR = (1.0, -1.0, -1.0, -1.0)
TINY = svgk.Config(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=2, critic_minibatches=2,
                   model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=64,
                   updates_per_episode=2, buffer_size=1000, recent_episodes=1, random_episodes=0)


def pendulum_half(n: int, seed: int, side: float) -> Dataset:
    """Transitions of the true pendulum from θ and θ̇ of one sign (``side``), torques of both."""
    system, rng = Pendulum(), np.random.default_rng(seed)
    states = side * np.stack([rng.uniform(0.3, 3.0, n), rng.uniform(0.0, 6.0, n)], axis=1).astype(np.float32)
    actions = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
    obs = jax.vmap(system.observe)(states)
    next_obs = jax.vmap(lambda s, a: system.observe(system.step(s, a)))(states, actions)
    return Dataset(np.asarray(obs), actions, np.asarray(next_obs), np.zeros(n, bool))


def test_the_mirror_image_teaches_the_model_the_half_its_data_never_visited():
    """Fitted on θ > 0 only, a model extrapolates to θ < 0 badly; fitted on the same data and its mirror image,
    it predicts θ < 0 as well as the half it saw. Stated error: one-step RMSE below 0.01 on the unseen half (the
    observation spans [-1, 1] and θ̇ [-8, 8]), at least ten times below the plain fit's there."""
    signs = (np.array(PENDULUM_MIRROR[:3], np.float32), np.array(PENDULUM_MIRROR[3:], np.float32))
    seen, unseen = pendulum_half(1500, seed=0, side=1.0), pendulum_half(500, seed=1, side=-1.0)
    config = FitConfig(max_epochs=20, steps_per_epoch=60, patience=20, batch_size=128, min_capacity=2048)

    def unseen_rmse(data):
        model, _ = fit(DynamicsModel(3, 1, (64, 64), key=jax.random.key(0)), data, config, jax.random.key(1))
        pred = np.asarray(jax.jit(jax.vmap(model))(unseen.obs, unseen.actions))
        return float(np.sqrt(np.mean((pred - unseen.next_obs) ** 2)))

    plain, both = unseen_rmse(seen), unseen_rmse(mirrored(seen, *signs))
    assert both < 0.01 and plain > 10 * both, (plain, both)


def test_fit_data_is_d_then_its_image_with_a_seam_no_block_crosses():
    config = dataclasses.replace(TINY, mirror=PENDULUM_MIRROR)
    spec = from_env("Pendulum-v1")
    loop = loops.make(get("svgk"), spec, config)
    carry, _ = loop.iteration(loop.init(jax.random.key(0)))
    data = fit_data(carry.buffer, spec, config)
    n = int(carry.buffer.size)
    assert len(data.obs) == 2 * n
    np.testing.assert_array_equal(data.obs[n:], data.obs[:n] * np.array([1, -1, -1], np.float32))
    np.testing.assert_array_equal(data.next_obs[n:], data.next_obs[:n] * np.array([1, -1, -1], np.float32))
    np.testing.assert_array_equal(data.actions[n:], -data.actions[:n])
    np.testing.assert_array_equal(data.rewards[n:], data.rewards[:n])
    assert data.ends[n - 1] and data.ends[-1] and data.images == n
    assert len(fit_data(carry.buffer, spec, TINY).obs) == n  # none by default


def test_the_held_out_split_takes_a_transition_and_its_image_together():
    """A held-out transition whose image was trained on would be predicted through the symmetry the model learned
    from the image: the split of mirrored data holds out both or neither (blocks of ``multi_step`` rows as before)."""
    train, val = split_blocks(2 * 1003, 10, 0.1, jax.random.key(3), images=1003)
    assert len(val) == 2 * 10 * round(0.1 * 100) and set(train) | set(val) == set(range(2006))
    first = val[val < 1003]
    np.testing.assert_array_equal(val[val >= 1003], first + 1003)
    assert (first.reshape(-1, 10) == first.reshape(-1, 10)[:, :1] + np.arange(10)).all()
    seen = pendulum_half(60, seed=0, side=1.0)
    with pytest.raises(ValueError, match="images=50 must be half of its 60 transitions"):
        fit(DynamicsModel(3, 1, (8,), key=jax.random.key(0)), seen._replace(images=50), FitConfig(max_epochs=1))


def test_mirror_half_flips_about_half_of_the_starts_exactly():
    starts = jnp.tile(jnp.array([0.6, 0.8, -2.0]), (4000, 1))
    config = dataclasses.replace(TINY, mirror=PENDULUM_MIRROR)
    out = np.asarray(mirror_half(starts, jax.random.key(0), config))
    flipped = (out == np.array([0.6, -0.8, 2.0], np.float32)).all(axis=1)
    kept = (out == np.asarray(starts)).all(axis=1)
    assert (flipped | kept).all() and 0.45 < flipped.mean() < 0.55
    assert mirror_half(starts, jax.random.key(0), TINY) is starts


def test_mirror_reaches_the_imagined_starts_of_svgk_and_mbrl():
    """The same first iteration with the mirror imagines from other states: other imagined returns."""
    spec = from_env("Pendulum-v1")
    mbrl_tiny = mbrl.Config(hidden=(8,), horizon=4, num_starts=4, policy_steps=2, policy_chunk=2, model_hidden=(16,),
                            model_steps_per_epoch=5, model_max_epochs=2, model_batch=64, buffer_size=1000,
                            random_episodes=0)
    for name, config, metric in (("svgk", TINY, "imagined_reward"), ("mbrl", mbrl_tiny, "imagined_return")):
        def first(c, name=name):
            loop = loops.make(get(name), spec, c)
            return loop.iteration(loop.init(jax.random.key(0)))[1][metric]

        assert first(dataclasses.replace(config, mirror=PENDULUM_MIRROR)) != first(config), name


def test_mirror_is_refused_where_it_cannot_hold_or_is_not_read():
    spec = from_env("Pendulum-v1")
    with pytest.raises(ValueError, match="must hold signs, 1 or -1"):
        dataclasses.replace(TINY, mirror=(1.0, -1.0, 0.5, -1.0))
    with pytest.raises(ValueError, match=r"holds 3 signs.*observation entry \(3\).*action entry \(1\), 4 in all"):
        loops.make(get("svgk"), spec, dataclasses.replace(TINY, mirror=(1.0, -1.0, -1.0)))
    # cos θ -> -cos θ turns the upright pendulum upside down: Pendulum's registered reward changes under it
    loop = loops.make(get("svgk"), spec, dataclasses.replace(TINY, mirror=(-1.0, 1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="is no symmetry of 'Pendulum-v1': its registered reward"):
        loop.iteration(loop.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="mirror=.* applies to a learned model only.*pathwise/Pendulum-v1"):
        loops.make(get("svgk"), from_env("pathwise/Pendulum-v1"), dataclasses.replace(TINY, mirror=PENDULUM_MIRROR))
    with pytest.raises(ValueError, match=r"model rollouts \(MBPO\), which are off here .*model_rollouts_per_step > 0"):
        loops.make(get("svg0"), spec, svg0.Config(mirror=PENDULUM_MIRROR))
