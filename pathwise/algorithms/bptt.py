"""BPTT: learning a policy by backpropagating through known dynamics.

Lecture, "Learning Control Policies through Backpropagation": with known, deterministic
dynamics ``f`` and a deterministic policy ``pi_theta``,

    min_theta  sum_t c(x_t, pi_theta(x_t)),   x_{t+1} = f(x_t, pi_theta(x_t)),

solved by gradient descent on ``theta`` where the gradient is backpropagated through the
whole unrolled trajectory (``pw.rollout.rollout`` under ``lax.scan``). Here ``c = -r``.

Two ways to unroll, both in :func:`update`:

* full episodes (``carry_state=False``): every update starts ``batch_size`` fresh episodes
  from ``system.reset`` and differentiates through ``horizon`` steps;
* short windows with carried state (``carry_state=True``, as Brax APG / SHAC): every update
  rolls ``horizon`` steps from where the previous window ended, so ``horizon`` can be much
  shorter than the episode (better-conditioned gradients); episodes that reached
  ``system.episode_length`` steps are reset at the start of the next window.

It runs in the simulated loop (:mod:`pathwise.loops.simulated`), which also trains many seeds as one
vmapped, sharded program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise import optim
from pathwise.algorithms.base import AlgorithmInfo, CommonConfig
from pathwise.config import at_least, one_of, positive, unit_interval
from pathwise.loops.simulated import SimulatedOptions
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy, LinearPolicy
from pathwise.rollout import rollout
from pathwise.spec import EnvSpec
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("bptt", loops=("simulated",),
                     summary="Backpropagation through time: a deterministic policy trained through the known dynamics.")

Policy = DeterministicPolicy | LinearPolicy | AngleFeaturePolicy


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, SimulatedOptions):
    """Options of BPTT; the defaults train a Pendulum-v1 swing-up policy in well under a minute on 2 CPU cores."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "lr"}  # before 0.3

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the tanh MLP policy."""
    horizon: int = 50
    """Steps unrolled (and backpropagated through) per update: a window if carry_state, else whole rollouts."""
    batch_size: int = 128
    """Initial states (parallel rollouts) per update; the loss is the mean over them."""
    lr: float = 3e-3
    """Peak Adam learning rate."""
    schedule: Literal["constant", "cosine", "warmup"] = "cosine"
    """Learning-rate schedule: constant; cosine decay to final_lr_fraction over schedule_updates; or linear
    warmup over warmup_updates followed by the cosine decay."""
    schedule_updates: int = 2000
    """Updates over which the cosine decays (the rate stays at its final value afterwards)."""
    warmup_updates: int = 50
    """Linear warmup length (schedule='warmup' only)."""
    final_lr_fraction: float = 0.05
    """Learning rate at the end of the cosine decay, as a fraction of lr."""
    max_grad_norm: float = 1.0
    """Global-norm gradient clipping threshold (0 disables); the metrics log the raw norm before clipping."""
    truncate_every: int = 0
    """If k > 0, stop gradients through the state every k steps (truncated BPTT); 0 = full backpropagation."""
    carry_state: bool = True
    """Roll each update's window from where the previous one ended (short windows, as Brax APG/SHAC); with
    False every update starts fresh episodes (set horizon to the episode length for the lecture's full BPTT)."""
    remat: bool = False
    """Rematerialize each step in the backward pass: O(1) memory per step for ~30% more compute."""
    discount: float = 1.0
    """Discount gamma of the return inside a window (1 = the undiscounted episode return)."""
    updates_per_iteration: int = 50
    """Gradient updates per iteration, run as one lax.scan inside one jitted call."""
    angle_features: tuple[int, ...] | None = None
    """Observation entries that are unwrapped angles, given to the MLP as (cos, sin); None = the environment's
    known ones (its registry record: theta of CartPoleSwingUp), () = none."""
    start_spread: tuple[float, ...] | None = None
    """Half-widths of a uniform box added to every state ``system.reset`` draws for *training* (one per state
    entry; None = the system's own initial distribution). A broad box (e.g. every pole angle) lets the policy
    learn the easy part of a task (balancing near the goal) early, which then gives the hard part (the
    swing-up) a gradient toward the goal; evaluation always uses the system's own reset."""
    linear_policy: bool = False
    """Use linear state feedback ``a = K obs`` (no bias, no squashing, K starts at 0) instead of the MLP;
    the optimal policy class of LQR problems."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "horizon", "batch_size", "lr", "schedule_updates") + \
            one_of(self, "schedule", ("constant", "cosine", "warmup")) + \
            at_least(self, 0, "max_grad_norm", "truncate_every", "warmup_updates") + \
            unit_interval(self, "discount") + \
            [(self.start_spread is None or all(w >= 0 for w in self.start_spread),
              f"start_spread={self.start_spread} must hold non-negative half-widths (or be None)")]


class State(NamedTuple):
    """Everything BPTT carries between updates."""

    policy: Policy
    opt_state: PyTree
    states: Array  # (batch_size, state_dim) where the next window starts (used when carry_state)
    episode_steps: Array  # (batch_size,) steps each carried episode has run
    updates: Array  # gradient updates applied (skipped non-finite ones excluded)


# ----------------------------------------------------------------------------- the loss


def bptt_loss(policy: Policy, system: System, states0: Array, noise_keys: PRNGKey,
              config: Config) -> tuple[Array, tuple[Array, Array]]:
    """``J(theta) = -1/B sum_b sum_{t<H} gamma^t r(x_t^b, pi_theta(x_t^b))``, ``x_{t+1} = f(x_t, pi_theta(x_t))``.

    Lecture, "Learning Control Policies through Backpropagation" (``min_theta sum_t c(x_t, pi_theta(x_t))``
    with ``c = -r``). Returns ``(loss, (undiscounted mean return, final states))``.
    """

    def one(state0, key):
        traj = rollout(system, policy, state0, config.horizon, key=key, truncate_every=config.truncate_every,
                       remat=config.remat)
        discounts = config.discount ** jnp.arange(config.horizon, dtype=traj.rewards.dtype)
        return (traj.rewards * discounts).sum(), traj.rewards.sum(), traj.final_state

    discounted, total, final = jax.vmap(one)(states0, noise_keys)
    return -discounted.mean(), (total.mean(), final)


# ----------------------------------------------------------------------------- init / update / act


def optimizer(config: Config) -> optax.GradientTransformation:
    """Adam with the configured schedule behind global-norm clipping (skipping non-finite steps)."""
    return optim.adam(config.lr, config.max_grad_norm, *_schedule_args(config))


def make_policy(key: PRNGKey, spec: EnvSpec, config: Config) -> Policy:
    """The tanh MLP policy squashed into the action box, or ``a = K obs`` (in float64 if configured)."""
    if config.linear_policy:
        return cast_floats(LinearPolicy(spec.obs_dim, spec.action_dim, key=key), config)
    return cast_floats(squashed_policy(key, spec, config.hidden, config.angle_features), config)


def squashed_policy(key: PRNGKey, spec: EnvSpec, hidden: tuple[int, ...],
                    angle_features: tuple[int, ...] | None = None) -> DeterministicPolicy | AngleFeaturePolicy:
    """A tanh MLP policy in the action box that sees unwrapped angles as (cos, sin).

    ``angle_features``: the observation entries that are unwrapped angles; None = the environment's
    known ones (``spec.angles``), () = none.
    """
    angles = spec.angle_entries(angle_features)
    policy = DeterministicPolicy(spec.obs_dim + len(angles), spec.action_dim, spec.action_low, spec.action_high,
                                 hidden, key=key)
    return AngleFeaturePolicy(policy, angles) if angles else policy


def cast_floats(tree: Any, config: Config) -> Any:
    """Floating array leaves in the run's precision (float64 if ``config.float64``)."""
    dtype = jnp.float64 if config.float64 else jnp.float32
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


def reset_states(system: System, key: PRNGKey, config: Config) -> Array:
    """``batch_size`` training start states: ``system.reset`` plus uniform noise in ``start_spread`` if set."""
    if config.start_spread is None:  # the system's own initial distribution
        return cast_floats(jax.vmap(system.reset)(jax.random.split(key, config.batch_size)), config)
    k_reset, k_spread = jax.random.split(key)
    states = jax.vmap(system.reset)(jax.random.split(k_reset, config.batch_size))
    if len(config.start_spread) != system.state_dim:
        raise ValueError(f"start_spread has {len(config.start_spread)} entries but {system.name} has a "
                         f"{system.state_dim}-dim state: give one half-width per state entry.")
    width = jnp.asarray(config.start_spread, states.dtype)
    states = states + width * jax.random.uniform(k_spread, states.shape, states.dtype, -1.0, 1.0)
    return cast_floats(states, config)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh policy, optimizer state and ``batch_size`` initial states."""
    if config.float64 and not jax.config.jax_enable_x64:
        raise ValueError("float64=True needs JAX's x64 mode; call pathwise.enable_x64() before building the run.")
    k_policy, k_states = jax.random.split(key)
    policy = make_policy(k_policy, spec, config)
    zero = jnp.zeros((), jnp.int32)
    return State(policy, optim.init(optimizer(config), policy), reset_states(spec.system, k_states, config),
                 jnp.zeros(config.batch_size, jnp.int32), zero)


def window_starts(state: State, system: System, key: PRNGKey, config: Config) -> tuple[Array, Array]:
    """Start states and step counters of this update's rollouts (fresh, or carried with finished episodes reset)."""
    fresh = reset_states(system, key, config)
    if not config.carry_state:
        return fresh, jnp.zeros(config.batch_size, jnp.int32)
    done = state.episode_steps >= system.episode_length
    return jnp.where(done[:, None], fresh, state.states), jnp.where(done, 0, state.episode_steps)


def update(state: State, system: System, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One gradient step on :func:`bptt_loss` through ``system``; a non-finite gradient skips the step (counted)."""
    k_reset, k_noise = jax.random.split(key)
    starts, steps = window_starts(state, system, k_reset, config)
    noise_keys = jax.random.split(k_noise, config.batch_size)
    (loss, (mean_return, finals)), grads = eqx.filter_value_and_grad(bptt_loss, has_aux=True)(
        state.policy, system, starts, noise_keys, config)
    policy, opt_state = optim.apply(state.policy, grads, state.opt_state, optimizer(config))
    finals = jnp.where(jnp.all(jnp.isfinite(finals), axis=-1, keepdims=True), finals, starts)
    applied = 1 - optim.last_skipped(opt_state)
    new = State(policy, opt_state, jax.lax.stop_gradient(finals), steps + config.horizon, state.updates + applied)
    lr = optim.schedule(config.lr, *_schedule_args(config))
    metrics = {"loss": loss, "mean_return": mean_return, "grad_norm": optax.tree.norm(optim.params(grads)),
               "lr": lr(state.updates) if callable(lr) else jnp.asarray(lr), "skipped_total": optim.skipped(opt_state)}
    return new, metrics


def _schedule_args(config: Config) -> tuple[int, float, int]:
    """``(decay_steps, final_fraction, warmup_steps)`` of ``optim.adam`` for the configured schedule."""
    decay = 0 if config.schedule == "constant" else config.schedule_updates
    return decay, config.final_lr_fraction, config.warmup_updates if config.schedule == "warmup" else 0


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The policy's action (deterministic either way)."""
    del key, deterministic
    dtype = jax.tree.leaves(eqx.filter(state.policy, eqx.is_inexact_array))[0].dtype
    return state.policy(jnp.asarray(obs, dtype)).astype(jnp.float32)


def steps_per_update(spec: EnvSpec, config: Config) -> int:
    """Simulated system steps one update consumes (its batch of windows)."""
    del spec
    return config.batch_size * config.horizon


__all__ = ["Config", "INFO", "State", "act", "bptt_loss", "init", "make_policy", "optimizer", "reset_states",
           "squashed_policy", "steps_per_update", "update", "window_starts"]
