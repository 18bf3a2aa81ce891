"""Linear dynamics with quadratic cost: the LQR test bed."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


#: Episode length of a LinearSystem unless ``horizon`` says otherwise.
DEFAULT_HORIZON = 200


class LinearSystem(System):
    """``x' = A x + B u (+ zeta)``, reward ``-(x^T Q x + u^T R u)``.

    The reward is the negative LQR stage cost, so maximizing return is
    minimizing the LQR cost and ``pw.control.lqr(A, B, Q, R)`` gives the optimal
    linear policy ``u = -K x``. Initial states are uniform in
    ``[-init_scale, init_scale]^n``. Actions are unbounded (``action_bound``
    only sets the Gymnasium action space).
    """

    A: Array
    B: Array
    Q: Array
    R: Array
    init_scale: float = 1.0
    noise_std: float = 0.0
    horizon: int = eqx.field(static=True, default=DEFAULT_HORIZON)
    action_bound: float = eqx.field(static=True, default=10.0)

    name: ClassVar[str] = "LinearSystem"

    def __init__(self, A, B, Q=None, R=None, *, init_scale=1.0, noise_std=0.0, horizon=DEFAULT_HORIZON,
                 action_bound=10.0):
        A, B = jnp.asarray(A), jnp.asarray(B)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"LinearSystem: A must be a square (n, n) matrix, got shape {A.shape}.")
        if B.ndim != 2 or B.shape[0] != A.shape[0]:
            raise ValueError(f"LinearSystem: B must have shape (n, m) with n = {A.shape[0]}, got {B.shape}.")
        n, m = B.shape
        Q = jnp.eye(n) if Q is None else jnp.asarray(Q)
        R = jnp.eye(m) if R is None else jnp.asarray(R)
        if Q.shape != (n, n):
            raise ValueError(f"LinearSystem: Q must have shape ({n}, {n}), got {Q.shape}.")
        if R.shape != (m, m):
            raise ValueError(f"LinearSystem: R must have shape ({m}, {m}), got {R.shape}.")
        for name, x in (("A", A), ("B", B), ("Q", Q), ("R", R)):
            if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"LinearSystem: {name} contains NaN or inf; every entry must be finite.")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"LinearSystem: horizon={horizon!r} must be a whole number of steps >= 1 (the episode "
                             f"length; default {DEFAULT_HORIZON}).")
        if isinstance(init_scale, (int, float)) and not init_scale >= 0:
            raise ValueError(f"LinearSystem: init_scale={init_scale!r} must be >= 0 (initial states are uniform in "
                             "[-init_scale, init_scale]).")
        self.A, self.B, self.Q, self.R = A, B, Q, R
        self.init_scale, self.noise_std = init_scale, noise_std
        self.horizon, self.action_bound = horizon, action_bound

    # Shapes come from the matrices (static: array shapes are known at trace time).
    @property
    def state_dim(self) -> int:  # type: ignore[override]
        return self.A.shape[0]

    @property
    def obs_dim(self) -> int:  # type: ignore[override]
        return self.A.shape[0]

    @property
    def action_dim(self) -> int:  # type: ignore[override]
        return self.B.shape[1]

    @property
    def episode_length(self) -> int:  # type: ignore[override]
        return self.horizon

    @property
    def action_low(self) -> np.ndarray:
        """``-action_bound`` in every entry: the Gymnasium action space only; the dynamics do not clip."""
        return np.full(self.action_dim, -self.action_bound, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        """``+action_bound`` in every entry: the Gymnasium action space only; the dynamics do not clip."""
        return np.full(self.action_dim, self.action_bound, np.float32)

    def initial_state(self, key: PRNGKey) -> Array:
        """x0 uniform in ``[-init_scale, init_scale]^n``, shape ``(n,)``."""
        return jax.random.uniform(key, (self.state_dim,), minval=-1.0, maxval=1.0) * self.init_scale

    def dynamics(self, state: Array, action: Array) -> Array:
        """``A x + B u``: state ``(n,)``, action ``(m,)``, unbounded."""
        return self.A @ state + self.B @ action

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``-(x^T Q x + u^T R u)``, the negative LQR stage cost (``next_state`` is not used)."""
        del next_state
        action = self.check_action(action)
        return -(state @ self.Q @ state + action @ self.R @ action)

    def observe(self, state: Array) -> Array:
        """The state itself: the system is fully observed."""
        return state

    def state_from_obs(self, obs: Array) -> Array:
        """The observation itself (``observe`` is the identity)."""
        return obs


def double_integrator(dt: float = 0.1, q: float = 1.0, r: float = 0.1, **kwargs) -> LinearSystem:
    """Position/velocity of a unit mass pushed by a force: the classic LQR example."""
    A = jnp.array([[1.0, dt], [0.0, 1.0]])
    B = jnp.array([[0.5 * dt**2], [dt]])
    return LinearSystem(A, B, q * jnp.eye(2), r * jnp.eye(1), **kwargs)


double_integrator.episode_length = DEFAULT_HORIZON  # for Gymnasium registration without building a system
