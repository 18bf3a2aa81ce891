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

Many seeds at once: :func:`train_seeds` jits the whole training loop and ``vmap``s it over
seeds (one XLA program); with several devices the seed axis is sharded across them.

Pure core: ``Config``, ``State``, :func:`bptt_loss`, :func:`init`, :func:`update`,
:func:`train_steps`, :func:`train_seeds`. The ``BPTT`` learner wraps it for the driver/CLI.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise import systems as pw_systems
from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy, LinearPolicy
from pathwise.rollout import rollout
from pathwise.seeds import seed_keys, train_vmapped  # noqa: F401 (bptt.seed_keys predates pathwise.seeds)
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

# ----------------------------------------------------------------------------- config and state

Policy = DeterministicPolicy | LinearPolicy | AngleFeaturePolicy


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """Options of BPTT; the defaults train a Pendulum-v1 swing-up policy in well under a minute on 2 CPU cores."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the tanh MLP policy."""
    horizon: int = 50
    """Steps unrolled (and backpropagated through) per update: a window if carry_state, else whole rollouts."""
    batch_size: int = 128
    """Initial states (parallel rollouts) per update; the loss is the mean over them."""
    learning_rate: float = 3e-3
    """Peak Adam learning rate."""
    schedule: Literal["constant", "cosine", "warmup"] = "cosine"
    """Learning-rate schedule: constant; cosine decay to final_lr_fraction over schedule_updates; or linear
    warmup over warmup_updates followed by the cosine decay."""
    schedule_updates: int = 2000
    """Updates over which the cosine decays (the rate stays at its final value afterwards)."""
    warmup_updates: int = 50
    """Linear warmup length (schedule='warmup' only)."""
    final_lr_fraction: float = 0.05
    """Learning rate at the end of the cosine decay, as a fraction of learning_rate."""
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
    """Gradient updates per train_iteration, run as one lax.scan inside one jitted call."""
    angle_features: tuple[int, ...] | None = None
    """Observation entries that are unwrapped angles, given to the MLP as (cos, sin); None = the system's
    known ones (theta of CartPoleSwingUp), () = none."""
    start_spread: tuple[float, ...] | None = None
    """Half-widths of a uniform box added to every state ``system.reset`` draws for *training* (one per state
    entry; None = the system's own initial distribution). A broad box (e.g. every pole angle) lets the policy
    learn the easy part of a task (balancing near the goal) early, which then gives the hard part (the
    swing-up) a gradient toward the goal; evaluation always uses the system's own reset."""
    linear_policy: bool = False
    """Use linear state feedback ``a = K obs`` (no bias, no squashing, K starts at 0) instead of the MLP;
    the optimal policy class of LQR problems."""


class State(NamedTuple):
    """Everything BPTT carries between updates (a pytree of arrays and Equinox modules)."""

    policy: Policy
    opt_state: PyTree
    states: Array  # (batch_size, state_dim) where the next window starts (used when carry_state)
    episode_steps: Array  # (batch_size,) steps each carried episode has run
    updates: Array  # gradient updates applied (skipped non-finite ones excluded)
    key: PRNGKey
    env_steps: Array  # simulated system steps consumed so far


