"""Our systems vs Gymnasium's own environments, driven through Gymnasium's state.

Each step we pick a float32 state (Gymnasium's current one, or a random state
from a wide box, to reach the clips, walls and wraps), write it into
``env.unwrapped.state``, step Gymnasium with a random action, and record what it
returns. Our side is then computed for all recorded (state, action) pairs at
once with ``jax.vmap`` and compared: next state, observation, reward and
termination, to 1e-5 (float32 vs Gymnasium's float64 arithmetic).

Float32 round-off of Acrobot's RK4 step grows with the velocities (up to ~1e-3
next to the 4 pi / 9 pi velocity limits, ~5e-7 on the states Gymnasium's own
episodes visit), so the float32 test draws Acrobot's extra states from half the
velocity range; a float64 test then checks every system, on the full boxes, to
1e-9 (the equations themselves are exact).
"""

from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pathwise.systems import Acrobot, CartPole, MountainCarContinuous, Pendulum, System

ATOL = 1e-5
PI = np.pi


@dataclass
class Case:
    env_id: str
    system: System
    action: Callable  # (rng, state) -> gymnasium action
    wide_state: Callable  # rng -> a state from a wide box (float32 test)
    extreme_state: Callable | None = None  # rng -> a state from the full box (float64 test); default wide_state
    gym_attrs: dict = field(default_factory=dict)  # attributes set on env.unwrapped
    gym_kwargs: dict = field(default_factory=dict)  # gym.make kwargs
    angles: tuple = ()  # state dims compared modulo 2 pi
    f64_atol: float = 1e-9  # float64 test tolerance


def cartpole_attrs(masspole, length, force_mag, masscart=1.0):
    return dict(masspole=masspole, length=length, force_mag=force_mag, masscart=masscart,
                total_mass=masspole + masscart, polemass_length=masspole * length)


def mountain_car_action(rng, state):
    # Pump energy most of the time so the car reaches both the left wall and the goal.
    if rng.random() < 0.75:
        return np.array([np.sign(state[1] + 1e-9) * rng.uniform(0.5, 1.5)], np.float32)
    return rng.uniform(-1.5, 1.5, size=(1,)).astype(np.float32)


PENDULUM_WIDE = lambda rng: np.array([rng.uniform(-3 * PI, 3 * PI), rng.uniform(-9.0, 9.0)])  # noqa: E731
CARTPOLE_WIDE = lambda rng: rng.uniform([-2.4, -3, -0.21, -3.5], [2.4, 3, 0.21, 3.5])  # noqa: E731
ACROBOT_WIDE = lambda rng: rng.uniform([-PI, -PI, -2 * PI, -4.5 * PI], [PI, PI, 2 * PI, 4.5 * PI])  # noqa: E731
ACROBOT_FULL = lambda rng: rng.uniform([-PI, -PI, -4.2 * PI, -9.2 * PI], [PI, PI, 4.2 * PI, 9.2 * PI])  # noqa: E731
MOUNTAIN_WIDE = lambda rng: rng.uniform([-1.2, -0.07], [0.6, 0.07])  # noqa: E731
PENDULUM_ACT = lambda rng, s: rng.uniform(-3, 3, size=(1,)).astype(np.float32)  # noqa: E731

