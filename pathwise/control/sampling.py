"""Sampling planners: the cross-entropy method (CEM) and model-predictive path integral control (MPPI).

Both search the open-loop action sequence ``U = (u_0 .. u_{H-1})`` of a ``System`` (true or learned) by
sampling, without gradients. Each iteration draws ``N`` sequences ``U_i = clip(μ + σ ⊙ ε_i)``, ``ε_i ~ N(0, I)``,
clipped to the system's action box, scores each by a ``lax.scan`` rollout (vmapped over the samples)

    J(U_i) = Σ_{t<H} γ^t alive_t r(x_t, u_t) + γ^H alive_H V(o_H),    x_{t+1} = f(x_t, u_t) (+ ζ_t),

(``alive_t`` is 0 after the first terminal state: rewards after termination do not count; ``V`` an optional
terminal value of the observation) and refits the sampling distribution to the scores:

* CEM (Botev et al. 2013; as in PETS, Chua et al. 2018): the ``K`` best samples ("elites") give the new mean
  and standard deviation, smoothed ``μ ← α μ + (1 − α) mean(elites)``, ``σ ← α σ + (1 − α) std(elites)``.
* MPPI (Williams et al. 2017, the information-theoretic update, Alg. 2): the new mean is the exponentially
  weighted average ``μ ← α μ + (1 − α) Σ_i w_i U_i``, ``w_i ∝ exp((J_i − max_j J_j) / λ)`` with temperature
  ``λ``; ``σ`` stays fixed. (The control-cost term ``λ u'Σ⁻¹ε`` of the paper is left out, as in TD-MPC's MPPI:
  the system's reward already prices the actions.)

The current mean is always sample 0 (a refit is scored before it is moved again), and the best sample of all
iterations is kept beside the mean. Process noise: by default
the rollouts use zero noise (planning on the mean dynamics); ``process_noise=True`` draws one noise sequence
per sample from ``system.sample_noise``. Optionally (TD-MPC, Hansen et al. 2022) a fraction of the samples come
from rolling a policy ``policy(obs, key) -> action`` through the system, with Gaussian noise ``policy_std``
added to its actions. With ``particles = P > 0`` a sample's score is the mean of P rollouts, each through its own
``system.sample(key)``: on a learned ensemble (``LearnedModel``, ``sampling="ts-inf"``) every particle follows a
random elite, PETS's trajectory sampling (Chua et al. 2018, TS-∞; each member's mean, no aleatoric draw).

``cem`` and ``mppi`` are one jittable solve from one state. ``SamplingMPC`` re-plans over a receding horizon
with the same interface as ``MPC`` (``init(state)``, ``step(plan, state)``, ``rollout(state0, steps)``), warm
started by shifting the previous mean one step (its last action repeated) with ``σ`` reset; ``MPCPolicy``
drives a Gymnasium env with it::

    planner = pw.control.SamplingMPC(pw.systems.Pendulum(), pw.control.CEMConfig(horizon=30))
    plan = planner.init(state)
    plan, action = planner.step(plan, state)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.config import Options, at_least, positive
from pathwise.control.solution import as_problem, check_inputs
from pathwise.rollout import discounted_return, past_the_end, rollout
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, Trajectory

#: ``policy(obs, key) -> action``: the policy that seeds some of the samples (TD-MPC).
SeedPolicy = Callable[[Array, PRNGKey], Array]
#: ``value(obs) -> scalar``: a terminal value added to each sample's return.
TerminalValue = Callable[[Array], Array]


@dataclasses.dataclass(frozen=True)
class SamplingConfig(Options):
    """What CEM and MPPI share; use ``CEMConfig`` or ``MPPIConfig`` (the config's type picks the method)."""

    horizon: int = 30
    """Planning horizon H: steps of each sampled action sequence."""
    samples: int = 400
    """N: action sequences scored per iteration, counting the current mean (always one) and the policy's."""
    iterations: int = 5
    """Refits per environment step (``SamplingMPC.step``, warm-started from the shifted previous plan)."""
    init_iterations: int = 10
    """Refits of a plan from scratch (``SamplingMPC.init``; ``cem``/``mppi`` by default)."""
    std: float | None = None
    """Initial standard deviation σ of the sampling distribution, in action units (MPPI keeps it); None: a
    quarter of the action box's width (1 without a box)."""
    smoothing: float = 0.1
    """α: the weight of the old mean (and std) in each refit, ``μ ← α μ + (1 − α) μ_new``; 0 = no smoothing."""
    discount: float = 1.0
    """γ of the planned return (1: the plain sum, as the environment's episode return)."""
    process_noise: bool = False
    """Draw one process-noise sequence per sample (``system.sample_noise``); False: plan with zero noise."""
    policy_fraction: float = 0.0
    """Fraction of the samples drawn by rolling ``policy`` through the system (TD-MPC); needs a policy."""
    policy_std: float = 0.1
    """Standard deviation of the Gaussian noise added to the policy's actions (action units)."""
    particles: int = 0
    """P: 0 scores each sample by one rollout of the system itself; P >= 1 by the mean return of P rollouts, each
    through its own ``system.sample(key)`` (a learned ensemble's trajectory sampling: PETS's particles, Chua et al.
    2018); needs a system with ``sample``."""

    def checks(self) -> list[tuple[bool, str]]:
        """Counts >= 1 (at least 2 samples), α in [0, 1), γ in (0, 1], fractions in [0, 1), stds > 0,
        particles >= 0."""
        return [*at_least(self, 1, "horizon", "iterations", "init_iterations"), *at_least(self, 0, "particles"),
                (self.samples >= 2, f"samples={self.samples} must be >= 2 (the current mean is one of them); "
                                    "e.g. samples=400"),
                (0 <= self.smoothing < 1, f"smoothing={self.smoothing} must be in [0, 1) (0 = no smoothing)"),
                (0 < self.discount <= 1, f"discount={self.discount} must be in (0, 1]"),
                (0 <= self.policy_fraction < 1, f"policy_fraction={self.policy_fraction} must be in [0, 1)"),
                (self.std is None or self.std > 0, f"std={self.std} must be > 0 (or None for a quarter of the "
                                                   "action box's width)"),
                *positive(self, "policy_std")]


@dataclasses.dataclass(frozen=True)
class CEMConfig(SamplingConfig):
    """The cross-entropy method (PETS's optimizer): refit mean and std to the ``elites`` best samples."""

    elites: int = 40
    """K: how many of the best samples the mean and std are refit to (K <= samples)."""
    min_std: float = 0.02
    """Floor of the refit std (action units), so that the search never collapses to a point."""

    def checks(self) -> list[tuple[bool, str]]:
        """The shared checks, and 1 <= elites <= samples, min_std >= 0."""
        return [*super().checks(), *at_least(self, 1, "elites"),
                (self.elites <= self.samples, f"elites={self.elites} must be <= samples={self.samples}; e.g. "
                                              "elites = samples // 10"),
                *at_least(self, 0, "min_std")]


@dataclasses.dataclass(frozen=True)
class MPPIConfig(SamplingConfig):
    """MPPI: the exponentially weighted average of the samples with temperature λ, fixed std."""

    temperature: float = 1.0
    """λ of the weights ``exp((J_i − max J) / λ)``, in return units: small = the best sample, large = the mean."""

    def checks(self) -> list[tuple[bool, str]]:
        """The shared checks, and temperature > 0."""
        return [*super().checks(), *positive(self, "temperature")]


class SamplingResult(NamedTuple):
    """One sampling solve: the refit mean ``actions`` (H, m) (the plan), its ``std`` (H, m), the best sample
    seen (``best_actions``, ``best_return``) and ``history`` (iterations,), the best return of each iteration."""

    actions: Array
    std: Array
    best_actions: Array
    best_return: Array
    history: Array


class SamplingPlan(NamedTuple):
    """``SamplingMPC``'s memory: the shifted mean to warm-start from, the state it predicted next, the cost
    (−return) of the best sample at the last solve, and the key of the next step's samples."""

    actions: Array  # (horizon, m)
    predicted: Array  # (n,) the state the plan expects after its first action
    cost: Array
    key: PRNGKey


class _Search(NamedTuple):
    """Everything a solve needs besides the distribution (a pytree: closed over by the scans)."""

    system: System
    state: Array
    low: Array
    high: Array
    policy: SeedPolicy | None
    value: TerminalValue | None


def _box(system: System, dtype) -> tuple[Array, Array]:
    """The system's action box, or ±inf where it has none."""
    try:
        problem = as_problem(system)  # refuses discrete systems
    except jax.errors.TracerArrayConversionError:
        # a learned model passed into jit as an argument (new parameters, no recompilation): its box is traced
        # too, and its action_low/high properties read it with NumPy; the box itself is its low/high leaves
        if getattr(system, "low", None) is None:
            raise ValueError(f"{system.name}: its action box is traced under jit; close over the system (or give it "
                             "low/high array fields) instead.") from None
        return jnp.broadcast_to(system.low, (system.action_dim,)).astype(dtype), \
            jnp.broadcast_to(system.high, (system.action_dim,)).astype(dtype)
    if problem.action_low is None:
        inf = jnp.full((system.action_dim,), jnp.inf, dtype)
        return -inf, inf
    return problem.action_low.astype(dtype), problem.action_high.astype(dtype)


def _initial_std(system: System, config: SamplingConfig, dtype=jnp.float32) -> Array:
    """σ of a fresh search, shape (m,): ``config.std``, else a quarter of the box's width (1 without a box)."""
    if config.std is not None:
        return jnp.full((system.action_dim,), config.std, dtype)
    low, high = _box(system, dtype)
    return jnp.where(jnp.isfinite(high - low), (high - low) / 4, 1.0)


def _score(search: _Search, traj: Trajectory, config: SamplingConfig) -> Array:
    """J = Σ γ^t alive_t r_t + γ^H alive_H V(o_H) of one rollout (rewards already masked after termination)."""
    total = discounted_return(traj.rewards, config.discount)
    if search.value is None:
        return total
    alive = traj.alive[-1] * (1.0 - traj.dones[-1].astype(traj.alive.dtype))
    final = search.value(search.system.observe(traj.final_state))
    return total + config.discount ** config.horizon * alive * final


def _replay(obs: Array, action: Array) -> Array:
    """The "policy" of an open-loop rollout: the scanned action itself."""
    del obs
    return action


def _open_loop_returns(search: _Search, actions: Array, noises: Array, config: SamplingConfig,
                       key: PRNGKey | None = None) -> Array:
    """Scores (N,) of the action sequences (N, H, m), one vmapped ``rollout`` each; with ``config.particles = P``
    the mean score of P rollouts per sequence, each on ``system.sample(k)`` (``key`` draws the ks)."""

    def run(u, z, system=search.system):
        traj = rollout(system, _replay, search.state, config.horizon, noises=z, policy_noise=u)
        return _score(search._replace(system=system), traj, config)

    if not config.particles:
        return jax.vmap(run)(actions, noises)
    keys = jax.random.split(key, (actions.shape[0], config.particles))
    system = search.system.batched_members()  # N · P particles: every member on all, not its parameters per particle
    return jax.vmap(lambda u, z, ks: jax.vmap(lambda k: run(u, z, system.sample(k)))(ks).mean())(
        actions, noises, keys)


def _policy_samples(search: _Search, key: PRNGKey, noises: Array, config: SamplingConfig) -> tuple[Array, Array]:
    """Action sequences (P, H, m) of the seeding policy rolled through the system, with noise, and their scores."""

    def act(obs, k):
        k_policy, k_noise = jax.random.split(k)
        a = search.policy(obs, k_policy)
        return jnp.clip(a + config.policy_std * jax.random.normal(k_noise, a.shape, a.dtype), search.low, search.high)

    def run(k, z):
        traj = rollout(search.system, act, search.state, config.horizon, noises=z,
                       policy_noise=jax.random.split(k, config.horizon))
        return traj.actions, _score(search, traj, config)

    return jax.vmap(run)(jax.random.split(key, noises.shape[0]), noises)


def _counts(config: SamplingConfig, policy: SeedPolicy | None) -> tuple[int, int]:
    """(Gaussian samples besides the mean, policy samples) per iteration."""
    n_policy = int(round(config.policy_fraction * config.samples)) if policy is not None else 0
    n_policy = min(n_policy, config.samples - 1)
    return config.samples - 1 - n_policy, n_policy


def _sample_and_score(search: _Search, mean: Array, std: Array, key: PRNGKey, config: SamplingConfig
                      ) -> tuple[Array, Array]:
    """All N samples of one iteration (the mean first, then Gaussian, then the policy's) and their scores."""
    n_gauss, n_policy = _counts(config, search.policy)
    k_eps, k_noise, k_policy, k_particles = jax.random.split(key, 4)
    eps = jax.random.normal(k_eps, (n_gauss, *mean.shape), mean.dtype)
    actions = jnp.concatenate([mean[None], jnp.clip(mean + std * eps, search.low, search.high)])
    noises = jnp.zeros((config.samples, config.horizon, search.system.state_dim), mean.dtype)
    if config.process_noise and search.system.stochastic:
        noises = search.system.sample_noise(k_noise, (config.samples, config.horizon)).astype(mean.dtype)
    if n_policy:
        policy_actions, policy_returns = _policy_samples(search, k_policy, noises[n_gauss + 1:], config)
        actions = jnp.concatenate([actions, policy_actions.astype(mean.dtype)])
    if config.particles:  # every sequence (the policy's too, open loop) scored over the same kind of particles
        returns = _open_loop_returns(search, actions, noises, config, k_particles)
    else:
        returns = _open_loop_returns(search, actions[:n_gauss + 1], noises[:n_gauss + 1], config)
        if n_policy:
            returns = jnp.concatenate([returns, policy_returns])
    # a diverged rollout is the worst sample, never NaN in the refit (unless every one diverged)
    finite = jnp.isfinite(returns)
    return actions, jnp.where(finite, returns, jnp.where(jnp.any(finite), -jnp.inf, 0.0))


def _weights(returns: Array, config: SamplingConfig) -> Array:
    """The samples' weights in the refit (they sum to 1): uniform over CEM's elites (the ``elites`` best; ties at
    the threshold included), MPPI's ``softmax(J / λ)``."""
    if isinstance(config, CEMConfig):
        elite = returns >= jax.lax.top_k(returns, config.elites)[0][-1]
        return elite / jnp.sum(elite)
    return jax.nn.softmax((returns - returns.max()) / config.temperature)


def _refit(mean: Array, std: Array, base_std: Array, actions: Array, returns: Array, config: SamplingConfig
           ) -> tuple[Array, Array]:
    """The smoothed new (mean, std): the weighted mean of the samples; CEM's std their weighted spread (floored at
    ``min_std``), MPPI's fixed. Weighted sums rather than a gather of the elites: cheaper vmapped."""
    weights = _weights(returns, config).astype(actions.dtype)
    new_mean = jnp.tensordot(weights, actions, axes=1)
    if isinstance(config, CEMConfig):
        new_std = jnp.sqrt(jnp.tensordot(weights, (actions - new_mean) ** 2, axes=1))
        std = jnp.maximum(config.smoothing * std + (1 - config.smoothing) * new_std, config.min_std)
    else:
        std = jnp.broadcast_to(base_std, std.shape)
    return config.smoothing * mean + (1 - config.smoothing) * new_mean, std


def _search(search: _Search, mean: Array, key: PRNGKey, config: SamplingConfig, iterations: int) -> SamplingResult:
    """``iterations`` refits from ``mean`` with the initial std, as one ``lax.scan``."""
    base_std = jnp.broadcast_to(_initial_std(search.system, config, mean.dtype), mean.shape)

    def iteration(carry, k):
        mean, std, best_u, best_r = carry
        actions, returns = _sample_and_score(search, mean, std, k, config)
        i = jnp.argmax(returns)
        better = returns[i] > best_r
        best_u, best_r = jnp.where(better, actions[i], best_u), jnp.where(better, returns[i], best_r)
        mean, std = _refit(mean, std, base_std, actions, returns, config)
        return (mean, std, best_u, best_r), returns[i]

    carry = (mean, base_std, mean, jnp.asarray(-jnp.inf, mean.dtype))
    (mean, std, best_u, best_r), history = jax.lax.scan(iteration, carry, jax.random.split(key, iterations))
    return SamplingResult(mean, std, best_u, best_r, history)


def _check(name: str, system: System, state: Array | None, actions0: Array | None, config: SamplingConfig,
           policy: SeedPolicy | None, iterations: int | None) -> tuple[Array, Array, int]:
    """(state, initial mean, iterations), checked, with messages that name the fix."""
    if not isinstance(system, System):
        raise TypeError(f"{name}: expected a pathwise System (true or learned), got {type(system).__name__}.")
    state = jnp.zeros(system.state_dim) if state is None else state
    if config.particles and not callable(getattr(system, "sample", None)):
        raise ValueError(f"{name}: particles={config.particles} scores samples on system.sample(key) (trajectory "
                         f"sampling of a learned ensemble), but {system.name} has no sample method; set particles=0.")
    if config.policy_fraction > 0 and policy is None:
        raise ValueError(f"{name}: policy_fraction={config.policy_fraction} needs a policy(obs, key) -> action; "
                         "pass policy=... or set policy_fraction=0.")
    low, high = _box(system, jnp.float32)
    if actions0 is None:
        actions0 = jnp.broadcast_to(jnp.where(jnp.isfinite(high - low), (low + high) / 2, 0.0),
                                    (config.horizon, system.action_dim))
    state, actions0 = check_inputs(name, system, state, actions0)
    if actions0.shape[0] != config.horizon:
        raise ValueError(f"{name}: the warm start must cover the horizon: shape ({config.horizon}, "
                         f"{system.action_dim}), got {actions0.shape}; or change config.horizon.")
    iterations = config.init_iterations if iterations is None else iterations
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"{name}: iterations must be a whole number >= 1, got {iterations!r}.")
    return state, actions0, iterations


