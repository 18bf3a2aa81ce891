"""Derivatives of the systems: Jacobians vs central finite differences (float64), finiteness at kinks.

Finite differences (step 1e-6, central: error O(eps^2) + round-off 1e-10/eps) are
the independent reference; states and actions are drawn away from the clips so
the dynamics are smooth there. At the clips, walls and wraps the derivative is
one-sided or undefined; there we only require finite values (no NaN/inf), and
the documented zero where a clip is active.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.rollout import rollout
from pathwise.systems import (Acrobot, AcrobotContinuous, CartPole, CartPoleSwingUp, MountainCarContinuous, Pendulum,
                              double_integrator)

EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-7


def central_difference(f_batched, x):
    """d f / d x by central differences (float64); ``f_batched`` maps a batch of x to a batch of outputs."""
    steps = EPS * np.eye(x.shape[0])
    up, down = f_batched(x + steps), f_batched(x - steps)
    return np.asarray((up - down) / (2 * EPS)).T  # rows: outputs, columns: coordinates of x


def step_and_reward(system, n):
    """z = [state, action] -> [step(s, a), reward(s, a, step(s, a))], so one Jacobian covers both."""

    def f(z):
        s, a = z[:n], z[n:]
        s2 = system.step(s, a)
        return jnp.concatenate([s2, system.reward(s, a, s2)[None]])

    return f


# (system, sampler of smooth (state, action) pairs); discrete systems take relaxed weight vectors.
SMOOTH = {
    "pendulum": (Pendulum(g=9.81), lambda r: (r.uniform([-3, -3], [3, 3]), r.uniform(-1.8, 1.8, 1))),
    "mountaincar": (MountainCarContinuous(), lambda r: (r.uniform([-1.0, -0.03], [0.3, 0.03]), r.uniform(-0.9, 0.9, 1))),
    "cartpole": (CartPole(masspole=0.2), lambda r: (r.uniform(-0.2, 0.2, 4), r.dirichlet([1, 1]))),
    "cartpole-swingup": (CartPoleSwingUp(), lambda r: (r.uniform(-1, 1, 4) * [1, 1, 3, 2], r.uniform(-0.9, 0.9, 1))),
    "acrobot": (Acrobot(), lambda r: (r.uniform(-1, 1, 4) * [2, 2, 3, 5], r.dirichlet([1, 1, 1]))),
    "acrobot-continuous": (AcrobotContinuous(), lambda r: (r.uniform(-1, 1, 4) * [2, 2, 3, 5], r.uniform(-0.9, 0.9, 1))),
    "double-integrator": (double_integrator(), lambda r: (r.normal(size=2), r.normal(size=1))),
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_step_and_reward_jacobians_match_finite_differences(name):
    system, sample = SMOOTH[name]
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        f = step_and_reward(system, system.state_dim)
        f_batched, jac = jax.jit(jax.vmap(f)), jax.jit(jax.jacfwd(f))
        for _ in range(4):
            z = jnp.asarray(np.concatenate(sample(rng)), jnp.float64)
            if name.startswith("acrobot"):  # stay away from the angle wrap at +-pi after the step
                assert np.all(np.abs(np.asarray(f_batched(z[None]))[0, :2]) < np.pi - 1e-3)
            j = jac(z)
            assert j.dtype == jnp.float64 and j.shape == (system.state_dim + 1, z.shape[0])
            np.testing.assert_allclose(j, central_difference(f_batched, z), rtol=RTOL, atol=ATOL)


_JACOBIANS = {}


def finite_derivatives(system, s, a):
    """Jacobians of step and gradients of reward at (s, a) (reverse mode, float32); all must be finite."""
    if system not in _JACOBIANS:
        _JACOBIANS[system] = jax.jit(jax.jacrev(step_and_reward(system, system.state_dim)))
    j = np.asarray(_JACOBIANS[system](jnp.asarray(np.concatenate([s, np.ravel(a)]), jnp.float32)))
    assert np.all(np.isfinite(j)), (system.name, s, a, j)
    n = system.state_dim
    return j[:n, :n], j[:n, n:], j[n, :n], j[n, n:]  # d step/d s, d step/d a, d r/d s, d r/d a


def test_pendulum_exactly_at_the_velocity_and_torque_clips():
    pend = Pendulum()
    # theta = 0, u = 0: no acceleration, so the new velocity is exactly the clip value 8.
    j_s, j_a, _, _ = finite_derivatives(pend, [0.0, 8.0], [0.0])
    assert np.asarray(pend.step(jnp.array([0.0, 8.0]), jnp.array([0.0])))[1] == 8.0
    # Torque exactly at the bound, and beyond it (zero gradient there, as documented).
    finite_derivatives(pend, [0.3, 1.0], [2.0])
    _, j_a, _, g_a = finite_derivatives(pend, [0.3, 1.0], [3.0])
    np.testing.assert_array_equal(j_a, 0.0)
    np.testing.assert_array_equal(g_a, 0.0)
    # Velocity clip active: the new velocity does not depend on the old one.
    j_s, _, _, _ = finite_derivatives(pend, [0.0, 7.99], [2.0])
    assert j_s[1, 1] == 0.0
    # angle_normalize's jump at theta = pi: the reward gradient is finite.
    finite_derivatives(pend, [np.pi, 0.0], [0.0])
    finite_derivatives(pend, [-np.pi, 0.0], [0.0])


def test_mountain_car_at_the_wall_goal_and_clips():
    car = MountainCarContinuous()
    finite_derivatives(car, [-1.2, -0.01], [-1.0])  # hits the wall: velocity reset to 0
    j_s, _, _, _ = finite_derivatives(car, [-1.19, -0.05], [-1.0])
    np.testing.assert_array_equal(j_s[1], 0.0)  # after the wall reset the velocity is a constant 0
    finite_derivatives(car, [0.45, 0.0], [0.0])  # on the goal line
    finite_derivatives(car, [0.6, 0.07], [1.0])  # both clips at their bounds
    finite_derivatives(car, [0.0, 0.0], [1.0])  # force exactly at its bound


def test_acrobot_at_the_angle_wrap_and_velocity_clips():
    for system, action in ((Acrobot(), [0.0, 0.0, 1.0]), (AcrobotContinuous(), [1.0])):
        finite_derivatives(system, [np.pi, -np.pi, 0.0, 0.0], action)  # exactly on the wrap
        finite_derivatives(system, [np.pi - 1e-3, 0.0, 2.0, 0.0], action)  # wraps during the step
        finite_derivatives(system, [0.0, 0.0, 4 * np.pi, 9 * np.pi], action)  # at both velocity clips


def linear_policy(params, obs):
    return jnp.tanh(params["w"] @ obs + params["b"])


@pytest.mark.parametrize("name", ["pendulum", "mountaincar", "cartpole-swingup", "acrobot-continuous"])
def test_gradient_of_a_rollout_return_is_finite_and_nonzero(name):
    system, _ = SMOOTH[name]
    params = {"w": 0.3 * jnp.ones((system.action_dim, system.obs_dim)), "b": jnp.zeros(system.action_dim)}
    state0 = system.reset(jax.random.key(1))
    scale = 0.9 * jnp.asarray(system.action_high)  # inside the box: the torque clip would zero the gradient

    def ret(p):
        return rollout(system, lambda o: scale * linear_policy(p, o), state0, 60).rewards.sum()

    g = jax.jit(jax.grad(ret))(params)
    flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])
    assert np.all(np.isfinite(flat)) and np.any(flat != 0)


def test_rollout_return_gradient_matches_finite_differences_float64():
    pend = Pendulum()
    with jax.enable_x64(True):
        state0 = jnp.array([2.5, 0.3])

        def ret(theta):
            params = {"w": theta[:3][None], "b": theta[3:]}
            return rollout(pend, lambda o: 2.0 * linear_policy(params, o), state0, 30).rewards.sum()

        theta = jnp.array([0.2, -0.4, 0.1, 0.05])
        fd = central_difference(jax.jit(jax.vmap(ret)), theta)
        np.testing.assert_allclose(jax.jit(jax.grad(ret))(theta), fd, rtol=1e-5, atol=1e-6)
