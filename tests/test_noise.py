"""SVG(∞) noise inference: replaying with the inferred noises reproduces the real trajectory."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.distributions import GaussianPolicy
from pathwise.models import DynamicsModel, LearnedModel, episode_trajectory, infer_noise
from pathwise.networks import DeterministicPolicy
from pathwise.rollout import rollout
from pathwise.systems import Pendulum

T = 30


def reward(obs, action, next_obs):
    del next_obs
    return -(jnp.arctan2(obs[1], obs[0]) ** 2 + 0.1 * obs[2] ** 2 + 0.001 * action[0] ** 2)


def real_episode(policy, key):
    """An episode of the true (noisy) Pendulum under a stochastic policy, recorded as observations."""
    real = Pendulum(noise_std=0.01)
    k0, k1, k2 = jax.random.split(key, 3)
    xis = jax.random.normal(k1, (T, 1))
    traj = rollout(real, policy.act, real.reset(k0), T, key=k2, policy_noise=xis)
    return episode_trajectory(traj.observations, traj.actions, traj.rewards, real.observe(traj.final_state))


@pytest.fixture(scope="module")
def setup():
    policy = GaussianPolicy(3, 1, (16,), key=jax.random.key(0), low=-2.0, high=2.0)
    # An unfitted model on purpose: the replay must be exact whatever the model's error.
    model = LearnedModel(DynamicsModel(3, 1, (16,), key=jax.random.key(1)), reward,
                         action_low=-2.0, action_high=2.0, horizon=T)
    return policy, model, real_episode(policy, jax.random.key(2))


def test_replay_reproduces_the_real_trajectory(setup):
    policy, model, episode = setup
    zetas, xis = infer_noise(model, policy, episode)
    assert zetas.shape == (T, 3) and xis.shape == (T, 1)
    replay = rollout(model, policy.act, episode.observations[0], T, noises=zetas, policy_noise=xis)
    np.testing.assert_allclose(replay.observations, episode.observations, atol=1e-4)
    np.testing.assert_allclose(replay.actions, episode.actions, atol=1e-4)
    np.testing.assert_allclose(replay.final_state, episode.final_state, atol=1e-4)


def test_replay_holds_at_other_parameters(setup):
    """Noises inferred at new parameters θ' reproduce the same real trajectory under θ'."""
    policy, model, episode = setup
    shifted = eqx.tree_at(lambda p: p.net, policy, jax.tree.map(lambda x: x + 0.05, policy.net))
    zetas, xis = infer_noise(model, shifted, episode)
    replay = rollout(model, shifted.act, episode.observations[0], T, noises=zetas, policy_noise=xis)
    np.testing.assert_allclose(replay.actions, episode.actions, atol=1e-4)
    # ...and the gradient of the replayed return is finite and non-zero.
    grad = jax.grad(lambda p: rollout(model, p.act, episode.observations[0], T, noises=zetas,
                                      policy_noise=xis).rewards.sum())(shifted)
    leaves = jax.tree.leaves(grad)
    assert all(np.all(np.isfinite(g)) for g in leaves) and any(np.any(g != 0) for g in leaves)


def test_deterministic_policy_has_no_policy_noise(setup):
    _, model, episode = setup
    policy = DeterministicPolicy(3, 1, -2.0, 2.0, (8,), key=jax.random.key(6))
    zetas, xis = infer_noise(model, policy, episode)
    assert xis.shape == (T, 0)
    # ζ_t is exactly s_{t+1} − f(s_t, a_t) (reference computed step by step).
    np.testing.assert_allclose(zetas[3], episode.observations[4] - model.step(episode.observations[3],
                                                                              episode.actions[3]), atol=1e-6)
    with pytest.raises(ValueError, match="one unbatched trajectory"):
        infer_noise(model, policy, jax.tree.map(lambda x: x[None], episode))


def test_replay_reproduces_a_real_gymnasium_episode(setup):
    """The real trajectory here is Gymnasium's own Pendulum-v1 (a black box), acted in by the stochastic policy;
    replaying it through an (unfitted) learned model with the inferred ζ, ξ gives back its observations,
    actions and rewards, and the SVG(∞) objective at the current parameters is the real return."""
    from pathwise import envs, rewards

    policy, model, _ = setup
    system = LearnedModel(model.model, rewards.get("Pendulum-v1"), action_low=-2.0, action_high=2.0, horizon=T)
    keys = iter(jax.random.split(jax.random.key(11), T))
    act = jax.jit(lambda obs, k: policy(obs).sample(k))
    ep, real_return, n = envs.run_episode(envs.make_env("Pendulum-v1"),
                                          lambda obs: np.asarray(act(jnp.asarray(obs, jnp.float32), next(keys))),
                                          seed=3, max_steps=T)
    assert n == T
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    episode = episode_trajectory(f32(ep.obs), f32(ep.action).reshape(T, 1), f32(ep.reward), f32(ep.next_obs[-1]))
    zetas, xis = infer_noise(system, policy, episode)
    replay = rollout(system, policy.act, episode.observations[0], T, noises=zetas, policy_noise=xis)
    np.testing.assert_allclose(replay.observations, ep.obs, atol=1e-4)
    np.testing.assert_allclose(replay.final_state, ep.next_obs[-1], atol=1e-4)
    np.testing.assert_allclose(replay.actions, ep.action.reshape(T, 1), atol=1e-4)
    # Gymnasium's rewards, recomputed on the replay by the known reward function (float32 vs float64).
    np.testing.assert_allclose(replay.rewards, ep.reward, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(replay.rewards.sum()), real_return, rtol=1e-4)


def test_frozen_noise_equals_the_inferred_noise_without_gradient(setup):
    """``frozen_noise`` (what SVG(∞) holds fixed while it differentiates) is ``infer_noise``'s ζ, ξ, and neither
    the policy nor the model parameters get a gradient through it."""
    from pathwise.models.noise import frozen_noise

    policy, model, episode = setup
    next_obs = jnp.concatenate([episode.observations[1:], episode.final_state[None]])
    zetas, xis = frozen_noise(model, policy, episode.observations, episode.actions, next_obs)
    ref_z, ref_x = infer_noise(model, policy, episode)
    np.testing.assert_array_equal(zetas, ref_z)
    np.testing.assert_array_equal(xis, ref_x)

    def total(both):
        p, m = both
        z, x = frozen_noise(m, p, episode.observations, episode.actions, next_obs)
        return z.sum() + x.sum()

    grads = eqx.filter_grad(total)((policy, model))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
    live = eqx.filter_grad(lambda p: infer_noise(model, p, episode)[1].sum())(policy)  # the check is not vacuous
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(live))
