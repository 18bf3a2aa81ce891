"""Imitation: policies learned from a trajectory optimizer (behaviour cloning, DAgger, joint optimization).

Lecture, "Learning Control Policies through Imitation": a policy ``pi_theta: x -> u`` fitted by supervised
learning, ``min_theta sum_i ||pi_theta(x^i) - u^i||^2``, to actions ``u^i`` of an optimal controller (here
MPC / iLQR on the known model, ``pathwise.control``). Three ways to choose the states ``x^i``:

* ``bc``: behaviour cloning, states the *expert* visits. The policy then visits states the expert never
  showed it and its errors compound.
* ``dagger``: DAgger (Ross et al., 2011): round 0 clones expert demonstrations; every later round runs the
  *policy*, asks the expert (MPC from each visited state) what it would have done there, aggregates those
  labels and refits, so the data covers the policy's own state distribution.
* ``joint``: joint trajectory and policy optimization, ``min_{u, x, theta} sum_t c(x_t, u_t)`` s.t.
  ``x_{t+1} = f(x_t, u_t)``, ``u_t = pi_theta(x_t)``, solved GPS-style by alternation: iLQR on the cost plus a
  penalty ``rho ||u_t - pi_theta(x_t)||^2`` (trajectories the policy can follow), then a supervised fit of
  ``pi_theta`` to them; ``rho`` grows every round, enforcing ``u_t = pi_theta(x_t)`` in the limit. The iLQR
  runs over a receding horizon by default (one full-episode solve with ``joint_receding=False``).

Everything is simulated through the known ``System``; ``env_steps`` counts simulated steps (as for bptt).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise import replay
from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.algorithms.bptt import make_system, observation_angles
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy
from pathwise.rollout import rollout
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

# ----------------------------------------------------------------------------- config and state


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """Options of the imitation learners; defaults are for Pendulum-v1 with an iLQR-MPC expert."""

    mode: Literal["bc", "dagger", "joint"] = "dagger"
    """bc: clone expert demonstrations; dagger: expert labels the policy's states; joint: iLQR with a
    policy penalty alternated with policy fits (GPS-style)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the tanh MLP policy."""
    angle_features: tuple[int, ...] | None = None
    """Observation entries that are unwrapped angles, given to the MLP as (cos, sin); None = the system's
    known ones (theta of CartPoleSwingUp), () = none."""
    rollouts_per_round: int = 16
    """Trajectories collected per round (one round per train_iteration), from random initial states."""
    rounds: int = 8
    """Rounds the dataset is sized for (its capacity is rounds x rollouts_per_round x episode length)."""
    horizon: int = 0
    """Length of each collected trajectory; 0 = the system's episode length."""
    fit_steps: int = 1500
    """Adam steps of the supervised fit after each round (minibatches from the aggregated data)."""
    fit_batch: int = 256
    """Minibatch size of the supervised fit."""
    learning_rate: float = 1e-3
    """Adam learning rate of the supervised fit."""
    expert_horizon: int = 30
    """Planning horizon of the MPC expert (bc, dagger)."""
    expert_iterations: int = 5
    """iLQR iterations per MPC step of the expert (warm-started from the shifted previous plan)."""
    rho0: float = 1e-3
    """Initial weight of the penalty rho ||u - pi(x)||^2 in the joint method."""
    rho_growth: float = 3.0
    """Factor by which rho grows after every joint round."""
    joint_receding: bool = True
    """Joint trajectory optimizer: True = iLQR over a receding horizon (``expert_horizon`` steps,
    ``expert_iterations`` warm-started iterations per step) on the penalized problem; False = one iLQR
    solve over the whole episode (``joint_iterations``; local minima of the 200-step Pendulum problem
    leave it far from a swing-up, see benchmarks section 35)."""
    joint_iterations: int = 50
    """iLQR iterations of the full-horizon solve (``joint_receding=False``)."""


