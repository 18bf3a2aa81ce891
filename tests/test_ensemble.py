"""Probabilistic ensembles: calibrated predictive variance, elites by held-out loss, trajectory sampling,
disagreement, one vmapped program."""

from __future__ import annotations

import dataclasses
import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.models import Dataset, DynamicsModel, FitConfig, LearnedModel, fit, member_losses
from pathwise.rollout import rollout
from pathwise.systems import LinearSystem

A = np.array([[0.9, 0.2], [-0.3, 0.95]], np.float32)
B = np.array([[0.0], [0.5]], np.float32)
SIGMA = 0.05
SYSTEM = LinearSystem(A, B, noise_std=SIGMA)
CONFIG = FitConfig(max_epochs=25, steps_per_epoch=60, patience=5, batch_size=128, min_capacity=1024)


def transitions(n: int, seed: int) -> Dataset:
    """``n`` transitions of the stochastic ``SYSTEM`` from uniform states and actions (its own ``step`` and noise)."""
    k_x, k_u, k_noise = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.uniform(k_x, (n, 2), minval=-1.0, maxval=1.0)
    u = jax.random.uniform(k_u, (n, 1), minval=-1.0, maxval=1.0)
    noise = SYSTEM.sample_noise(k_noise, (n,))
    x2 = jax.vmap(SYSTEM.step)(x, u, noise)
    return Dataset(*(np.asarray(a, np.float32) for a in (x, u, x2)), np.zeros(n, bool))


@pytest.fixture(scope="module")
def ensemble():
    model = DynamicsModel(2, 1, (32, 32), key=jax.random.key(0), ensemble_size=5, gaussian=True, num_elites=3)
    return fit(model, transitions(1500, seed=1), CONFIG, jax.random.key(2))


def test_ensemble_variance_is_calibrated_on_held_out_transitions(ensemble):
    model, _ = ensemble
    test = transitions(2000, seed=11)
    mean, var = jax.jit(jax.vmap(model.distribution))(test.obs, test.actions)
    inside = np.abs(test.next_obs - np.asarray(mean)) <= 1.959964 * np.sqrt(np.asarray(var))
    # 95% interval of the predictive distribution: the true next states fall inside it 90-99% of the time
    # (4000 entries: the sampling error of a coverage near 0.95 is 0.003).
    assert 0.9 <= inside.mean() <= 0.99, inside.mean(axis=0)
    # and the predicted std is the true noise level (the fit's own one-step error agrees)
    np.testing.assert_allclose(np.median(np.sqrt(np.asarray(var)), axis=0), SIGMA, rtol=0.25)


def test_learned_log_variance_bounds_move_and_hold(ensemble):
    model, _ = ensemble
    max_lv, min_lv = np.asarray(model.log_var_bounds)
    assert np.all(max_lv > min_lv)
    _, log_var = jax.vmap(model.normalized_outputs)(jnp.zeros((1, 2)), jnp.zeros((1, 1)))
    assert np.all(np.asarray(log_var) <= max_lv + 1e-5) and np.all(np.asarray(log_var) >= min_lv - 1e-5)
    # an input far outside the data cannot push the variance past the learned bounds
    _, far = model.normalized_outputs(jnp.full(2, 1e4), jnp.full(1, 1e4))
    assert np.all(np.isfinite(far)) and np.all(np.asarray(far) <= max_lv + 1e-5)


def test_elites_are_the_members_of_lowest_held_out_loss(ensemble):
    model, _ = ensemble
    assert model.elites.shape == (5,) and int(model.elites.sum()) == 3
    val = transitions(1000, seed=21)
    losses = np.asarray(jax.jit(member_losses)(model, *val[:3], jnp.ones(1000)))
    elite_mean, others_mean = losses[np.asarray(model.elites)].mean(), losses[~np.asarray(model.elites)].mean()
    assert elite_mean <= others_mean + 0.05  # fresh data agree with the fit's held-out ranking (within noise)
    weights = np.asarray(model.member_weights())
    np.testing.assert_allclose(weights.sum(), 1.0)
    np.testing.assert_array_equal(weights > 0, model.elites)
    preds = np.asarray(model.member_predictions(val.obs[0], val.actions[0]))
    np.testing.assert_allclose(model(val.obs[0], val.actions[0]), preds[np.asarray(model.elites)].mean(0), rtol=1e-5)


