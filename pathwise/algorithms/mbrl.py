"""Model-based RL: the lecture's four-step loop with BPTT through the frozen learned model.

1. run π₀ (uniformly random actions) to collect ``D = {(x, u, x')}``;
2. fit ``f_φ`` minimizing ``Σ ||f_φ(x, u) − x'||²``;
3. backpropagate through the frozen ``f_φ`` into the deterministic policy ``π_θ``:
   maximize ``J(θ) = 1/N Σ_i Σ_{t<H} γ^t r(x_t, π_θ(x_t))``, ``x_{t+1} = f_φ(x_t, π_θ(x_t))``,
   from ``N`` start states ``x_0`` drawn from ``D`` (``policy_steps`` Adam steps per iteration);
4. run ``π_θ`` (plus Gaussian exploration noise) and append the visited tuples to ``D``; repeat.

Only the reward ``r`` is known (``pathwise.rewards``); the environment is a
black box, also for a ``pathwise/...`` id. Non-finite policy gradients skip
the update and are counted in ``skipped_updates``.

Speed: every program (policy update, model-fit epoch, actions) compiles once
per process and config and is shared by all learners in it; a data set that
grows does not recompile. A fresh process still pays that compilation (tens
of seconds on one CPU thread); to skip it on later runs, turn on JAX's
persistent cache, e.g. ``JAX_COMPILATION_CACHE_DIR=~/.cache/jax`` (opt-in).
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise.algorithms.model_based import (ModelBasedConfig, ModelBasedLearner, ModelBasedState,
                                             adam_step_if_finite, learned_system, make_optimizer, sample_starts)
from pathwise.networks import DeterministicPolicy
from pathwise.rollout import discounted_return, rollout
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class MBRLConfig(ModelBasedConfig):
    """MBRL options (defaults reach Pendulum-v1 swing-up within 2,000 environment steps)."""

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


def imagined_return(policy: eqx.Module, system: System, starts: Array, horizon: int, gamma: float) -> Array:
    """J(θ) = 1/N Σ_i Σ_{t<H} γ^t r(x_t, π_θ(x_t)), x_{t+1} = f_φ(x_t, π_θ(x_t)) (lecture step 3, f_φ frozen)."""
    trajs = jax.vmap(lambda x0: rollout(system, policy, x0, horizon))(starts)
    return discounted_return(trajs.rewards, gamma).mean()


def explore(policy: eqx.Module, obs: Array, key: PRNGKey, explore_std: float) -> Array:
    """π_θ(x) plus Gaussian noise of std ``explore_std`` × the action range, clipped into the box."""
    scale = explore_std * (policy.high - policy.low)
    return jnp.clip(policy(obs) + scale * jax.random.normal(key, policy.low.shape), policy.low, policy.high)


_mode_action = eqx.filter_jit(lambda policy, obs: policy(obs))
_behaviour_action = eqx.filter_jit(explore)


class MBRL(ModelBasedLearner):
    """The four-step model-based loop (see the module docstring)."""

    name = "mbrl"
    Config = MBRLConfig

    def __init__(self, env_id: str, config: MBRLConfig | None = None, seed: int = 0):
        cfg = config or MBRLConfig()
        if cfg.policy_steps < 1 or cfg.policy_chunk < 1 or not cfg.policy_tol >= 0:
            raise ValueError(f"MBRLConfig: policy_steps ({cfg.policy_steps}) and policy_chunk ({cfg.policy_chunk}) "
                             f"must be >= 1 and policy_tol ({cfg.policy_tol}) >= 0 (0 turns early stopping off).")
        super().__init__(env_id, config, seed)
        self.traces = 0  # how often this learner traced the policy update (tests: compile once)
        # module-level jitted actions: a second learner in the process reuses the compiled programs
        self._mode = _mode_action
        self._behaviour = functools.partial(_behaviour_action, explore_std=self.config.explore_std)

    def make_policy(self, key: PRNGKey) -> eqx.Module:
        return DeterministicPolicy(self.obs_dim, self.action_dim, self.low, self.high, self.config.hidden, key=key)

    def mode_action(self, policy: eqx.Module, obs: Array) -> Array:
        return policy(obs)

    def behaviour_action(self, policy: eqx.Module, obs: Array, key: PRNGKey) -> Array:
        return explore(policy, obs, key, self.config.explore_std)

    def improve(self, state: ModelBasedState, key: PRNGKey):
        before = TRACE_COUNT["improve"]
        out = policy_update(state, key, self.config, self.reward_fn, self.low, self.high)
        self.traces += TRACE_COUNT["improve"] - before
        return out


TRACE_COUNT = {"improve": 0}  # tests read this to check that an update compiles once per config


@eqx.filter_jit
def policy_update(state: ModelBasedState, key: PRNGKey, cfg: MBRLConfig, reward_fn, low: Array, high: Array):
    """Lecture step 3: ``cfg.policy_steps`` Adam steps on J(θ) through the frozen ``state.model``.

    A module-level jitted function (config and reward static): every learner in a process with the same config,
    env and shapes reuses one compiled program (the benchmark's later seeds pay no compilation).
    """
    TRACE_COUNT["improve"] += 1
    system = learned_system(state.model, reward_fn, low, high, cfg.horizon)
    optimizer = make_optimizer(cfg)

    def step(carry, k):
        policy, opt_state, skipped = carry
        starts = sample_starts(state.buffer, k, cfg.num_starts)
        value, grads = eqx.filter_value_and_grad(imagined_return)(policy, system, starts, cfg.horizon, cfg.gamma)
        grads = jax.tree.map(jnp.negative, grads)  # ascend J
        policy, opt_state, skip = adam_step_if_finite(policy, grads, opt_state, optimizer)
        return (policy, opt_state, skipped + skip), (value, optax.tree.norm(grads))

    carry = (state.policy, state.opt_state, state.skipped_updates)
    if cfg.policy_tol <= 0:
        (policy, opt_state, skipped), (values, norms) = jax.lax.scan(
            step, carry, jax.random.split(key, cfg.policy_steps))
        metrics = {"imagined_return": values[-1], "grad_norm": norms.mean(),
                   "policy_steps": jnp.asarray(cfg.policy_steps, jnp.float32)}
        return state._replace(policy=policy, opt_state=opt_state, skipped_updates=skipped), metrics

    # early stopping: chunks of policy_chunk steps while the chunk-mean imagined return still improves
    chunk = min(cfg.policy_chunk, cfg.policy_steps)
    n_chunks = -(-cfg.policy_steps // chunk)
    params, static = eqx.partition(carry, eqx.is_array)

    def run_chunk(loop):
        i, params, best, _, last, _ = loop
        carry, (values, norms) = jax.lax.scan(step, eqx.combine(params, static),
                                              jax.random.split(jax.random.fold_in(key, i), chunk))
        mean = values.mean()
        improved = (i == 0) | (mean > best + cfg.policy_tol * jnp.abs(best))
        return (i + 1, eqx.filter(carry, eqx.is_array), jnp.maximum(best, mean), improved, values[-1],
                norms.mean())

    def keep_going(loop):
        i, _, _, improved, _, _ = loop
        return (i < n_chunks) & improved

    init = (jnp.zeros((), jnp.int32), params, jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(True),
            jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
    i, params, _, _, last, norm = jax.lax.while_loop(keep_going, run_chunk, init)
    policy, opt_state, skipped = eqx.combine(params, static)
    metrics = {"imagined_return": last, "grad_norm": norm, "policy_steps": (i * chunk).astype(jnp.float32)}
    return state._replace(policy=policy, opt_state=opt_state, skipped_updates=skipped), metrics