class State(NamedTuple):
    """Policy, optimizer, aggregated dataset, round counter, key and simulated-step count."""

    policy: eqx.Module
    opt_state: PyTree
    data: replay.ReplayBuffer  # storage: (observation, action) pairs
    round: Array
    rho: Array
    key: PRNGKey
    env_steps: Array


def validate_config(config: Config) -> None:
    checks = [
        (config.mode in ("bc", "dagger", "joint"), f"mode={config.mode!r} must be 'bc', 'dagger' or 'joint'"),
        (config.rollouts_per_round >= 1, f"rollouts_per_round={config.rollouts_per_round} must be >= 1"),
        (config.rounds >= 1, f"rounds={config.rounds} must be >= 1"),
        (config.horizon >= 0, f"horizon={config.horizon} must be >= 0 (0 = the episode length)"),
        (config.fit_steps >= 1 and config.fit_batch >= 1, "fit_steps and fit_batch must be >= 1"),
        (config.learning_rate > 0, f"learning_rate={config.learning_rate} must be positive"),
        (config.expert_horizon >= 1, f"expert_horizon={config.expert_horizon} must be >= 1"),
        (config.rho0 > 0 and config.rho_growth >= 1, "rho0 must be > 0 and rho_growth >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid imitation config: {message}.")


# ----------------------------------------------------------------------------- the loss


def bc_loss(policy: eqx.Module, observations: Array, actions: Array) -> Array:
    """``L(theta) = 1/N sum_i ||pi_theta(x^i) - u^i||^2`` (lecture, "Learning Control Policies through Imitation")."""
    return jnp.mean(jnp.sum((jax.vmap(policy)(observations) - actions) ** 2, axis=-1))


def fit_policy(policy: eqx.Module, opt_state: PyTree, data: replay.ReplayBuffer, key: PRNGKey,
               config: Config) -> tuple[eqx.Module, PyTree, Array]:
    """``config.fit_steps`` Adam steps on :func:`bc_loss` over minibatches of the dataset; returns the last loss."""
    optimizer = optax.adam(config.learning_rate)
    params, static = trainable(policy)

    def step(carry, k):
        params, opt_state = carry
        obs, act = replay.sample(data, k, config.fit_batch)
        loss, grads = jax.value_and_grad(lambda p: bc_loss(eqx.combine(p, static), obs, act))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, config.fit_steps))
    return eqx.combine(params, static), opt_state, losses[-1]


def trainable(policy: eqx.Module) -> tuple[PyTree, PyTree]:
    """``(params, static)``: floating arrays except the action bounds."""

    def is_param(path, leaf):
        return eqx.is_inexact_array(leaf) and getattr(path[-1], "name", None) not in ("low", "high")

    return eqx.partition(policy, jax.tree_util.tree_map_with_path(is_param, policy))


# ----------------------------------------------------------------------------- experts


class Expert(NamedTuple):
    """A feedback controller with memory: ``carry = init(state)``, ``carry, action = step(carry, state)``."""

    init: Callable[[Array], Any]
    step: Callable[[Any, Array], tuple[Any, Array]]


def mpc_expert(system: System, config: Config) -> Expert:
    """Receding-horizon iLQR on the true model (``pathwise.control``), warm-started by shifting its plan."""
    from pathwise import control

    return control.mpc_expert(system, horizon=config.expert_horizon, iterations=config.expert_iterations)


def expert_rollout(system: System, expert: Expert, state0: Array, horizon: int) -> tuple[Array, Array]:
    """Run the expert itself for ``horizon`` steps: its states and actions (a demonstration)."""

    def step(carry, _):
        state, memory = carry
        memory, action = expert.step(memory, state)
        return (system.step(state, action), memory), (state, action)

    _, (states, actions) = jax.lax.scan(step, (state0, expert.init(state0)), None, length=horizon)
    return states, actions


def expert_labels(expert: Expert, states: Array) -> Array:
    """The expert's action at each state of a trajectory the *policy* visited (DAgger's relabelling)."""
    return jax.lax.scan(expert.step, expert.init(states[0]), states)[1]


# ----------------------------------------------------------------------------- joint optimization


