"""Networks as Equinox modules: MLPs, policies, critics, ensembles.

Each module acts on one unbatched input (``jax.vmap`` outside), takes an
explicit ``key`` at construction, and is a pytree, so target networks are a
``jax.tree.map`` and ensembles a ``vmap``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.types import Array, PRNGKey

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "gelu": jax.nn.gelu,
}


def activation(name: str) -> Callable[[Array], Array]:
    """The elementwise activation function called ``name`` (one of :data:`ACTIVATIONS`), or a ``ValueError``
    listing them."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class MLP(eqx.Module):
    """Fully connected network ``in_size -> hidden... -> out_size`` with a linear output."""

    layers: tuple[eqx.nn.Linear, ...]
    act: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, hidden: Sequence[int], *, key: PRNGKey, act: str = "tanh",
                 final_scale: float = 1.0):
        sizes = [in_size, *hidden, out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        if final_scale != 1.0:  # small last layer: near-zero initial outputs (common for policies)
            last = layers[-1]
            layers[-1] = eqx.tree_at(lambda l: (l.weight, l.bias), last, (last.weight * final_scale, last.bias * 0))
        self.layers = tuple(layers)
        self.act = activation(act)

    def __call__(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


def as_bounds(value, size: int | None = None) -> tuple[float, ...]:
    """An action bound as a tuple of floats (broadcast to ``size``): a static, never-trained module field."""
    arr = np.asarray(value, np.float64).reshape(-1)
    if size is not None:
        arr = np.broadcast_to(arr, (size,))
    return tuple(float(x) for x in arr)


class DeterministicPolicy(eqx.Module):
    """``a = low + (tanh(mlp(obs)) + 1) / 2 * (high - low)``: always inside the action box.

    The box is a static field (a tuple of floats), so it is a constant of the module, never a parameter.
    """

    net: MLP
    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, obs_dim: int, action_dim: int, low, high, hidden: Sequence[int] = (64, 64), *,
                 key: PRNGKey, act: str = "tanh", final_scale: float = 0.1):
        self.net = MLP(obs_dim, action_dim, hidden, key=key, act=act, final_scale=final_scale)
        self.low, self.high = as_bounds(low, action_dim), as_bounds(high, action_dim)

    def box(self, dtype=jnp.float32) -> tuple[Array, Array]:
        """``(low, high)`` as arrays."""
        return jnp.asarray(self.low, dtype), jnp.asarray(self.high, dtype)

    def __call__(self, obs: Array) -> Array:
        low, high = self.box(obs.dtype)
        return low + (jnp.tanh(self.net(obs)) + 1.0) * 0.5 * (high - low)


class QCritic(eqx.Module):
    """``Q(s, a)``: an MLP on the concatenated observation and action, scalar output."""

    net: MLP

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256), *, key: PRNGKey,
                 act: str = "relu"):
        self.net = MLP(obs_dim + action_dim, 1, hidden, key=key, act=act)

    def __call__(self, obs: Array, action: Array) -> Array:
        return self.net(jnp.concatenate([obs, action]))[0]


class VCritic(eqx.Module):
    """``V(s)``: an MLP on the observation (the entries ``angles`` as their cos and sin), scalar output."""

    net: MLP
    angles: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), *, key: PRNGKey, act: str = "relu",
                 angles: Sequence[int] = ()):
        self.angles = tuple(angles)
        self.net = MLP(obs_dim + len(self.angles), 1, hidden, key=key, act=act)

    def __call__(self, obs: Array) -> Array:
        return self.net(angle_features(obs, self.angles))[0]


def make_ensemble(factory: Callable[[PRNGKey], eqx.Module], key: PRNGKey, size: int) -> eqx.Module:
    """``size`` independently initialized copies stacked on a leading axis (call with ``ensemble_apply``)."""
    return eqx.filter_vmap(factory)(jax.random.split(key, size))


def ensemble_apply(ensemble: eqx.Module, *args: Array) -> Array:
    """Apply every member of a stacked ensemble to the same inputs; outputs get a leading member axis."""
    return eqx.filter_vmap(lambda m: m(*args))(ensemble)


def soft_update(target: eqx.Module, online: eqx.Module, tau: float) -> eqx.Module:
    """Polyak averaging ``target <- (1 - tau) target + tau online`` over the array leaves."""
    t_arr, t_static = eqx.partition(target, eqx.is_array)
    o_arr = eqx.filter(online, eqx.is_array)
    new = jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, t_arr, o_arr)
    return eqx.combine(new, t_static)


class LinearPolicy(eqx.Module):
    """``a = K obs``: linear state feedback without bias or squashing (the LQR policy class, ``K = -K_lqr``)."""

    gain: Array

    def __init__(self, obs_dim: int, action_dim: int, *, key: PRNGKey, scale: float = 0.0):
        self.gain = scale * jax.random.normal(key, (action_dim, obs_dim))

    def __call__(self, obs: Array) -> Array:
        return self.gain @ obs


def angle_features(obs: Array, angles: Sequence[int]) -> Array:
    """``obs`` with each entry listed in ``angles`` replaced by its (cos, sin): a 2*pi-periodic network input
    (``obs`` itself where ``angles`` is empty; NumPy in, NumPy out)."""
    angles = tuple(angles)
    if not angles:
        return obs
    xp = np if isinstance(obs, np.ndarray) else jnp
    keep = [i for i in range(obs.shape[-1]) if i not in angles]
    return xp.concatenate([obs[..., keep], xp.cos(obs[..., angles]), xp.sin(obs[..., angles])], axis=-1)


class AngleFeaturePolicy(eqx.Module):
    """``policy(angle_features(obs, angles))``: a policy whose input angles (e.g. an unwrapped pole angle) are periodic."""

    policy: eqx.Module
    angles: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, obs: Array) -> Array:
        return self.policy(angle_features(obs, self.angles))

    def box(self, dtype=jnp.float32) -> tuple[Array, Array]:
        """The wrapped policy's action box ``(low, high)``."""
        return self.policy.box(dtype)
