"""BPTT: gradients against finite differences, LQR gain, the simulated loop (compile once, steps counted, exact
resume through a checkpoint), non-finite skips, carried windows, angle features, configs."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import pathwise as pw
from pathwise import algorithms, loops
from pathwise import checkpoint as ckpt
from pathwise import spec as spec_mod
from pathwise.algorithms import bptt
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy

# A small, open-loop unstable 2-state system with a fast optimal closed loop, so the
# finite-horizon BPTT optimum is (to within the tolerance) the infinite-horizon LQR gain.
A = np.array([[1.1, 0.2], [0.0, 0.9]])  # open-loop unstable
B = np.array([[0.5], [1.0]])
Q = np.eye(2)
R = np.array([[0.1]])  # closed-loop spectral radius 0.78: 40 steps are "infinite" to float32
ALGORITHM = algorithms.get("bptt")


def lqr_gain() -> np.ndarray:
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def linear_system():
    return pw.systems.LinearSystem(A, B, Q, R, horizon=40)


TINY = bptt.Config(hidden=(8,), horizon=10, batch_size=8, lr=1e-2, schedule="constant",
                   updates_per_iteration=5)


@eqx.filter_jit
def run_updates(state, system, config, key, n: int):
    """``n`` updates as one scan (metrics stacked per update)."""
    return jax.lax.scan(lambda s, k: bptt.update(s, system, k, config), state, jax.random.split(key, n))


def make_loop(system_or_id, config, seed=0):
    spec = spec_mod.from_env(system_or_id) if isinstance(system_or_id, str) else spec_mod.from_system(system_or_id)
    loop = loops.make(ALGORITHM, spec, config)
    return loop, loop.init(jax.random.key(seed))


def test_gradient_matches_finite_differences():
    system = linear_system()
    config = dataclasses.replace(TINY, horizon=6, batch_size=4)
    state = bptt.init(jax.random.key(0), spec_mod.from_system(system), config)
    params, static = eqx.partition(state.policy, eqx.is_inexact_array)
    noise_keys = jax.random.split(jax.random.key(1), config.batch_size)

    @jax.jit
    def loss(p):
        return bptt.bptt_loss(eqx.combine(p, static), system, state.states, noise_keys, config)[0]

    grad = jax.grad(loss)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grad)[0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = jnp.asarray(rng.normal(size=flat.shape), flat.dtype)
        d = d / jnp.linalg.norm(d)
        eps = 1e-2
        fd = (loss(unravel(flat + eps * d)) - loss(unravel(flat - eps * d))) / (2 * eps)
        # central differences in float32: O(eps^2) truncation + O(1e-7/eps) rounding on a loss of order 1
        np.testing.assert_allclose(float(g @ d), float(fd), rtol=2e-2, atol=2e-3)


def test_linear_policy_approaches_lqr_gain():
    # Clipping matters: the first gradients (~1e4, K = 0 is unstable) would otherwise inflate Adam's
    # second-moment estimate and stall the later steps.
    config = bptt.Config(linear_policy=True, carry_state=False, horizon=40, batch_size=64, lr=0.05,
                         schedule="cosine", schedule_updates=300, max_grad_norm=1.0, updates_per_iteration=300)
    loop, carry = make_loop(linear_system(), config)
    carry, metrics = loop.iteration(carry)
    K = -np.asarray(carry.algo.policy.gain)
    # K* is optimal from every start state, so the Monte Carlo gradient vanishes there: tight tolerance.
    np.testing.assert_allclose(K, lqr_gain(), rtol=1e-3, atol=1e-4)
    assert metrics["skipped_total"] == 0


def test_loss_decreases_on_a_tiny_problem():
    system = linear_system()  # MLP policy (TINY), unstable open loop
    state0 = bptt.init(jax.random.key(0), spec_mod.from_system(system), TINY)
    starts = jax.vmap(system.reset)(jax.random.split(jax.random.key(7), 64))  # held-out start states
    keys = jax.random.split(jax.random.key(8), 64)
    before = float(bptt.bptt_loss(state0.policy, system, starts, keys, TINY)[0])
    state, _ = run_updates(state0, system, TINY, jax.random.key(1), 30)
    after = float(bptt.bptt_loss(state.policy, system, starts, keys, TINY)[0])
    assert after < 0.5 * before, (before, after)


def test_loop_compiles_once_and_counts_steps(compilations):
    loop, carry = make_loop(pw.systems.Pendulum(), TINY)
    assert loop.kind == "simulated"
    carry, _ = loop.iteration(carry)
    with compilations() as n:
        carry, metrics = loop.iteration(carry)
    assert n[0] == 0
    assert int(carry.env_steps) == 2 * TINY.updates_per_iteration * TINY.batch_size * TINY.horizon
    assert bptt.steps_per_update(loop.spec, TINY) == TINY.batch_size * TINY.horizon
    assert int(carry.algo.updates) == 2 * TINY.updates_per_iteration
    assert set(metrics) >= {"loss", "mean_return", "grad_norm", "skipped_total", "lr"}


def test_raw_grad_norm_is_logged_before_clipping():
    system = linear_system()
    config = dataclasses.replace(TINY, max_grad_norm=1e-3)
    state = bptt.init(jax.random.key(0), spec_mod.from_system(system), config)
    _, metrics = eqx.filter_jit(bptt.update)(state, system, jax.random.key(1), config)
    assert float(metrics["grad_norm"]) > 1e-2  # the raw norm, far above the clip threshold


def test_nonfinite_gradient_skips_the_update():
    system = pw.systems.LinearSystem(np.array([[1e30]]), np.array([[1.0]]), horizon=10)  # overflows float32
    config = dataclasses.replace(TINY, linear_policy=True, updates_per_iteration=3)
    loop, carry0 = make_loop(system, config)
    carry, metrics = loop.iteration(carry0)
    assert metrics["skipped_total"] == 3
    np.testing.assert_array_equal(carry.algo.policy.gain, carry0.algo.policy.gain)
    assert int(carry.algo.updates) == 0


def test_carried_windows_continue_episodes_and_reset_after_episode_length():
    system = pw.systems.Pendulum()
    config = dataclasses.replace(TINY, carry_state=True, horizon=100, batch_size=2)  # episode_length 200
    state = bptt.init(jax.random.key(0), spec_mod.from_system(system), config)
    state1, _ = run_updates(state, system, config, jax.random.key(1), 1)
    start, steps = bptt.window_starts(state1, system, jax.random.key(5), config)
    np.testing.assert_array_equal(start, state1.states)  # continues where the first window ended
    np.testing.assert_array_equal(steps, [100, 100])
    state2, _ = run_updates(state1, system, config, jax.random.key(2), 1)
    start, steps = bptt.window_starts(state2, system, jax.random.key(5), config)
    assert not np.allclose(start, state2.states)  # 200 steps done: fresh episodes
    np.testing.assert_array_equal(steps, [0, 0])


@pytest.mark.parametrize("change, match", [
    (dict(horizon=0), "horizon"),
    (dict(discount=1.5), "discount"),
    (dict(schedule="exp"), "schedule"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
    (dict(updates_per_iteration=0), "updates_per_iteration"),
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_float64_needs_x64_mode():
    if jax.config.jax_enable_x64:
        pytest.skip("x64 mode is already on in this session")
    with pytest.raises(ValueError, match="x64"):
        bptt.init(jax.random.key(0), spec_mod.from_system(linear_system()), dataclasses.replace(TINY, float64=True))


def test_loop_needs_a_known_continuous_system():
    no_system = spec_mod.EnvSpec("NoSystem-v0", 3, 1, False, (-2.0,), (2.0,), 200, None)
    with pytest.raises(ValueError, match="has none"):
        loops.make(ALGORITHM, no_system, TINY)
    with pytest.raises(ValueError, match="continuous"):
        loops.make(ALGORITHM, spec_mod.from_env("pathwise/CartPole-v1"), TINY)


def test_resume_through_a_checkpoint_is_exact(tmp_path):
    loop, carry = make_loop("Pendulum-v1", TINY, seed=3)
    carry, _ = loop.iteration(carry)
    ckpt.save(tmp_path / "c.npz", carry, {"algorithm": "bptt"})
    meta, arrays = ckpt.read(tmp_path / "c.npz")
    restored = ckpt.restore(loop.init(jax.random.key(99)), meta, arrays)  # another seed: all from the file
    a, ma = loop.iteration(carry)
    b, mb = loop.iteration(restored)
    assert ma == mb and int(a.env_steps) == int(b.env_steps) == 2 * 5 * 8 * 10
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(
        *(jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v for v in (x, y))), a, b)
    action = bptt.act(a.algo, jnp.array([1.0, 0.0, 0.0]), jax.random.key(0), True)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_cartpole_swingup_policy_sees_the_pole_angle_periodically():
    spec = spec_mod.from_env("pathwise/CartPoleSwingUp-v0")  # the registry says theta (entry 2) is an angle
    state = bptt.init(jax.random.key(0), spec, TINY)
    assert isinstance(state.policy, AngleFeaturePolicy)
    obs = jnp.array([0.1, -0.2, 0.3, 0.5])
    shifted = obs.at[2].add(2 * jnp.pi)  # the same physical state one turn later
    np.testing.assert_allclose(state.policy(obs), state.policy(shifted), rtol=1e-5, atol=1e-6)
    # Pendulum already observes cos/sin
    assert isinstance(bptt.make_policy(jax.random.key(0), spec_mod.from_env("Pendulum-v1"), TINY), DeterministicPolicy)
    with pytest.raises(ValueError, match="outside"):
        bptt.init(jax.random.key(0), spec, dataclasses.replace(TINY, angle_features=(7,)))


def test_action_bounds_are_not_trained():
    policy = bptt.init(jax.random.key(0), spec_mod.from_env("pathwise/CartPoleSwingUp-v0"), TINY).policy
    assert isinstance(policy.policy.low, tuple) and isinstance(policy.policy.high, tuple)  # static fields
    names = list(ckpt.named_leaves(pw.optim.params(policy)))
    assert names and all(name.startswith("policy/net/") for name in names), names


def test_start_spread_widens_training_starts_only():
    system = pw.systems.CartPoleSwingUp()
    config = dataclasses.replace(TINY, batch_size=256, start_spread=(1.0, 1.0, 3.1416, 3.0))
    starts = np.asarray(bptt.reset_states(system, jax.random.key(0), config))
    hanging = np.asarray(bptt.reset_states(system, jax.random.key(0), TINY))
    assert np.all(np.abs(hanging[:, 2] - np.pi) <= 0.05 + 1e-6)  # the system's own reset: pole down
    assert np.all(np.abs(starts[:, 0]) <= 1.05 + 1e-6) and np.all(np.abs(starts[:, 3]) <= 3.05 + 1e-6)
    # every pole angle: about half the spread starts are in the upper half (cos theta > 0)
    assert 0.3 < np.mean(np.cos(starts[:, 2]) > 0) < 0.7
    # same key use as before the option existed when it is off (reproducible Pendulum results)
    keys = jax.random.split(jax.random.key(0), TINY.batch_size)
    np.testing.assert_array_equal(hanging, np.asarray(jax.vmap(system.reset)(keys)))
    with pytest.raises(ValueError, match="one half-width per state entry"):
        bptt.reset_states(system, jax.random.key(0), dataclasses.replace(TINY, start_spread=(1.0,)))
    with pytest.raises(ValueError, match="start_spread"):
        dataclasses.replace(TINY, start_spread=(1.0, -1.0, 0.0, 0.0))


@pytest.mark.slow
def test_cartpole_swingup_preset_swings_up_and_balances():
    """The shipped preset swings the pole up from hanging and holds it: >= 90% of 100 episodes end upright."""
    from pathwise import config as cfg_mod
    from pathwise import registry
    from pathwise.loops.simulated import train_seed
    from pathwise.rollout import rollout

    preset, _ = registry.record("pathwise/CartPoleSwingUp-v0").preset("bptt")
    config = cfg_mod.build(bptt.Config, "bptt", preset)
    assert config.start_spread is not None
    spec = spec_mod.from_env("pathwise/CartPoleSwingUp-v0")
    carry, metrics = train_seed(ALGORITHM, spec, config, seed=1, iterations=2000 // config.updates_per_iteration)
    assert int(np.asarray(metrics["skipped_total"])[-1]) == 0
    system, policy = spec.system, carry.algo.policy
    starts = jax.vmap(system.reset)(jax.random.split(jax.random.key(2024), 100))  # held-out, pole down
    traj = jax.vmap(lambda s: rollout(system, policy, s, system.episode_length))(starts)
    returns = np.asarray(traj.rewards.sum(-1))
    upright = np.cos(np.asarray(traj.final_state[:, 2])) > 0.95
    assert upright.mean() >= 0.9, (upright.mean(), returns.mean())
    assert returns.mean() > 300, returns.mean()  # max 500; hanging for the whole episode gives about -500


def test_float64_is_scoped_to_its_run(tmp_path):
    """A float64 run computes in float64 (after iterations and after a checkpoint round trip) and leaves the
    process as it found it: a float32 run made afterwards has float32 parameters."""
    from pathwise import train

    def float_dtypes(run):
        leaves = jax.tree.leaves(eqx.filter(run.carry.algo, eqx.is_inexact_array))
        return {str(x.dtype) for x in leaves}

    before = bool(jax.config.jax_enable_x64)
    overrides = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)}
    wide = train.Trainer(train.make_run("bptt", "Pendulum-v1", 0, overrides={**overrides, "float64": True})[0],
                         out=tmp_path / "wide", eval_every=400, eval_episodes=1)
    wide.train(400)
    assert float_dtypes(wide.run) == {"float64"} and bool(jax.config.jax_enable_x64) == before
    narrow = train.make_run("bptt", "Pendulum-v1", 0, overrides=overrides)[0]
    narrow.iteration()
    assert float_dtypes(narrow) == {"float32"}
    reopened = train.open_run(tmp_path / "wide", quiet=True)
    assert float_dtypes(reopened.run) == {"float64"}
    obs = np.array([1.0, 0.0, 0.0], np.float32)
    assert reopened.run.act(obs) == pytest.approx(wide.run.act(obs), abs=0.0)