def test_mixture_moments_and_disagreement_closed_form(ensemble):
    model, _ = ensemble
    o, a = jnp.array([0.3, -0.2]), jnp.array([0.5])
    mean, log_var = model.normalized_outputs(o, a)
    w = np.asarray(model.member_weights())
    mu = np.asarray(o) + np.asarray(mean) * np.asarray(model.out_norm.std) + np.asarray(model.out_norm.mean)
    var = np.exp(np.asarray(log_var)) * np.asarray(model.out_norm.std) ** 2
    center = (w[:, None] * mu).sum(0)  # law of total variance for the equal-weight mixture of the elites
    got_mean, got_var = model.distribution(o, a)
    np.testing.assert_allclose(got_mean, center, rtol=1e-5)
    np.testing.assert_allclose(got_var, (w[:, None] * (var + mu ** 2)).sum(0) - center ** 2, rtol=1e-3, atol=1e-8)
    spread = (w[:, None] * (np.asarray(mean) - (w[:, None] * np.asarray(mean)).sum(0)) ** 2).sum(0).mean()
    np.testing.assert_allclose(model.disagreement(o, a), spread, rtol=1e-4)
    # identical members disagree nowhere
    same = eqx.tree_at(lambda m: m.nets, model, jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape), model.nets))
    assert float(same.disagreement(o, a)) == 0.0 and float(model.disagreement(o, a)) > 0.0


def test_trajectory_sampling_follows_one_member_or_draws_per_step(ensemble):
    model, _ = ensemble
    low, high = -np.ones(1), np.ones(1)
    ts_inf = LearnedModel(model, lambda o, a, o2: -o @ o, action_low=low, action_high=high, sampling="ts-inf")
    ts_1 = LearnedModel(model, lambda o, a, o2: -o @ o, action_low=low, action_high=high, sampling="ts-1")
    x0, policy = jnp.array([0.5, -0.5]), (lambda o: -0.3 * o[:1])

    @jax.jit
    def sampled(key):
        system = ts_inf.sample(key)
        x = x0
        for _ in range(5):  # the chosen member's own predictions, step by step
            x = model.member_prediction(x, policy(x), system.member)
        return system.member, rollout(system, policy, x0, 5).final_state, x

    members, got, expected = jax.vmap(sampled)(jax.random.split(jax.random.key(0), 12))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # one member for the whole rollout
    assert len(set(np.asarray(members).tolist())) > 1 and np.all(np.asarray(model.elites)[members])  # elites only
    step_members = jax.jit(jax.vmap(lambda k, t: ts_1.sample(k)._step_member(x0 + 0.01 * t)))
    per_step = np.asarray(step_members(jax.random.split(jax.random.key(1), 24), jnp.arange(24.0)))
    assert len(set(per_step.tolist())) > 1 and np.all(np.asarray(model.elites)[per_step])
    mean = LearnedModel(model, lambda o, a, o2: -o @ o, action_low=low, action_high=high)
    assert mean.sample(jax.random.key(0)) is mean


def test_batched_members_predict_what_each_rollouts_own_member_does(ensemble):
    """``batched_members`` (every member on the whole batch, each rollout keeping its own) is the same system:
    vmapped ts-inf rollouts give the default's states, and a vmapped ts-1 step the default's next states (a ts-1
    step draws its member from the observation's bits, so rollouts part once rounding differs)."""
    model, _ = ensemble
    low, high, policy = -np.ones(1), np.ones(1), (lambda o: -0.3 * o[:1])
    starts = jax.random.uniform(jax.random.key(3), (16, 2), minval=-1.0, maxval=1.0)
    keys = jax.random.split(jax.random.key(4), 16)
    for sampling, steps in (("ts-inf", 6), ("ts-1", 1)):
        system = LearnedModel(model, lambda o, a, o2: -o @ o, action_low=low, action_high=high, sampling=sampling)
        batched = system.batched_members()
        assert batched.all_members and not system.all_members
        states = {s.all_members: jax.jit(jax.vmap(lambda k, x, s=s: rollout(s.sample(k), policy, x, steps).states))(
            keys, starts) for s in (system, batched)}
        np.testing.assert_allclose(states[True], states[False], rtol=1e-5, atol=1e-6)


def test_optimism_bonus_adds_beta_times_disagreement(ensemble):
    model, _ = ensemble
    kw = dict(action_low=-np.ones(1), action_high=np.ones(1))
    plain = LearnedModel(model, lambda o, a, o2: -o @ o, **kw)
    optimistic = LearnedModel(model, lambda o, a, o2: -o @ o, bonus=2.0, **kw)
    o, a = jnp.array([3.0, -3.0]), jnp.array([0.9])  # off the data: the members disagree
    np.testing.assert_allclose(optimistic.reward(o, a) - plain.reward(o, a), 2.0 * model.disagreement(o, a),
                               rtol=1e-5)
    grad = jax.grad(lambda o: optimistic.reward(o, a))(o)
    assert np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="sampling='ts2' must be one of"):
        LearnedModel(model, lambda o, a, o2: 0.0, sampling="ts2", **kw)


