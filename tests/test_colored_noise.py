"""``noise_color``: the real episodes of the model-based and replay loops explore with noise correlated in time
(power 1/f^β over an episode: white, pink, red), both the uniformly random actions and the policy's samples, each
step keeping its marginal distribution; ``colored_normal`` makes that noise with unit variance at every step and the
spectrum it names."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import loops
from pathwise.algorithms import ddpg, get, mbrl, svg0, svg1, svgk
from pathwise.distributions import colored_normal
from pathwise.loops.model_based import dataset
from pathwise.spec import from_env

TINY = svgk.Config(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=2, critic_minibatches=2,
                   model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=64,
                   updates_per_episode=2, buffer_size=1000, recent_episodes=1, random_episodes=0)


def draws(steps: int, color: float, n: int = 2000) -> np.ndarray:
    keys = jax.random.split(jax.random.key(0), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: colored_normal(k, steps, 2, color)))(keys))


def lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of sequences along axis 1 (mean 0, variance 1 by construction)."""
    return float(np.mean(x[:, 1:] * x[:, :-1]))


@pytest.mark.parametrize("steps", [200, 199])
def test_colored_noise_has_unit_variance_at_every_step_and_the_correlation_its_spectrum_gives(steps):
    """Variance 1 and mean 0 at each step (2,000 draws: standard errors 0.032 and 0.022 per step, and red noise's
    steps move together, so their average errs as much as one step's); the lag-1 correlation
    is the one the 1/f^β spectrum implies, Σ_k w_k f_k^-β cos(2π k/T) / Σ_k w_k f_k^-β, computed here from the
    definition (0 for white noise)."""
    k = np.arange(steps // 2 + 1)
    edge = (k == 0) | (2 * k == steps)
    for color in (0.0, 1.0, 2.0):
        x = draws(steps, color)
        assert x.shape == (2000, steps, 2) and x.dtype == np.float32
        assert np.abs(x.var(axis=0).mean() - 1.0) < 0.07 and np.abs(x.mean(axis=0)).max() < 0.15
        power = np.where(edge, 2.0, 4.0) * (np.maximum(k, 1) / steps) ** -color
        expected = np.sum(power * np.cos(2 * np.pi * k / steps)) / np.sum(power)
        assert abs(lag1(x) - expected) < 0.02, (color, lag1(x), expected)
    assert abs(lag1(draws(steps, 0.0))) < 0.02 and lag1(draws(steps, 1.0)) > 0.5 and lag1(draws(steps, 2.0)) > 0.9


def test_pink_noise_power_falls_as_one_over_f():
    """The mean periodogram's log-log slope over the frequencies 1/T .. 1/2 is -β (fitted within 0.05)."""
    for color in (0.0, 1.0, 2.0):
        power = np.mean(np.abs(np.fft.rfft(draws(256, color)[..., 0], axis=1)) ** 2, axis=0)[1:-1]
        freq = np.arange(1, 128) / 256
        slope = np.polyfit(np.log(freq), np.log(power), 1)[0]
        assert abs(slope + color) < 0.05, (color, slope)


def test_colored_normal_refuses_what_has_no_spectrum():
    with pytest.raises(ValueError, match="color=-1.0 must be a finite exponent >= 0"):
        colored_normal(jax.random.key(0), 10, 1, -1.0)
    with pytest.raises(ValueError, match="steps=0 and dim=1 must be at least 1"):
        colored_normal(jax.random.key(0), 0, 1, 1.0)


@pytest.mark.parametrize("algo, config", [(svgk, TINY), (mbrl, mbrl.Config(hidden=(8,), model_hidden=(16,))),
                                           (svg0, svg0.Config(hidden=(8,), critic_hidden=(8,))),
                                           (ddpg, ddpg.Config(hidden=(8,), critic_hidden=(8,))),
                                           (svg1, svg1.Config(hidden=(8,), critic_hidden=(8,), model_hidden=(8,)))])
def test_act_from_noise_is_the_sample_act_draws(algo, config):
    """``act(state, obs, key, False)`` is ``act_from_noise`` of the standard normal that ``key`` draws, so colored
    noise changes the noise's time structure and nothing else (the model-based loop's learners and the replay
    loop's)."""
    spec, obs, key = from_env("Pendulum-v1"), jnp.array([0.3, -0.9, 1.5]), jax.random.key(5)
    noise = jax.random.normal(key, (1,))
    state = algo.init(jax.random.key(0), spec, config)
    sample = algo.act(state, obs, key, False)
    np.testing.assert_allclose(sample, algo.act_from_noise(state, obs, noise), rtol=1e-6)
    assert np.max(np.abs(sample - algo.act(state, obs, key, True))) > 1e-3  # the noise moved it


def first_episode_actions(config) -> np.ndarray:
    """The actions of the first real episode of svgk's model-based loop on Pendulum-v1 (200 steps)."""
    loop = loops.make(get("svgk"), from_env("Pendulum-v1"), config)
    carry, _ = loop.collect(loop.init(jax.random.key(0)), jax.random.key(1))
    return np.asarray(dataset(carry.buffer).actions[:, 0])


SVG0 = svg0.Config(hidden=(8,), critic_hidden=(8,), batch_size=8, updates_per_step=0.0, buffer_size=1000)


def replay_episode_actions(config) -> np.ndarray:
    """The actions of the first episode of svg0's replay loop on Pendulum-v1 (200 steps)."""
    loop = loops.make(get("svg0"), from_env("Pendulum-v1"), config)
    carry, _ = loop.iteration(loop.init(jax.random.key(0)))
    return np.asarray(carry.buffer.storage.transition.action[:200, 0])


def lag(a: np.ndarray) -> float:
    """Lag-1 autocorrelation of one sequence about its own mean."""
    a = a - a.mean()
    return float(np.sum(a[1:] * a[:-1]) / np.sum(a * a))


@pytest.mark.parametrize("episode_actions, config, random_option", [
    (first_episode_actions, TINY, ("random_episodes", 1, 0)),  # the model-based loop: π₀'s episodes, then π's
    (replay_episode_actions, SVG0, ("learning_starts", 200, 0)),  # the replay loop: its random steps, then π's
], ids=["model_based", "replay"])
def test_the_loops_color_the_random_actions_and_the_policys_samples(episode_actions, config, random_option):
    """The uniformly random actions and the policy's samples (the untrained policy's actions are mostly its noise)
    become correlated in time with red noise, not with the default white noise, and stay in the box [-2, 2]."""
    name, *values = random_option
    for value in values:  # the first episode acts at random, then by the policy
        plain = episode_actions(dataclasses.replace(config, **{name: value}))
        red = episode_actions(dataclasses.replace(config, **{name: value}, noise_color=2.0))
        assert plain.shape == red.shape == (200,)
        assert abs(lag(plain)) < 0.2 and lag(red) > 0.8, (name, value, lag(plain), lag(red))
        assert np.all(np.abs(red) <= 2.0) and np.std(red) > 0.1


def test_colored_uniform_actions_stay_uniform_at_every_step():
    """``uniform_from_noise`` (Φ of unit-variance noise, scaled to the box): over many episodes each step's action
    is uniform on Pendulum's [-2, 2] (variance 16/12, a quarter of the draws in each quarter of the box)."""
    key = jax.random.split(jax.random.key(2), 400)
    z = jax.vmap(lambda k: colored_normal(k, 200, 1, 1.0))(key)
    u = loops.uniform_from_noise(z, from_env("Pendulum-v1"))
    quarters = np.histogram(u, bins=4, range=(-2, 2))[0]
    assert u.shape == (400, 200, 1) and np.all(np.abs(u) <= 2.0)
    assert abs(u.var(axis=0).mean() - 16 / 12) < 0.05 and quarters.min() > 0.23 * u.size


def test_noise_color_is_refused_where_it_cannot_hold_or_is_not_read():
    with pytest.raises(ValueError, match="noise_color"):
        dataclasses.replace(TINY, noise_color=-1.0)
    with pytest.raises(ValueError, match="noise_color=1.0 applies to a learned model only.*pathwise/Pendulum-v1"):
        loops.make(get("svgk"), from_env("pathwise/Pendulum-v1"), dataclasses.replace(TINY, noise_color=1.0))


def test_the_replay_loop_refuses_colored_noise_for_a_learner_that_cannot_take_given_noise():
    """svg0-discrete samples a categorical action (Gumbel-softmax): no standard-normal noise to color."""
    from pathwise.algorithms import gumbel

    with pytest.raises(ValueError, match="noise_color=1.0: svg0-discrete has no act_from_noise"):
        loops.make(get("svg0-discrete"), from_env("CartPole-v1"), gumbel.Config(noise_color=1.0))
    with pytest.raises(ValueError, match="noise_color=-1.0 must be >= 0"):
        dataclasses.replace(SVG0, noise_color=-1.0)