def validate_config(config: Config) -> None:
    """A ValueError naming the bad option and the fix, or nothing."""
    checks = [
        (config.horizon >= 1, f"horizon={config.horizon} must be >= 1"),
        (config.batch_size >= 1, f"batch_size={config.batch_size} must be >= 1"),
        (config.learning_rate > 0, f"learning_rate={config.learning_rate} must be positive"),
        (config.schedule in ("constant", "cosine", "warmup"),
         f"schedule={config.schedule!r} must be one of 'constant', 'cosine', 'warmup'"),
        (config.schedule_updates >= 1, f"schedule_updates={config.schedule_updates} must be >= 1"),
        (config.max_grad_norm >= 0, f"max_grad_norm={config.max_grad_norm} must be >= 0 (0 disables clipping)"),
        (config.truncate_every >= 0, f"truncate_every={config.truncate_every} must be >= 0 (0 = no truncation)"),
        (0.0 < config.discount <= 1.0, f"discount={config.discount} must be in (0, 1]"),
        (config.updates_per_iteration >= 1, f"updates_per_iteration={config.updates_per_iteration} must be >= 1"),
        (config.start_spread is None or all(w >= 0 for w in config.start_spread),
         f"start_spread={config.start_spread} must hold non-negative half-widths (or be None)"),
        (not config.float64 or jax.config.jax_enable_x64,
         "float64=True needs JAX's x64 mode; call pathwise.enable_x64() before building the learner"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid BPTT config: {message}.")


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


# ----------------------------------------------------------------------------- init / update


def learning_rate_schedule(config: Config) -> optax.Schedule:
    """The configured schedule as a function of the number of applied updates."""
    peak, end = config.learning_rate, config.learning_rate * config.final_lr_fraction
    if config.schedule == "constant":
        return optax.constant_schedule(peak)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, config.schedule_updates, alpha=config.final_lr_fraction)
    decay = max(config.schedule_updates, config.warmup_updates + 1)
    return optax.warmup_cosine_decay_schedule(0.0, peak, config.warmup_updates, decay, end)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Global-norm clipping (if enabled) followed by Adam with the configured schedule."""
    adam = optax.adam(learning_rate_schedule(config))
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam) if config.max_grad_norm > 0 else adam


def trainable(policy: Policy) -> tuple[PyTree, PyTree]:
    """``(params, static)`` of the policy: its floating arrays except the action bounds, which are not trained."""

    def is_param(path, leaf):
        return eqx.is_inexact_array(leaf) and getattr(path[-1], "name", None) not in ("low", "high")

    return eqx.partition(policy, jax.tree_util.tree_map_with_path(is_param, policy))


def make_policy(key: PRNGKey, system: System, config: Config) -> Policy:
    """The tanh MLP policy squashed into the system's action box, or ``a = K obs`` (in float64 if configured)."""
    angles = observation_angles(system, config)
    if config.linear_policy:
        policy = LinearPolicy(system.obs_dim, system.action_dim, key=key)
    else:
        policy = DeterministicPolicy(system.obs_dim + len(angles), system.action_dim, system.action_low,
                                     system.action_high, config.hidden, key=key)
        policy = AngleFeaturePolicy(policy, angles) if angles else policy
    return cast_floats(policy, config)


#: Observation entries that are unwrapped angles, per system (fed to the MLP as cos/sin).
UNWRAPPED_ANGLES: dict[str, tuple[int, ...]] = {"CartPoleSwingUp": (2,)}


def observation_angles(system: System, config: Config) -> tuple[int, ...]:
    """``config.angle_features`` or, when None, the system's known unwrapped-angle observation entries."""
    angles = UNWRAPPED_ANGLES.get(system.name, ()) if config.angle_features is None else config.angle_features
    bad = [i for i in angles if not 0 <= i < system.obs_dim]
    if bad:
        raise ValueError(f"angle_features {tuple(angles)} has indices outside the {system.obs_dim}-dim "
                         f"observation of {system.name}: {bad}.")
    return tuple(angles)


def cast_floats(tree: Any, config: Config) -> Any:
    """Floating array leaves in the run's precision (float64 if ``config.float64``)."""
    dtype = jnp.float64 if config.float64 else jnp.float32
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


def reset_states(system: System, key: PRNGKey, config: Config) -> Array:
    """``batch_size`` training start states: ``system.reset`` plus uniform noise in ``start_spread`` if set."""
    if config.start_spread is None:  # the system's own initial distribution (same key use as always)
        return cast_floats(jax.vmap(system.reset)(jax.random.split(key, config.batch_size)), config)
    k_reset, k_spread = jax.random.split(key)
    states = jax.vmap(system.reset)(jax.random.split(k_reset, config.batch_size))
    if len(config.start_spread) != system.state_dim:
        raise ValueError(f"start_spread has {len(config.start_spread)} entries but {system.name} has a "
                         f"{system.state_dim}-dim state: give one half-width per state entry.")
    width = jnp.asarray(config.start_spread, states.dtype)
    states = states + width * jax.random.uniform(k_spread, states.shape, states.dtype, -1.0, 1.0)
    return cast_floats(states, config)


def init(key: PRNGKey, system: System, config: Config) -> State:
    """Fresh policy, optimizer state and ``batch_size`` initial states."""
    k_policy, k_states, key = jax.random.split(key, 3)
    policy = make_policy(k_policy, system, config)
    opt_state = make_optimizer(config).init(trainable(policy)[0])
    zero = jnp.zeros((), jnp.int32)
    return State(policy, opt_state, reset_states(system, k_states, config),
                 jnp.zeros(config.batch_size, jnp.int32), zero, key, zero)


def window_starts(state: State, system: System, key: PRNGKey, config: Config) -> tuple[Array, Array]:
    """Start states and step counters of this update's rollouts (fresh, or carried with finished episodes reset)."""
    fresh = reset_states(system, key, config)
    if not config.carry_state:
        return fresh, jnp.zeros(config.batch_size, jnp.int32)
    done = state.episode_steps >= system.episode_length
    return jnp.where(done[:, None], fresh, state.states), jnp.where(done, 0, state.episode_steps)


def update(state: State, key: PRNGKey, system: System, config: Config) -> tuple[State, dict[str, Array]]:
    """One gradient step on :func:`bptt_loss`; a non-finite loss or gradient skips the step (counted)."""
    k_reset, k_noise = jax.random.split(key)
    starts, steps = window_starts(state, system, k_reset, config)
    noise_keys = jax.random.split(k_noise, config.batch_size)
    params, static = trainable(state.policy)
    loss_fn = lambda p: bptt_loss(eqx.combine(p, static), system, starts, noise_keys, config)  # noqa: E731
    (loss, (mean_return, finals)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    raw_norm = optax.tree.norm(grads)
    updates, new_opt = make_optimizer(config).update(grads, state.opt_state, params)
    new_params = eqx.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(raw_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    finals = jnp.where(jnp.all(jnp.isfinite(finals), axis=-1, keepdims=True), finals, starts)
    new_state = State(
        policy=eqx.combine(keep(new_params, params), static),
        opt_state=keep(new_opt, state.opt_state),
        states=jax.lax.stop_gradient(finals),
        episode_steps=steps + config.horizon,
        updates=state.updates + finite.astype(jnp.int32),
        key=state.key,
        env_steps=state.env_steps + config.batch_size * config.horizon,
    )
    metrics = {"loss": loss, "mean_return": mean_return, "grad_norm": raw_norm,
               "nonfinite_skipped": 1 - finite.astype(jnp.int32), "lr": learning_rate_schedule(config)(state.updates)}
    return new_state, metrics


def run_updates(state: State, system: System, config: Config, num_updates: int) -> tuple[State, dict[str, Array]]:
    """``num_updates`` updates as one ``lax.scan``; keys come from the state's key. Metrics are stacked per update."""
    key, sub = jax.random.split(state.key)
    state = state._replace(key=key)
    keys = jax.random.split(sub, num_updates)
    return jax.lax.scan(lambda s, k: update(s, k, system, config), state, keys)


@eqx.filter_jit
def train_steps(state: State, system: System, config: Config) -> tuple[State, dict[str, Array]]:
    """``config.updates_per_iteration`` updates in one jitted call; metrics averaged (skips summed)."""
    state, metrics = run_updates(state, system, config, config.updates_per_iteration)
    summary = {k: v.mean() for k, v in metrics.items()}
    summary["nonfinite_skipped"] = metrics["nonfinite_skipped"].sum()
    return state, summary


# ----------------------------------------------------------------------------- many seeds at once


@eqx.filter_jit
def _train_seeds(keys: PRNGKey, system: System, config: Config, num_updates: int):
    def one_seed(key):
        return run_updates(init(key, system, config), system, config, num_updates)

    return jax.vmap(one_seed)(keys)


@eqx.filter_jit
def _train_one(key: PRNGKey, system: System, config: Config, num_updates: int):
    return run_updates(init(key, system, config), system, config, num_updates)


def train_seed(system: System, config: Config, seed: int, num_updates: int) -> tuple[State, dict[str, Array]]:
    """One seed's run as one jitted program (what :func:`train_seeds` computes for row ``seed``)."""
    validate_config(config)
    return _train_one(jax.random.key(seed), system, config, int(num_updates))


def train_seeds(system: System, config: Config, seeds: int, num_updates: int,
                shard: bool | None = None, first_seed: int = 0) -> tuple[State, dict[str, Array]]:
    """Train ``seeds`` independent policies (seeds first_seed, first_seed+1, ...) as one jitted, vmapped program.

    Returns the final states stacked on a leading seed axis and the per-update metrics, shape
    ``(seeds, num_updates)``. Seed ``i`` gives the same result as ``init(jax.random.key(i), ...)``
    followed by ``num_updates`` updates. With several devices (and ``shard`` not False) the seed axis
    is sharded across them (:func:`pathwise.seeds.seed_keys`); the results do not change. On a CPU-only
    machine, :func:`pathwise.seeds.use_host_devices` before JAX starts gives one device per core.
    """
    validate_config(config)
    return train_vmapped(_train_seeds, system, config, seeds, num_updates, shard, first_seed)


def steps_per_update(config: Config) -> int:
    """Simulated system steps one update consumes (its batch of windows)."""
    return config.batch_size * config.horizon


# ----------------------------------------------------------------------------- the Learner


def make_system(env_id: str) -> System:
    """The differentiable system for a pathwise id or a Gymnasium id it reproduces, or a clear ValueError."""
    try:
        return pw_systems.make(env_id)
    except ValueError as err:
        raise ValueError(f"bptt needs known differentiable dynamics, but {env_id!r} has no pathwise System "
                         f"({err}). Use e.g. 'Pendulum-v1' or 'pathwise/CartPoleSwingUp-v0', or a model-based "
                         "learner ('mbrl', 'svg-inf') for black-box environments.") from err


class BPTT(Learner):
    """Backpropagation through time on a known ``System``; ``env_steps`` counts *simulated* system steps."""

    name = "bptt"
    Config = Config
    needs_system = True
    discrete_ok = False
    continuous_ok = True

    def __init__(self, env_id: str, config: Config | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        validate_config(self.config)
        self.system = make_system(env_id)
        if self.system.discrete:
            raise ValueError(f"bptt needs a continuous action space, but {env_id} is discrete; use "
                             "'pathwise/CartPoleSwingUp-v0' or 'svg0-discrete' for discrete actions.")
        self.state = init(jax.random.key(self.seed), self.system, self.config)

    def train_iteration(self) -> dict[str, float]:
        self.state, metrics = train_steps(self.state, self.system, self.config)
        self.env_steps = int(self.state.env_steps)
        out = {k: float(v) for k, v in metrics.items()}
        out["simulated_steps"] = float(self.config.updates_per_iteration * self.config.batch_size * self.config.horizon)
        return out

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        del deterministic  # the policy is deterministic
        dtype = jnp.float64 if self.config.float64 else jnp.float32
        return np.asarray(_act(self.state.policy, jnp.asarray(obs, dtype).reshape(self.system.obs_dim)),
                          np.float32)

    def get_state(self) -> State:
        return self.state

    def set_state(self, state: State) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)

    def describe(self) -> dict[str, Any]:
        return {"env_steps_are": "simulated steps through the known differentiable system",
                "updates": int(self.state.updates)}


@eqx.filter_jit
def _act(policy: Policy, obs: Array) -> Array:
    return policy(obs)