def _solve(name: str, config_type: type, system: System, state: Array, key: PRNGKey, config, actions0, policy,
           value, iterations) -> SamplingResult:
    config = config_type() if config is None else config
    if not isinstance(config, config_type):
        raise TypeError(f"{name}: config must be a {config_type.__name__}, got {type(config).__name__}.")
    state, mean, iterations = _check(name, system, state, actions0, config, policy, iterations)
    low, high = _box(system, mean.dtype)
    return _search(_Search(system, state, low, high, policy, value), mean, key, config, iterations)


def cem(system: System, state: Array, key: PRNGKey, config: CEMConfig | None = None, *,
        actions0: Array | None = None, policy: SeedPolicy | None = None, value: TerminalValue | None = None,
        iterations: int | None = None) -> SamplingResult:
    """The cross-entropy method from ``state``: ``iterations`` refits of N(μ, σ²) to its elites (PETS's CEM).

    Args:
      system: any continuous-action ``System`` (true or learned); samples are clipped to its action box.
      state: the state to plan from, shape (n,).
      key: draws the samples (and the process noise with ``config.process_noise``).
      config: a ``CEMConfig`` (default ``CEMConfig()``).
      actions0: the initial mean (H, m), e.g. a shifted previous plan; default the box midpoint.
      policy: ``policy(obs, key) -> action`` seeding ``config.policy_fraction`` of the samples.
      value: ``value(obs) -> scalar``, a terminal value added to each return.
      iterations: refits (default ``config.init_iterations``).

    Pure and jittable (``config`` static); returns a ``SamplingResult`` whose ``actions`` are the plan.
    """
    return _solve("cem", CEMConfig, system, state, key, config, actions0, policy, value, iterations)


