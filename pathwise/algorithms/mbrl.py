"""Model-based RL: the lecture's four-step loop with BPTT through the frozen learned model.

1. run π₀ (uniformly random actions) to collect ``D = {(x, u, x')}``;
2. fit ``f_φ`` minimizing ``Σ ||f_φ(x, u) − x'||²``;
3. backpropagate through the frozen ``f_φ`` into the deterministic policy ``π_θ``:
   maximize ``J(θ) = 1/N Σ_i Σ_{t<H} γ^t r(x_t, π_θ(x_t))``, ``x_{t+1} = f_φ(x_t, π_θ(x_t))``,
   from ``N`` start states ``x_0`` drawn from ``D`` (``policy_steps`` Adam steps per iteration);
4. run ``π_θ`` (plus Gaussian exploration noise) and append the visited tuples to ``D``; repeat.

Steps 1, 2 and 4 are the model-based loop (:mod:`pathwise.loops.model_based`); this file is step 3, an
``update`` on ``ModelData``. ``J(θ)`` is the value-gradient objective ``J_H`` with the zero bootstrap
(:func:`pathwise.algorithms.svg_core.value_gradient_objective`) for a deterministic policy. Only the
reward (and termination) is known (``pathwise.registry``); the environment is a black box, also for a
``pathwise/...`` id.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise import optim, replay
from pathwise.algorithms.base import AlgorithmInfo, CommonConfig
from pathwise.algorithms.bptt import squashed_policy
from pathwise.algorithms.svg_core import value_gradient_objective, zero_bootstrap
from pathwise.config import at_least, positive, unit_interval
from pathwise.loops.model_based import ModelData, ModelOptions, mirror_half
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy
from pathwise.spec import EnvSpec
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("mbrl", loops=("model_based",),
                     summary="Model-based RL: BPTT through a learned dynamics model (collect, fit, improve).")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, ModelOptions):
    """MBRL options (defaults for Pendulum-v1)."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "actor_lr"}  # before 0.3

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the deterministic tanh policy."""
    horizon: int = 50
    """Length H of the imagined rollouts that BPTT differentiates through."""
    gamma: float = 0.99
    """Discount of the imagined return."""
    num_starts: int = 64
    """Start states x₀ drawn from D per policy step."""
    policy_steps: int = 200
    """Adam steps on the policy per iteration (per real episode); the most when ``policy_tol > 0``."""
    policy_tol: float = 0.0
    """If > 0, the policy steps run in chunks of ``policy_chunk`` and stop once a chunk's mean imagined return
    is not above the best earlier chunk's by ``policy_tol`` × its magnitude (the return stopped improving)."""
    policy_chunk: int = 25
    """Adam steps per chunk of the early-stopping test (``policy_tol > 0``; ``policy_steps`` is rounded up to whole
    chunks)."""
    explore_std: float = 0.1
    """Std of the Gaussian exploration noise on real actions, as a fraction of the action range."""
    actor_lr: float = 1e-3
    """Adam step size of the policy."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of the policy update (0 disables)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "horizon", "num_starts", "policy_steps", "policy_chunk",
                                           "actor_lr") + \
            at_least(self, 0, "policy_tol", "explore_std", "max_grad_norm") + unit_interval(self, "gamma")


class State(NamedTuple):
    """Everything MBRL learns (the model and D live in the loop's carry)."""

    policy: DeterministicPolicy | AngleFeaturePolicy
    opt_state: PyTree
    explore_std: Array  # of the behaviour policy's Gaussian noise, as a fraction of the action range


def imagined_return(policy: eqx.Module, system: System, starts: Array, horizon: int, gamma: float,
                    key: PRNGKey | None = None) -> Array:
    """``J(θ) = 1/N Σ_i Σ_{t<H} γ^t r(x_t, π_θ(x_t))``, ``x_{t+1} = f_φ(x_t, π_θ(x_t))`` (lecture step 3, f_φ frozen).

    ``J_H`` of :func:`~pathwise.algorithms.svg_core.value_gradient_objective` with the zero bootstrap, no
    model noise and a deterministic policy (policy noise of width 0). With ``key``, rollout ``i`` runs on
    ``system.sample(k_i)`` (a learned ensemble's trajectory sampling, ``LearnedModel.sample``).
    """
    xis = jnp.zeros((horizon + 1, 0), starts.dtype)
    zetas = jnp.zeros((horizon, system.state_dim), starts.dtype)

    def one(x0, k):
        rollout_system = system if k is None else system.sample(k)
        return value_gradient_objective(rollout_system, lambda obs, xi: policy(obs), zero_bootstrap, x0, xis, zetas,
                                        gamma).objective

    keys = jax.random.split(key, starts.shape[0]) if key is not None and hasattr(system, "sample") else None
    return jax.vmap(one)(starts, keys).mean()


def explore(policy: DeterministicPolicy | AngleFeaturePolicy, obs: Array, key: PRNGKey,
            explore_std: float | Array) -> Array:
    """π_θ(x) plus Gaussian noise of std ``explore_std`` × the action range, clipped into the box."""
    return explore_from_noise(policy, obs, jax.random.normal(key, policy.box(obs.dtype)[0].shape, obs.dtype),
                              explore_std)


def explore_from_noise(policy: DeterministicPolicy | AngleFeaturePolicy, obs: Array, noise: Array,
                       explore_std: float | Array) -> Array:
    """π_θ(x) plus ``explore_std`` × the action range × the standard-normal ``noise``, clipped into the box."""
    low, high = policy.box(obs.dtype)
    return jnp.clip(policy(obs) + explore_std * (high - low) * noise, low, high)


def optimizer(config: Config) -> optax.GradientTransformation:
    """The policy's optimizer: Adam at ``actor_lr``, gradients clipped to global norm ``max_grad_norm`` (if > 0)."""
    return optim.adam(config.actor_lr, config.max_grad_norm)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A fresh deterministic tanh policy in the action box (seeing unwrapped angles as cos, sin) and its Adam state."""
    policy = squashed_policy(key, spec, config.hidden, config.angle_features)
    return State(policy, optim.init(optimizer(config), policy), jnp.asarray(config.explore_std, jnp.float32))


def _policy_step(data: ModelData, config: Config):
    """One Adam step ascending ``J(θ)`` from ``num_starts`` start states of D: ``(policy, opt) -> (policy, opt)``."""

    def step(carry, key):
        policy, opt_state = carry
        starts = mirror_half(replay.sample(data.buffer, key, config.num_starts).obs, jax.random.fold_in(key, 2),
                             config)
        value, grads = eqx.filter_value_and_grad(imagined_return)(policy, data.system, starts, config.horizon,
                                                                  config.gamma, jax.random.fold_in(key, 1))
        grads = jax.tree.map(jnp.negative, grads)  # ascend J
        policy, opt_state = optim.apply(policy, grads, opt_state, optimizer(config))
        return (policy, opt_state), (value, optax.tree.norm(optim.params(grads)))

    return step


def update(state: State, data: ModelData, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """Lecture step 3: ``policy_steps`` Adam steps on ``J(θ)`` through the frozen model (early stopping if
    ``policy_tol > 0``); a non-finite gradient skips its step (counted)."""
    step = _policy_step(data, config)
    carry = (state.policy, state.opt_state)
    if config.policy_tol <= 0:
        (policy, opt_state), (values, norms) = jax.lax.scan(step, carry, jax.random.split(key, config.policy_steps))
        last, norm, steps = values[-1], norms.mean(), jnp.asarray(config.policy_steps, jnp.float32)
    else:
        (policy, opt_state), last, norm, steps = _until_no_improvement(step, carry, key, config)
    metrics = {"imagined_return": last, "grad_norm": norm, "policy_steps": steps,
               "skipped_total": optim.skipped(opt_state)}
    return state._replace(policy=policy, opt_state=opt_state), metrics


def _until_no_improvement(step, carry, key: PRNGKey, config: Config):
    """Chunks of ``policy_chunk`` steps while the chunk-mean imagined return still improves by ``policy_tol``."""
    chunk = min(config.policy_chunk, config.policy_steps)
    n_chunks = -(-config.policy_steps // chunk)
    params, static = eqx.partition(carry, eqx.is_array)

    def run_chunk(loop):
        i, params, best, _, _, _ = loop
        carry, (values, norms) = jax.lax.scan(step, eqx.combine(params, static),
                                              jax.random.split(jax.random.fold_in(key, i), chunk))
        mean = values.mean()
        improved = (i == 0) | (mean > best + config.policy_tol * jnp.abs(best))
        return i + 1, eqx.filter(carry, eqx.is_array), jnp.maximum(best, mean), improved, values[-1], norms.mean()

    def keep_going(loop):
        return (loop[0] < n_chunks) & loop[3]

    zero = jnp.zeros((), jnp.float32)
    init = (jnp.zeros((), jnp.int32), params, jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(True), zero, zero)
    i, params, _, _, last, norm = jax.lax.while_loop(keep_going, run_chunk, init)
    return eqx.combine(params, static), last, norm, (i * chunk).astype(jnp.float32)


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """``π_θ(x)``, plus Gaussian exploration noise (``explore_std``) when not ``deterministic``."""
    if deterministic:
        return state.policy(obs)
    return explore(state.policy, obs, key, state.explore_std)


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The exploring action for given standard-normal ``noise`` (shape ``(action_dim,)``; the model-based loop's
    real episodes with ``noise_color`` > 0 pass time-correlated noise)."""
    return explore_from_noise(state.policy, obs, noise, state.explore_std)


__all__ = ["Config", "INFO", "State", "act", "act_from_noise", "explore", "explore_from_noise", "imagined_return",
           "init", "optimizer", "update"]