def test_uncertainty_penalty_subtracts_lambda_times_disagreement(ensemble):
    """uncertainty_penalty λ (MOPO's pessimism): the learned system's reward is r + (β − λ) · disagreement."""
    from pathwise.loops import model_based as mb
    from pathwise.spec import from_env

    model, _ = ensemble
    spec = dataclasses.replace(from_env("Pendulum-v1"), obs_dim=2, action_dim=1, reward=lambda o, a, o2: -o @ o,
                               action_low=(-1.0,), action_high=(1.0,))
    o, a = jnp.array([3.0, -3.0]), jnp.array([0.9])  # off the data: the members disagree

    def reward(**options):
        config = mb.ModelOptions(model_ensemble=5, **options)
        return mb.learned_system(model, spec, 10, config).reward(o, a)

    np.testing.assert_allclose(reward(uncertainty_penalty=3.0) - reward(), -3.0 * model.disagreement(o, a), rtol=1e-5)
    np.testing.assert_allclose(reward(uncertainty_penalty=3.0, exploration_bonus=1.0) - reward(),
                               -2.0 * model.disagreement(o, a), rtol=1e-5)
    both = mb.learned_system(model, spec, 10, mb.ModelOptions(model_ensemble=5, uncertainty_penalty=3.0,
                                                               exploration_bonus=1.0))
    exploiting = both.exploiting()  # the bonus dropped, the penalty kept; the model itself untouched
    assert (exploiting.bonus, exploiting.penalty, both.bonus) == (0.0, 3.0, 1.0)
    np.testing.assert_allclose(exploiting.reward(o, a), reward(uncertainty_penalty=3.0), rtol=1e-6)
    assert float(model.disagreement(o, a)) > 0
    with pytest.raises(ValueError, match="uncertainty_penalty"):
        mb.ModelOptions(uncertainty_penalty=-1.0, model_ensemble=5)
    with pytest.raises(ValueError, match="uncertainty_penalty > 0 needs an ensemble"):
        mb.ModelOptions(uncertainty_penalty=1.0)
    with pytest.raises(ValueError, match="exploration_bonus > 0 needs an ensemble"):  # the same check, β's side
        mb.ModelOptions(exploration_bonus=1.0)


def test_ensemble_refit_is_one_program(ensemble):
    model, _ = ensemble
    short = dataclasses.replace(CONFIG, max_epochs=2)
    fit(model, transitions(300, seed=5), short, jax.random.key(3))
    fit_module = importlib.import_module("pathwise.models.fit")  # the module (pathwise.models.fit is the function)
    before = fit_module._epoch._cached._cache_size()
    fit(model, transitions(400, seed=6), short, jax.random.key(4))
    assert fit_module._epoch._cached._cache_size() == before  # a grown data set in the same capacity: no recompile
    with pytest.raises(ValueError, match="num_elites=6 must be between 1 and ensemble_size=5"):
        DynamicsModel(2, 1, (8,), key=jax.random.key(0), ensemble_size=5, num_elites=6)


def test_svgk_imagines_each_rollout_through_its_own_member(ensemble):
    from pathwise.algorithms import svgk
    from pathwise.distributions import GaussianPolicy
    from pathwise.networks import VCritic

    model, _ = ensemble
    system = LearnedModel(model, lambda o, a, o2: -o @ o, action_low=-np.ones(1), action_high=np.ones(1),
                          sampling="ts-inf")
    policy = GaussianPolicy(2, 1, (8,), key=jax.random.key(0), low=-np.ones(1), high=np.ones(1))
    value = VCritic(2, (8,), key=jax.random.key(1))
    n, k = 12, 4
    starts, xis, zetas = jnp.tile(jnp.array([0.5, -0.5]), (n, 1)), jnp.zeros((n, k + 1, 1)), jnp.zeros((n, k, 2))
    keys = jax.random.split(jax.random.key(2), n)
    _, segments = jax.jit(svgk.actor_loss, static_argnums=(6, 7))(policy, value, system, starts, xis, zetas, 0.99,
                                                                  1.0, keys)
    members = [int(system.sample(key).member) for key in keys]
    for i in (0, 5, 11):  # rollout i is the rollout through the member its key draws
        x = starts[i]
        for t in range(k):
            np.testing.assert_allclose(segments.observations[i, t], x, rtol=1e-5, atol=1e-6)
            x = model.member_prediction(x, policy.act(x, xis[i, t]), members[i])
    assert len(set(members)) > 1 and len({round(float(o), 5) for o in segments.observations[:, -1, 0]}) > 1