def mppi(system: System, state: Array, key: PRNGKey, config: MPPIConfig | None = None, *,
         actions0: Array | None = None, policy: SeedPolicy | None = None, value: TerminalValue | None = None,
         iterations: int | None = None) -> SamplingResult:
    """MPPI from ``state``: ``iterations`` exponentially weighted averages of Gaussian perturbations of the mean
    (Williams et al. 2017), temperature ``config.temperature``, fixed std. Arguments as ``cem``'s, with an
    ``MPPIConfig``; pure and jittable."""
    return _solve("mppi", MPPIConfig, system, state, key, config, actions0, policy, value, iterations)


class SamplingMPC(eqx.Module):
    """Receding-horizon CEM or MPPI over ``system``, with ``MPC``'s interface (so it drops in where MPC is used).

    ``init(state)`` plans from scratch (``config.init_iterations``); ``step(plan, state)`` re-plans with
    ``config.iterations`` refits from the previous mean shifted by one step (last action repeated), σ reset,
    and returns the plan's first action. ``rollout(state0, steps)`` runs the closed loop on ``system`` as one
    ``lax.scan``; ``pw.control.MPCPolicy(planner)`` drives a Gymnasium env. The config's type picks the method.
    ``policy`` and ``value`` as in ``cem``; ``key`` draws the first plan's samples (each plan carries the next).
    """

    system: System
    config: SamplingConfig = eqx.field(static=True)
    policy: SeedPolicy | None
    value: TerminalValue | None
    key: PRNGKey

    def __init__(self, system: System, config: SamplingConfig | None = None, *, policy: SeedPolicy | None = None,
                 value: TerminalValue | None = None, key: PRNGKey | None = None):
        config = CEMConfig() if config is None else config
        if not isinstance(config, (CEMConfig, MPPIConfig)):
            raise TypeError(f"SamplingMPC: config must be a CEMConfig or an MPPIConfig, got {type(config).__name__}.")
        _check("SamplingMPC", system, None, None, config, policy, None)  # the system, policy and horizon
        self.system, self.config, self.policy, self.value = system, config, policy, value
        self.key = jax.random.key(0) if key is None else key

    @property
    def horizon(self) -> int:
        """The planning horizon H (``config.horizon``)."""
        return self.config.horizon

    @property
    def action_dim(self) -> int:
        """The size m of an action."""
        return self.system.action_dim

    def solve(self, state: Array, key: PRNGKey, actions0: Array | None = None, iterations: int | None = None
              ) -> SamplingResult:
        """One search from ``state`` (``cem`` or ``mppi`` by the config's type) with this planner's options."""
        solver = cem if isinstance(self.config, CEMConfig) else mppi
        return solver(self.system, state, key, self.config, actions0=actions0, policy=self.policy, value=self.value,
                      iterations=iterations)

    def _plan(self, state: Array, key: PRNGKey, actions0: Array | None, iterations: int
              ) -> tuple[SamplingPlan, Array]:
        key, sub = jax.random.split(key)
        result = self.solve(state, sub, actions0, iterations)
        action = result.actions[0]
        shifted = jnp.concatenate([result.actions[1:], result.actions[-1:]])
        plan = SamplingPlan(shifted, self.system.step(state, action), -result.best_return, key)
        return plan, action

    def init(self, state: Array, key: PRNGKey | None = None) -> SamplingPlan:
        """A plan from scratch (from the box midpoint, ``config.init_iterations`` refits); ``key``: the
        planner's own by default. Its ``actions`` are the found mean itself, not shifted: ``step`` re-plans from
        the same state first."""
        key = self.key if key is None else key
        key, sub = jax.random.split(key)
        result = self.solve(jnp.asarray(state), sub)
        return SamplingPlan(result.actions, jnp.asarray(state, result.actions.dtype), -result.best_return, key)

    def step(self, plan: SamplingPlan, state: Array) -> tuple[SamplingPlan, Array]:
        """Warm-started re-plan from ``state``: the new plan (mean shifted for the next step) and the action now."""
        return self._plan(jnp.asarray(state), plan.key, plan.actions, self.config.iterations)

    def __call__(self, state: Array) -> Array:
        """Memoryless use (plans from scratch every call, with the planner's key): the first action."""
        return self._plan(jnp.asarray(state), self.key, None, self.config.init_iterations)[1]

    def rollout(self, state0: Array, steps: int) -> tuple[Array, Array, Array]:
        """Closed loop on ``system`` (its deterministic dynamics): ``(states (steps+1, n), actions (steps, m),
        rewards (steps,))``, rewards zero after the first terminal state and the state held at it from then on
        (as :func:`pathwise.rollout.rollout` holds it: a learned model run on past a terminal state can diverge)."""
        state0 = jnp.asarray(state0)

        def body(carry, _):
            x, plan, alive = carry
            plan, u = self.step(plan, x)
            x2 = self.system.step(x, u)
            reward, x2 = past_the_end(alive, self.system.reward(x, u, x2), x2, x)
            alive = alive * (1.0 - self.system.terminated(x2).astype(alive.dtype))
            return (x2, plan, alive), (x, u, reward)

        alive = jnp.ones((), jnp.result_type(state0.dtype, jnp.float32))
        (x_last, _, _), (xs, us, rs) = jax.lax.scan(body, (state0, self.init(state0), alive), None, length=steps)
        return jnp.concatenate([xs, x_last[None]]), us, rs


__all__ = ["CEMConfig", "MPPIConfig", "SamplingConfig", "SamplingMPC", "SamplingPlan", "SamplingResult", "cem",
           "mppi"]