class PolicyPenalizedSystem(System):
    """``base`` with reward ``r(x, u) - rho ||u - pi(obs(x))||^2``: the joint problem's penalty for iLQR."""

    base: System
    policy: eqx.Module
    rho: Array

    name = "PolicyPenalized"

    @property
    def state_dim(self) -> int:  # type: ignore[override]
        return self.base.state_dim

    @property
    def obs_dim(self) -> int:  # type: ignore[override]
        return self.base.obs_dim

    @property
    def action_dim(self) -> int:  # type: ignore[override]
        return self.base.action_dim

    @property
    def episode_length(self) -> int:  # type: ignore[override]
        return self.base.episode_length

    @property
    def action_low(self) -> np.ndarray:
        return self.base.action_low

    @property
    def action_high(self) -> np.ndarray:
        return self.base.action_high

    def initial_state(self, key: PRNGKey) -> Array:
        return self.base.reset(key)

    def dynamics(self, state: Array, action: Array) -> Array:
        return self.base.dynamics(state, action)

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        gap = action - self.policy(self.base.observe(state))
        return self.base.reward(state, action, next_state) - self.rho * jnp.sum(gap**2)

    def observe(self, state: Array) -> Array:
        return self.base.observe(state)

    def terminated(self, state: Array) -> Array:
        return self.base.terminated(state)


def joint_trajectory(system: System, policy: eqx.Module, rho: Array, state0: Array, horizon: int,
                     config: Config) -> tuple[Array, Array]:
    """A trajectory from ``state0`` optimized for ``cost + rho ||u - pi(x)||^2`` by iLQR.

    ``joint_receding`` (default): iLQR re-solved over a receding ``expert_horizon`` window at every step
    (MPC on the penalized problem, warm-started), so the trajectory is optimal for the penalized cost in
    closed loop. Otherwise one iLQR solve over the whole ``horizon``, the best of three initial guesses:
    the policy's own actions (what GPS warm-starts from) and constant pushes of +-half the action bound.
    """
    from pathwise import control

    penalized = PolicyPenalizedSystem(system, policy, rho)
    if config.joint_receding:
        mpc = control.MPC(penalized, horizon=config.expert_horizon, iterations=config.expert_iterations)
        return expert_rollout(system, mpc, state0, horizon)
    own = rollout(system, policy, state0, horizon).actions
    half = 0.25 * (jnp.asarray(system.action_high) - jnp.asarray(system.action_low))
    mid = 0.5 * (jnp.asarray(system.action_high) + jnp.asarray(system.action_low))
    pushes = jnp.stack([jnp.broadcast_to(mid + half, own.shape), jnp.broadcast_to(mid - half, own.shape)])
    guesses = jnp.concatenate([own[None], pushes.astype(own.dtype)])
    sols = jax.vmap(lambda a: control.ilqr(penalized, state0, a, max_iterations=config.joint_iterations))(guesses)
    best = jnp.argmin(jnp.where(jnp.isfinite(sols.cost), sols.cost, jnp.inf))
    return sols.states[best, :horizon], sols.actions[best]


# ----------------------------------------------------------------------------- init / update


def episode_horizon(system: System, config: Config) -> int:
    return config.horizon or system.episode_length


def init(key: PRNGKey, system: System, config: Config) -> State:
    """A fresh policy (tanh MLP in the action box), Adam state and an empty dataset."""
    k_policy, key = jax.random.split(key)
    angles = observation_angles(system, config)
    policy = DeterministicPolicy(system.obs_dim + len(angles), system.action_dim, system.action_low,
                                 system.action_high, config.hidden, key=k_policy)
    policy = AngleFeaturePolicy(policy, angles) if angles else policy
    example = (jnp.zeros(system.obs_dim), jnp.zeros(system.action_dim))
    capacity = config.rounds * config.rollouts_per_round * episode_horizon(system, config)
    zero = jnp.zeros((), jnp.int32)
    return State(policy, optax.adam(config.learning_rate).init(trainable(policy)[0]), replay.init(example, capacity),
                 zero, jnp.asarray(config.rho0, jnp.float32), key, zero)


