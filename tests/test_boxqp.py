"""Projected-Newton box QP (Tassa, Mansard & Todorov 2014) against exact active-set enumeration and L-BFGS-B."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from pathwise.control.boxqp import boxqp, clamped_set, solve_free


def enumerate_active_sets(H, g, lower, upper):
    """The exact minimizer: the one assignment (free / at lower / at upper) per coordinate meeting the KKT
    conditions (strictly convex, so exactly one does)."""
    m = len(g)
    for assign in itertools.product((0, 1, 2), repeat=m):
        a = np.array(assign)
        x = np.where(a == 1, lower, np.where(a == 2, upper, 0.0))
        f = a == 0
        if f.any():
            x[f] = np.linalg.solve(H[np.ix_(f, f)], -(g[f] + H[np.ix_(f, ~f)] @ x[~f]))
        grad = g + H @ x
        if (np.all(x >= lower - 1e-12) and np.all(x <= upper + 1e-12) and np.all(grad[a == 1] >= -1e-12)
                and np.all(grad[a == 2] <= 1e-12)):
            return x, a
    raise AssertionError("no KKT point found")


def random_problem(rng, m, cond=10.0):
    Qm, _ = np.linalg.qr(rng.normal(size=(m, m)))
    H = Qm @ np.diag(np.geomspace(1.0, cond, m)) @ Qm.T
    g = 3.0 * rng.normal(size=m)
    lower, upper = -rng.uniform(0.1, 1.0, m), rng.uniform(0.1, 1.0, m)
    return H, g, lower, upper


def test_matches_exact_enumeration_of_active_sets_on_random_problems():
    rng = np.random.default_rng(0)
    solve = jax.jit(boxqp)
    binding = 0
    with jax.enable_x64(True):
        for _ in range(60):
            m = int(rng.integers(1, 6))
            H, g, lower, upper = random_problem(rng, m)
            ref, assign = enumerate_active_sets(H, g, lower, upper)
            binding += int(np.any(assign > 0))
            r = solve(H, g, lower, upper, rng.normal(size=m))
            assert bool(r.ok) and bool(r.converged)
            np.testing.assert_allclose(r.x, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
            # clamped exactly where the reference holds a bound (gradient pushing outward)
            np.testing.assert_array_equal(~np.asarray(r.free), assign > 0)
    assert binding >= 40  # most problems have binding bounds


def test_matches_lbfgsb_on_larger_problems():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        for _ in range(5):
            H, g, lower, upper = random_problem(rng, 12)
            ref = scipy.optimize.minimize(lambda x: (0.5 * x @ H @ x + g @ x, H @ x + g), np.zeros(12), jac=True,
                                          method="L-BFGS-B", bounds=list(zip(lower, upper)),
                                          options=dict(ftol=1e-16, gtol=1e-13, maxiter=10000))
            r = boxqp(H, g, lower, upper)
            value = 0.5 * r.x @ H @ r.x + g @ r.x
            assert np.sum(np.isclose(ref.x, lower) | np.isclose(ref.x, upper)) >= 2  # the box binds
            np.testing.assert_allclose(r.x, ref.x, rtol=1e-6, atol=1e-6 * np.abs(ref.x).max())
            assert float(value) <= ref.fun + 1e-12 * abs(ref.fun)


def test_clamped_set_is_chosen_by_the_gradient_not_by_the_unconstrained_step():
    # The unconstrained minimizer (1.2, -1.4) leaves the box in both coordinates, but at the optimum only x2
    # sits at its bound: with x2 = -1 the best x1 is 1.2 - 0.9 (-1 + 1.4) = 0.84, inside the box. Clamping
    # every coordinate whose Newton step leaves the box (one active-set pass) would put x1 at 1.
    with jax.enable_x64(True):
        H = np.array([[1.0, 0.9], [0.9, 1.0]])
        g = -H @ np.array([1.2, -1.4])
        r = boxqp(H, g, -np.ones(2), np.ones(2))
        np.testing.assert_allclose(r.x, [0.84, -1.0], rtol=1e-12)
        np.testing.assert_array_equal(r.free, [True, False])
        np.testing.assert_allclose(r.x, enumerate_active_sets(H, g, -np.ones(2), np.ones(2))[0], rtol=1e-12)


def test_warm_starts_inside_and_outside_the_box_reach_the_same_solution():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        H, g, lower, upper = random_problem(rng, 5)
        ref, _ = enumerate_active_sets(H, g, lower, upper)
        for x0 in (None, np.zeros(5), 10.0 * rng.normal(size=5), upper, lower, ref):
            np.testing.assert_allclose(boxqp(H, g, lower, upper, x0).x, ref, rtol=1e-9, atol=1e-12)
        assert int(boxqp(H, g, lower, upper, ref).iterations) <= 1  # started at the solution


def test_free_rows_solve_with_the_free_block_and_clamped_rows_are_zero():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        H, g, lower, upper = random_problem(rng, 5)
        r = boxqp(H, g, lower, upper)
        free = np.asarray(r.free)
        assert 0 < free.sum() < 5
        rhs = rng.normal(size=(5, 3))
        expected = np.zeros((5, 3))
        expected[free] = np.linalg.solve(H[np.ix_(free, free)], rhs[free])
        np.testing.assert_allclose(solve_free(r.chol, r.free, rhs), expected, rtol=1e-10, atol=1e-12)
        grad = g + H @ np.asarray(r.x)
        np.testing.assert_array_equal(clamped_set(r.x, grad, lower, upper), ~free)
        assert np.abs(grad[free]).max() < 1e-10


def test_jit_and_vmap_over_a_batch_of_problems():
    rng = np.random.default_rng(4)
    problems = [random_problem(rng, 3) for _ in range(8)]
    H, g, lower, upper = (jnp.asarray(np.stack(p), jnp.float32) for p in zip(*problems))
    batch = jax.jit(jax.vmap(boxqp))(H, g, lower, upper)
    for i, (Hi, gi, li, ui) in enumerate(problems):
        ref, _ = enumerate_active_sets(Hi, gi, li, ui)
        np.testing.assert_allclose(batch.x[i], ref, rtol=1e-4, atol=1e-5)  # float32
        np.testing.assert_allclose(boxqp(H[i], g[i], lower[i], upper[i]).x, batch.x[i], rtol=1e-5, atol=1e-6)
    assert batch.x.dtype == jnp.float32 and bool(jnp.all(batch.ok))


def test_positive_definite_on_the_free_subspace_is_enough_and_otherwise_reported():
    H = jnp.array([[2.0, 0.0], [0.0, -1.0]])  # indefinite; x2 has negative curvature
    g = jnp.array([1.0, -1.0])
    lower, upper = -jnp.ones(2), jnp.ones(2)
    # from x2 at its upper bound the gradient -1 - 1 pushes it outward: clamped, H_ff = [2] is PD
    r = boxqp(H, g, lower, upper, jnp.array([0.0, 1.0]))
    assert bool(r.ok)
    np.testing.assert_allclose(r.x, [-0.5, 1.0], rtol=1e-6)
    # from the origin nothing is clamped and H itself is not PD: reported, no step taken
    r = boxqp(H, g, lower, upper)
    assert not bool(r.ok) and int(r.iterations) == 0


def test_unbounded_sides_give_the_newton_solution():
    with jax.enable_x64(True):
        H = np.array([[3.0, 1.0], [1.0, 2.0]])
        g = np.array([1.0, -2.0])
        r = boxqp(H, g, np.full(2, -np.inf), np.full(2, np.inf))
        np.testing.assert_allclose(r.x, -np.linalg.solve(H, g), rtol=1e-12)
        assert bool(jnp.all(r.free)) and int(r.iterations) == 1