CASES = {
    # Gymnasium's Pendulum scales the float32 torque in float32 arithmetic (NumPy 2 scalar rules), hence f64_atol.
    "pendulum": Case("Pendulum-v1", Pendulum(), PENDULUM_ACT, PENDULUM_WIDE, f64_atol=5e-8),
    "pendulum-g9.81-m1.3-l0.8": Case("Pendulum-v1", Pendulum(g=9.81, m=1.3, l=0.8), PENDULUM_ACT, PENDULUM_WIDE,
                                     gym_attrs=dict(m=1.3, l=0.8), gym_kwargs=dict(g=9.81), f64_atol=5e-8),
    # Gymnasium's MountainCar keeps its state in float32 and computes in float32, hence f64_atol.
    "mountaincar": Case("MountainCarContinuous-v0", MountainCarContinuous(), mountain_car_action, MOUNTAIN_WIDE,
                        f64_atol=2e-7),
    "mountaincar-power0.002": Case("MountainCarContinuous-v0", MountainCarContinuous(power=0.002), mountain_car_action,
                                   MOUNTAIN_WIDE, gym_attrs=dict(power=0.002), f64_atol=2e-7),
    "cartpole": Case("CartPole-v1", CartPole(), lambda rng, s: int(rng.integers(2)), CARTPOLE_WIDE),
    "cartpole-heavy-long": Case("CartPole-v1", CartPole(masspole=0.3, length=0.8, force_mag=15.0, masscart=1.2),
                                lambda rng, s: int(rng.integers(2)), CARTPOLE_WIDE,
                                gym_attrs=cartpole_attrs(0.3, 0.8, 15.0, 1.2)),
    "acrobot": Case("Acrobot-v1", Acrobot(), lambda rng, s: int(rng.integers(3)), ACROBOT_WIDE, ACROBOT_FULL,
                    angles=(0, 1)),
    "acrobot-masses": Case("Acrobot-v1", Acrobot(link_mass_1=1.4, link_mass_2=0.7, link_length_1=1.2, link_moi=0.9),
                           lambda rng, s: int(rng.integers(3)), ACROBOT_WIDE, ACROBOT_FULL, angles=(0, 1),
                           gym_attrs=dict(LINK_MASS_1=1.4, LINK_MASS_2=0.7, LINK_LENGTH_1=1.2, LINK_MOI=0.9)),
}


def drive_gymnasium(case: Case, seed: int, steps: int, p_wide: float = 0.3, extreme: bool = False):
    """Step Gymnasium from float32 states we choose; return the recorded arrays."""
    wide_state = (case.extreme_state or case.wide_state) if extreme else case.wide_state
    env = gym.make(case.env_id, **case.gym_kwargs).unwrapped
    for name, value in case.gym_attrs.items():
        setattr(env, name, value)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rec = {k: [] for k in ("state", "action", "next_state", "obs", "reward", "terminated")}
    for _ in range(steps):
        state = wide_state(rng) if rng.random() < p_wide else np.asarray(env.state)
        state = np.asarray(state, np.float32)
        env.state = state.astype(env.state.dtype)
        if hasattr(env, "steps_beyond_terminated"):
            env.steps_beyond_terminated = None  # CartPole: every step is a fresh first step
        action = case.action(rng, state)
        obs, reward, terminated, _, _ = env.step(action)
        for k, v in zip(rec, (state, action, np.asarray(env.state, np.float64), obs, reward, terminated)):
            rec[k].append(v)
        if terminated:
            env.reset()
    env.close()
    return {k: np.asarray(v) for k, v in rec.items()}


_OURS = {}


def ours(system: System):
    """One compiled, vmapped transition per system: (s, a) -> (s', o', r, terminated(s'))."""
    if system not in _OURS:
        def transition(s, a):
            s2 = system.step(s, a)
            return s2, system.observe(s2), system.reward(s, a, s2), system.terminated(s2)

        _OURS[system] = jax.jit(jax.vmap(transition))
    return _OURS[system]


def wrapped_difference(a, b, angles):
    d = np.asarray(a, np.float64) - b
    for i in angles:
        d[:, i] = (d[:, i] + PI) % (2 * PI) - PI
    return d


def record(case: Case, steps_per_seed: int = 400, extreme: bool = False):
    recs = [drive_gymnasium(case, seed, steps_per_seed, extreme=extreme) for seed in (0, 1, 2)]
    return {k: np.concatenate([r[k] for r in recs]) for k in recs[0]}