def collect(state: State, key: PRNGKey, system: System, expert: Expert, config: Config) -> tuple[Array, Array]:
    """This round's (states, action labels), shape ``(rollouts, T, ...)``, by the configured method."""
    horizon = episode_horizon(system, config)
    starts = jax.vmap(system.reset)(jax.random.split(key, config.rollouts_per_round))
    demos = lambda: jax.vmap(lambda s: expert_rollout(system, expert, s, horizon))(starts)  # noqa: E731
    if config.mode == "bc":
        return demos()
    if config.mode == "dagger":
        def relabel():
            visited = jax.vmap(lambda s: rollout(system, state.policy, s, horizon).states)(starts)
            return visited, jax.vmap(lambda v: expert_labels(expert, v))(visited)

        return jax.lax.cond(state.round == 0, demos, relabel)
    return jax.vmap(lambda s: joint_trajectory(system, state.policy, state.rho, s, horizon, config))(starts)


def update(state: State, system: System, expert: Expert | None, config: Config) -> tuple[State, dict[str, Array]]:
    """One round: collect labelled states (bc / dagger / joint), aggregate them, refit the policy."""
    key, k_collect, k_fit = jax.random.split(state.key, 3)
    states, actions = collect(state, k_collect, system, expert, config)
    obs = jax.vmap(jax.vmap(system.observe))(states)
    n = obs.shape[0] * obs.shape[1]
    data = replay.add_batch(state.data, (obs.reshape(n, -1), actions.reshape(n, -1)))
    policy, opt_state, loss = fit_policy(state.policy, state.opt_state, data, k_fit, config)
    gap = bc_loss(state.policy, obs.reshape(n, -1), actions.reshape(n, -1))  # before the fit: new data only
    # the collected pairs read as trajectories: the expert's return (bc, dagger round 0), the optimized
    # trajectories' return without the penalty (joint); for later dagger rounds the states are the policy's
    trajectory_return = jnp.mean(jnp.sum(jax.vmap(jax.vmap(system.reward))(states, actions), axis=-1))
    rho = state.rho * config.rho_growth if config.mode == "joint" else state.rho
    new = State(policy, opt_state, data, state.round + 1, rho, key, state.env_steps + n)
    return new, {"fit_loss": loss, "new_data_loss": gap, "dataset_size": data.size.astype(jnp.float32),
                 "rho": state.rho,
                 "trajectory_return": trajectory_return}


@eqx.filter_jit
def train_round(state: State, system: System, expert: Expert | None, config: Config):
    """:func:`update` as one jitted call (the expert's functions are static)."""
    return update(state, system, expert, config)


# ----------------------------------------------------------------------------- the Learner


class Imitation(Learner):
    """One ``train_iteration`` = one round of bc / DAgger / joint optimization on a known ``System``."""

    name = "imitation"
    Config = Config
    needs_system = True
    discrete_ok = False
    continuous_ok = True

    def __init__(self, env_id: str, config: Config | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        validate_config(self.config)
        self.system = make_system(env_id)
        if self.system.discrete:
            raise ValueError(f"imitation needs a continuous action space, but {env_id} is discrete.")
        self.expert = None if self.config.mode == "joint" else mpc_expert(self.system, self.config)
        self.state = init(jax.random.key(self.seed), self.system, self.config)

    def train_iteration(self) -> dict[str, float]:
        self.state, metrics = train_round(self.state, self.system, self.expert, self.config)
        self.env_steps = int(self.state.env_steps)
        return {k: float(v) for k, v in metrics.items()}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        del deterministic  # the policy is deterministic
        return np.asarray(_act(self.state.policy, jnp.asarray(obs, jnp.float32).reshape(self.system.obs_dim)))

    def get_state(self) -> State:
        return self.state

    def set_state(self, state: State) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.config.mode, "env_steps_are": "simulated steps through the known system",
                "dataset_size": int(self.state.data.size)}


@eqx.filter_jit
def _act(policy: eqx.Module, obs: Array) -> Array:
    return policy(obs)
