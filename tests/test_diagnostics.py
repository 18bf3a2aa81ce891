"""The conditioning diagnostic against finite differences and closed forms of linear systems."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise.diagnostics import gradient_norms, shooting_vs_ilqr

A = np.array([[1.1, 0.2], [0.0, 0.9]])
B = np.array([[0.0], [0.5]])
R = np.array([[0.3]])


def _linear_policy(gain):
    policy = pw.networks.LinearPolicy(gain.shape[1], gain.shape[0], key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda p: p.gain, policy, jnp.asarray(gain))


def _return(system, gain, x0, actions=None, horizon=None):
    """Σ r_t by a plain Python loop: closed loop under ``gain @ obs``, or open loop under ``actions``."""
    x, total = jnp.asarray(x0), 0.0
    for t in range(horizon if actions is None else len(actions)):
        u = gain @ system.observe(x) if actions is None else actions[t]
        total = total + system.reward(x, u)
        x = system.step(x, u)
    return total


def _central_gradient(f, z, eps=1e-6):
    z = np.asarray(z, np.float64)
    grad = np.zeros(z.size)
    for i in range(z.size):
        dz = np.zeros(z.size)
        dz[i] = eps
        grad[i] = (float(f(jnp.asarray(z + dz.reshape(z.shape)))) - float(f(jnp.asarray(z - dz.reshape(z.shape))))) / (2 * eps)
    return grad


def test_pendulum_norms_match_finite_differences():
    with jax.enable_x64(True):
        system = pw.systems.Pendulum()
        gain = np.array([[0.1, -1.0, -0.3]])  # on (cos, sin, theta_dot); small enough that no torque clips
        states0 = np.array([[0.3, 1.0], [-0.5, 0.2]])
        horizons = (2, 5)
        out = gradient_norms(system, _linear_policy(gain), horizons=horizons, states0=states0, hessian=True,
                             dtype=jnp.float64)
        ps = out["per_state"]
        # an unrolled Python loop, compiled: an independent implementation of the same returns
        closed = jax.jit(lambda g, x0, H: _return(system, g, x0, horizon=H), static_argnums=2)
        opened = jax.jit(lambda u, x0: _return(system, None, x0, actions=u))
        open_grad = jax.jit(jax.grad(opened))
        for j, x0 in enumerate(states0):
            for i, H in enumerate(horizons):
                g_theta = _central_gradient(lambda g: closed(g, x0, H), gain)
                np.testing.assert_allclose(ps["param_grad_norm"][i, j], np.linalg.norm(g_theta), rtol=1e-6)
                np.testing.assert_allclose(ps["return"][i, j], float(closed(gain, x0, H)), rtol=1e-12)
                us, x = [], jnp.asarray(x0)  # open loop at the policy's own actions
                for _ in range(H):
                    us.append(gain @ system.observe(x))
                    x = system.step(x, us[-1])
                us = np.stack(us)
                assert np.all(np.abs(us) < 2.0)
                g_u = _central_gradient(lambda u: opened(u, x0), us)
                np.testing.assert_allclose(ps["action_grad_norm"][i, j], np.linalg.norm(g_u), rtol=1e-6)
                hess = np.stack([_central_gradient(lambda u: open_grad(u, x0).reshape(-1)[k], us, eps=1e-5)
                                 for k in range(H)])
                eig = np.sort(np.abs(np.linalg.eigvalsh(0.5 * (hess + hess.T))))
                np.testing.assert_allclose(ps["hessian_max_eig"][i, j], eig[-1], rtol=1e-5)
                np.testing.assert_allclose(ps["hessian_min_eig"][i, j], eig[0], rtol=1e-4, atol=1e-9)


def test_linear_system_jacobian_products_and_last_action_gradient_are_closed_form():
    with jax.enable_x64(True):
        system = pw.systems.LinearSystem(A, B, np.eye(2), R)
        gain = np.array([[-0.2, -1.0]])
        horizons = (1, 3, 10, 30)
        out = gradient_norms(system, _linear_policy(gain), horizons=horizons, states0=np.array([[1.0, -1.0]]),
                             dtype=jnp.float64)
        closed = A + B @ gain
        for i, H in enumerate(horizons):
            np.testing.assert_allclose(out["open_loop_jacobian_norm"][i], np.linalg.norm(np.linalg.matrix_power(A, H), 2),
                                       rtol=1e-10)
            np.testing.assert_allclose(out["closed_loop_jacobian_norm"][i],
                                       np.linalg.norm(np.linalg.matrix_power(closed, H), 2), rtol=1e-10)
        # the last action only enters the last reward: dJ/du_{T-1} = -2 R u_{T-1}
        x = np.array([1.0, -1.0])
        for _ in range(29):
            x = closed @ x
        np.testing.assert_allclose(out["action_grad_by_t"][-1], np.abs(2 * R[0, 0] * (gain @ x)[0]), rtol=1e-10)
        assert out["action_grad_by_t"].shape == (30,)
        # the unstable open loop (eigenvalue 1.1) makes early actions' gradients grow with the horizon
        assert out["action_grad_norm"][-1] > 100 * out["action_grad_norm"][1]
        assert out["open_loop_jacobian_norm"][-1] > 1.1**30 * 0.5


def test_medians_over_reset_states_and_shapes():
    system = pw.systems.Pendulum()
    policy = pw.networks.DeterministicPolicy(3, 1, system.action_low, system.action_high, hidden=(8,),
                                             key=jax.random.PRNGKey(1))
    out = gradient_norms(system, policy, horizons=(5, 10), key=jax.random.PRNGKey(2), num_states=3)
    assert out["num_states"] == 3 and out["per_state"]["param_grad_norm"].shape == (2, 3)
    np.testing.assert_allclose(out["param_grad_norm"], np.median(out["per_state"]["param_grad_norm"], axis=1))
    assert np.all(np.isfinite(out["param_grad_norm"])) and np.all(out["param_grad_norm"] > 0)


def test_shooting_vs_ilqr_on_a_linear_quadratic_problem():
    pytest.importorskip("pathwise.control.ilqr")
    system = pw.systems.LinearSystem(A, B, np.eye(2), R)
    x0 = jnp.array([1.0, -1.0])
    res = shooting_vs_ilqr(system, x0, 8, max_iterations=30)
    assert set(res) == {"adam", "lbfgs", "ilqr"}
    assert res["ilqr"]["iterations"] <= 3 and res["ilqr"]["converged"]  # Newton on a quadratic
    assert abs(res["lbfgs"]["cost"] - res["ilqr"]["cost"]) <= 1e-4 * res["ilqr"]["cost"]
    adam = res["adam"]["cost_history"]
    assert adam.shape == (31,) and adam[-1] < adam[0] and res["adam"]["cost"] >= res["ilqr"]["cost"] * (1 - 1e-6)
    np.testing.assert_allclose(res["ilqr"]["return"], -res["ilqr"]["cost"])


def test_bad_input_is_named():
    system = pw.systems.Pendulum()
    policy = _linear_policy(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="horizons must be distinct positive ints in increasing order"):
        gradient_norms(system, policy, horizons=(10, 5))
    with pytest.raises(ValueError, match=r"states0 must have shape \(N, 2\)"):
        gradient_norms(system, policy, horizons=(5,), states0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        gradient_norms(system, policy, horizons=(5,), states0=np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="continuous-action"):
        gradient_norms(pw.systems.CartPole(), policy, horizons=(5,))
    with pytest.raises(TypeError, match="Expected a policy"):
        gradient_norms(system, 3.0, horizons=(5,))
    with pytest.raises(ValueError, match="unknown solver"):
        shooting_vs_ilqr(system, jnp.zeros(2), 5, solvers=("newton",))
    with pytest.raises(ValueError, match="options for solvers not run"):
        shooting_vs_ilqr(system, jnp.zeros(2), 5, solvers=("adam",), options={"ilqr": {}})