def assert_parity(case: Case, rec: dict, out, atol: float):
    next_state, obs, reward, terminated = (np.asarray(x) for x in out)
    np.testing.assert_allclose(wrapped_difference(next_state, rec["next_state"], case.angles), 0.0, atol=atol)
    # Gymnasium's observations are rounded to float32 (half an ulp: relative 6e-8).
    np.testing.assert_allclose(obs, rec["obs"], atol=atol, rtol=1.2e-7)
    np.testing.assert_allclose(reward, rec["reward"], atol=atol, rtol=0)
    np.testing.assert_array_equal(terminated, rec["terminated"])
    if case.env_id != "Pendulum-v1":
        assert 0 < rec["terminated"].sum() < len(rec["terminated"]), "the test must see both outcomes"


@pytest.mark.parametrize("name", list(CASES))
def test_step_reward_observe_terminated_match_gymnasium(name):
    case = CASES[name]
    rec = record(case)
    assert len(rec["state"]) >= 1200
    out = ours(case.system)(jnp.asarray(rec["state"]), jnp.asarray(rec["action"]))
    assert out[0].dtype == jnp.float32
    assert_parity(case, rec, out, ATOL)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_parity_on_the_full_state_boxes(name):
    case = CASES[name]
    rec = record(case, 200, extreme=True)
    system = case.system

    def transition(s, a):
        s2 = system.step(s, a)
        return s2, system.observe(s2), system.reward(s, a, s2), system.terminated(s2)

    with jax.enable_x64(True):
        action = rec["action"].astype(np.float64) if rec["action"].dtype.kind == "f" else rec["action"]
        out = jax.jit(jax.vmap(transition))(jnp.asarray(rec["state"], jnp.float64), jnp.asarray(action))
        assert out[0].dtype == jnp.float64
    assert_parity(case, rec, out, case.f64_atol)


def test_parity_cases_reach_the_clips_walls_and_wraps():
    # Without these, the parity test above would not exercise the non-smooth branches.
    rec = drive_gymnasium(CASES["pendulum"], 0, 400)
    assert (np.abs(rec["next_state"][:, 1]) == 8.0).any()
    rec = drive_gymnasium(CASES["mountaincar"], 0, 1200)
    assert ((rec["next_state"][:, 0] <= -1.2 + 1e-7) & (rec["next_state"][:, 1] == 0)).any()
    rec = drive_gymnasium(CASES["acrobot"], 0, 400, extreme=True)
    assert (np.abs(rec["state"][:, :2] + rec["state"][:, 2:] * 0.2) > PI).any()
    assert (np.abs(rec["next_state"][:, 3]) == 9 * PI).any() or (np.abs(rec["next_state"][:, 2]) == 4 * PI).any()


RESET_CASES = {
    "Pendulum-v1": (Pendulum(), [-PI, -1.0], [PI, 1.0]),
    "MountainCarContinuous-v0": (MountainCarContinuous(), [-0.6, 0.0], [-0.4, 0.0]),
    "CartPole-v1": (CartPole(), [-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": (Acrobot(), [-0.1] * 4, [0.1] * 4),
}


@pytest.mark.parametrize("env_id", list(RESET_CASES))
def test_reset_distribution_matches_gymnasium(env_id):
    system, low, high = RESET_CASES[env_id]
    low, high = np.array(low), np.array(high)
    ours_states = np.asarray(jax.jit(jax.vmap(system.reset))(jax.random.split(jax.random.key(0), 2000)))
    env = gym.make(env_id).unwrapped
    theirs = []
    for seed in range(300):
        obs, _ = env.reset(seed=seed)
        theirs.append(np.asarray(env.state, np.float64))
        np.testing.assert_allclose(system.observe(jnp.asarray(env.state, jnp.float32)), obs, atol=ATOL)
    theirs = np.array(theirs)
    for states in (ours_states, theirs):  # both inside the documented box, and filling it
        assert (states >= low - 1e-7).all() and (states <= high + 1e-7).all()
    for i in np.flatnonzero(high > low):
        span = high[i] - low[i]
        assert ours_states[:, i].min() < low[i] + 0.01 * span and ours_states[:, i].max() > high[i] - 0.01 * span
        # Same distribution as Gymnasium's draws (two-sample Kolmogorov-Smirnov; fixed seeds, so not flaky).
        assert stats.ks_2samp(ours_states[:, i], theirs[:, i]).pvalue > 1e-3
