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

Everything is simulated through the known ``System``: it runs in the simulated loop
(:mod:`pathwise.loops.simulated`), one round per update (``update(state, system, key, config)``), and
``env_steps`` counts simulated steps (as for bptt).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms import bptt
from pathwise.algorithms.base import AlgorithmInfo, CommonConfig
from pathwise.config import at_least, one_of, positive
from pathwise.loops.simulated import SimulatedOptions
from pathwise.rollout import rollout
from pathwise.spec import EnvSpec
from pathwise.systems.base import System, SystemWrapper
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("imitation", loops=("simulated",),
                     summary="Imitation of an MPC / iLQR expert: behaviour cloning, DAgger or joint optimization.")

# ----------------------------------------------------------------------------- config and state


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, SimulatedOptions):
    """Options of the imitation learners; defaults are for Pendulum-v1 with an iLQR-MPC expert."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "lr"}  # before 0.3

    mode: Literal["bc", "dagger", "joint"] = "dagger"
    """bc: clone expert demonstrations; dagger: expert labels the policy's states; joint: iLQR with a
    policy penalty alternated with policy fits (GPS-style)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the tanh MLP policy."""
    angle_features: tuple[int, ...] | None = None
    """Observation entries that are unwrapped angles, given to the MLP as (cos, sin); None = the environment's
    known ones (its registry record: theta of CartPoleSwingUp), () = none."""
    rollouts_per_round: int = 16
    """Trajectories collected per round (one round per update), from random initial states."""
    rounds: int = 8
    """Rounds the dataset is sized for (its capacity is rounds x rollouts_per_round x episode length)."""
    horizon: int = 0
    """Length of each collected trajectory; 0 = the system's episode length."""
    fit_steps: int = 1500
    """Adam steps of the supervised fit after each round (minibatches from the aggregated data)."""
    fit_batch: int = 256
    """Minibatch size of the supervised fit."""
    lr: float = 1e-3
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
    solve over the whole episode (``joint_iterations``; it can stop in a local minimum of the long-horizon
    problem far from the receding-horizon solution)."""
    joint_iterations: int = 50
    """iLQR iterations of the full-horizon solve (``joint_receding=False``)."""
    updates_per_iteration: int = 1
    """Rounds per iteration (run as one lax.scan inside one jitted call)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + one_of(self, "mode", ("bc", "dagger", "joint")) + \
            at_least(self, 1, "rollouts_per_round", "rounds", "fit_steps", "fit_batch", "expert_horizon",
                     "expert_iterations", "joint_iterations") + \
            at_least(self, 0, "horizon") + positive(self, "lr", "rho0") + at_least(self, 1, "rho_growth")


class State(NamedTuple):
    """Policy, optimizer, aggregated dataset and round counter."""

    policy: eqx.Module
    opt_state: PyTree
    data: replay.ReplayBuffer  # storage: (observation, action) pairs
    round: Array
    rho: Array


# ----------------------------------------------------------------------------- the loss


def bc_loss(policy: eqx.Module, observations: Array, actions: Array) -> Array:
    """``L(theta) = 1/N sum_i ||pi_theta(x^i) - u^i||^2`` (lecture, "Learning Control Policies through Imitation")."""
    return jnp.mean(jnp.sum((jax.vmap(policy)(observations) - actions) ** 2, axis=-1))


def fit_policy(policy: eqx.Module, opt_state: PyTree, data: replay.ReplayBuffer, key: PRNGKey,
               config: Config) -> tuple[eqx.Module, PyTree, Array]:
    """``config.fit_steps`` Adam steps on :func:`bc_loss` over minibatches of the dataset; returns the last loss."""
    optimizer = optim.adam(config.lr)

    def step(carry, k):
        policy, opt_state = carry
        obs, act = replay.sample(data, k, config.fit_batch)
        loss, grads = eqx.filter_value_and_grad(bc_loss)(policy, obs, act)
        return optim.apply(policy, grads, opt_state, optimizer), loss

    (policy, opt_state), losses = jax.lax.scan(step, (policy, opt_state), jax.random.split(key, config.fit_steps))
    return policy, opt_state, losses[-1]


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
    # a lambda, not the bound method: scan hashes its function, and an MPC expert's System may hold tracers
    return jax.lax.scan(lambda memory, state: expert.step(memory, state), expert.init(states[0]), states)[1]


# ----------------------------------------------------------------------------- joint optimization


class PolicyPenalizedSystem(SystemWrapper):
    """``base`` with reward ``r(x, u) - rho ||u - pi(obs(x))||^2``: the joint problem's penalty for iLQR."""

    policy: eqx.Module
    rho: Array

    name = "PolicyPenalized"

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``r(x, u) - rho ||u - pi(observe(x))||^2``: the base reward minus the penalty for leaving the policy."""
        gap = action - self.policy(self.base.observe(state))
        return self.base.reward(state, action, next_state) - self.rho * jnp.sum(gap**2)


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
    """Length of each collected trajectory: ``config.horizon``, or the system's episode length."""
    return config.horizon or system.episode_length


def make_policy(key: PRNGKey, spec: EnvSpec, config: Config) -> eqx.Module:
    """The tanh MLP policy in the action box, with the unwrapped-angle entries as (cos, sin) (bptt's policy)."""
    return bptt.squashed_policy(key, spec, config.hidden, config.angle_features)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A fresh policy (tanh MLP in the action box), Adam state and an empty dataset sized for ``rounds`` rounds."""
    policy = make_policy(key, spec, config)
    example = (jnp.zeros(spec.obs_dim), jnp.zeros(spec.action_dim))
    capacity = config.rounds * config.rollouts_per_round * episode_horizon(spec.system, config)
    return State(policy, optim.init(optim.adam(config.lr), policy), replay.init(example, capacity),
                 jnp.zeros((), jnp.int32), jnp.asarray(config.rho0, jnp.float32))


def collect(state: State, key: PRNGKey, system: System, expert: Expert | None, config: Config
            ) -> tuple[Array, Array]:
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


def train_round(state: State, system: System, expert: Expert | None, key: PRNGKey, config: Config
                ) -> tuple[State, dict[str, Array]]:
    """One round with ``expert``: collect labelled states (bc / dagger / joint), aggregate them, refit the policy."""
    k_collect, k_fit = jax.random.split(key)
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
    new = State(policy, opt_state, data, state.round + 1, rho)
    return new, {"fit_loss": loss, "new_data_loss": gap, "dataset_size": data.size.astype(jnp.float32),
                 "rho": state.rho, "trajectory_return": trajectory_return}


def update(state: State, system: System, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One round of :func:`train_round` with the MPC expert on ``system`` (none for the joint method)."""
    expert = None if config.mode == "joint" else mpc_expert(system, config)
    return train_round(state, system, expert, key, config)


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The policy's action (deterministic either way)."""
    del key, deterministic
    return state.policy(obs)


def steps_per_update(spec: EnvSpec, config: Config) -> int:
    """Simulated system steps one round consumes (its collected trajectories)."""
    return config.rollouts_per_round * episode_horizon(spec.system, config)


__all__ = ["Config", "Expert", "INFO", "PolicyPenalizedSystem", "State", "act", "bc_loss", "collect",
           "episode_horizon", "expert_labels", "expert_rollout", "fit_policy", "init", "joint_trajectory",
           "make_policy", "mpc_expert", "steps_per_update", "train_round", "update"]
