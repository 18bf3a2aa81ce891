"""REINFORCE: the likelihood-ratio (score-function) policy gradient.

Lecture, "Likelihood Ratio Policy Gradient":

    ĝ = 1/m Σ_i ∇θ log P(τ_i; θ) R(τ_i),   ∇θ log P(τ; θ) = Σ_t ∇θ log π_θ(u_t | s_t)

(no dynamics model needed). Variance reduction used here: the reward-to-go
G_t = Σ_{k≥t} γ^{k-t} r_k replaces R(τ) for the action at t (causality), minus
a baseline b(s_t): none, a running mean of G_t per time index, or a learned
value V(s_t) fitted to G_t by regression.

One ``train_iteration`` = one episode from each of ``num_envs`` Gymnasium envs
(the m sample paths), run in lockstep and reset with seeds drawn from the
state's key, followed by one jitted update. Terminated vs truncated: an
episode cut by the time limit is not over, so its reward-to-go is bootstrapped
with the value baseline, G_T = V(s_T) (with no learned value it is 0, i.e. the
truncated return is used as is — for CartPole-v1 the 500-step cap is the goal,
so this only matters for the value baseline).

Discrete actions use a categorical policy on MLP logits; continuous actions a
diagonal Gaussian with a state-independent learned log-std (the sample is
clipped into the action box when stepping the env; the log-likelihood is that
of the unclipped sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Literal, NamedTuple

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.distributions import CategoricalPolicy, GaussianPolicy
from pathwise.estimators.score_function import score_function_surrogate
from pathwise.networks import VCritic
from pathwise.types import Array, PRNGKey


# -- policies ---------------------------------------------------------------------

def make_policy(space: gym.Space, obs_dim: int, hidden, key: PRNGKey, log_std_init: float = 0.0) -> eqx.Module:
    """``CategoricalPolicy`` for ``Discrete`` spaces, unsquashed ``GaussianPolicy`` (learned log-std) for ``Box``."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(space.n), hidden, key=key)
    if isinstance(space, gym.spaces.Box):
        return GaussianPolicy(obs_dim, int(np.prod(space.shape)), hidden, key=key, init_log_std=log_std_init)
    raise ValueError(f"Unsupported action space {space!r}: use a Discrete or Box action space.")


# -- lockstep episodes from several Gymnasium envs ---------------------------------

class StepBatch(NamedTuple):
    """One lockstep step of N envs; ``active`` marks envs whose episode was still running."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray  # the true next observation, also on truncation
    terminated: np.ndarray
    truncated: np.ndarray
    active: np.ndarray


def make_envs(env_id: str, num_envs: int) -> list[gym.Env]:
    import pathwise.systems  # noqa: F401  (registers the pathwise/... ids)

    return [gym.make(env_id) for _ in range(num_envs)]


def max_episode_steps(env: gym.Env, default: int = 1000) -> int:
    """The env's own time limit, or ``default`` for an env without one (cut there, counted as truncation)."""
    spec = env.spec
    return int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else default


def lockstep_episodes(envs: list[gym.Env], seeds: np.ndarray, act: Callable[[np.ndarray, int], np.ndarray],
                      max_steps: int) -> Iterator[StepBatch]:
    """Run exactly one episode in each env (reset with ``seeds``), yielding one ``StepBatch`` per step.

    ``act(obs[N, d], t) -> actions[N, ...]`` is called for all envs (fixed shapes, so a jitted
    policy compiles once); finished envs are not stepped again, so every ``active`` entry is a
    real environment step and nothing needs an autoreset. An episode still running after
    ``max_steps`` steps is cut there and marked truncated.
    """
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    active = np.ones(len(envs), bool)
    t = 0
    while active.any():
        actions = np.asarray(act(obs, t))
        next_obs, reward = obs.copy(), np.zeros(len(envs), np.float32)
        term, trunc = np.zeros(len(envs), bool), np.zeros(len(envs), bool)
        for i in np.flatnonzero(active):
            a = int(actions[i]) if isinstance(envs[i].action_space, gym.spaces.Discrete) else np.clip(
                actions[i], envs[i].action_space.low, envs[i].action_space.high)
            next_obs[i], reward[i], term[i], trunc[i], _ = envs[i].step(a)
        trunc |= active & ~term & (t == max_steps - 1)
        yield StepBatch(obs, actions, reward, next_obs, term, trunc, active.copy())
        active &= ~(term | trunc)
        obs, t = next_obs, t + 1


def env_seeds(key: PRNGKey, n: int) -> np.ndarray:
    return np.asarray(jax.random.randint(key, (n,), 0, 2**31 - 1))


# -- the estimator ------------------------------------------------------------------

class Episodes(NamedTuple):
    """m episodes padded to T steps (leading axes [m, T]); ``mask`` is 1 on real steps."""

    obs: Array
    actions: Array
    rewards: Array
    mask: Array
    truncated: Array  # [m]: the episode was cut by the time limit (bootstrap from final_obs)
    final_obs: Array  # [m, d]: the observation after the last real step


def pad_episodes(steps: list[StepBatch], horizon: int) -> Episodes:
    """Stack lockstep ``StepBatch``es into fixed-shape [m, horizon] arrays (zero padded)."""
    def stack(name):
        x = np.stack([getattr(s, name) for s in steps], axis=1)
        pad = [(0, 0), (0, horizon - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, pad)

    mask = stack("active")
    last = mask.sum(1) - 1
    rows = np.arange(mask.shape[0])
    return Episodes(stack("obs").astype(np.float32), stack("action"), stack("reward").astype(np.float32),
                    mask.astype(np.float32), stack("truncated")[rows, last].astype(np.float32),
                    stack("next_obs")[rows, last].astype(np.float32))


def padded_reward_to_go(rewards: Array, mask: Array, bootstrap: Array, gamma: float) -> Array:
    """G_t = r_t + γ G_{t+1} on real steps, G_T = ``bootstrap`` after the last one (one episode, [T])."""
    def back(carry, x):
        r, m = x
        g = jnp.where(m > 0, r + gamma * carry, carry)
        return g, g

    _, g = jax.lax.scan(back, bootstrap, (rewards, mask), reverse=True)
    return g * mask


def reinforce_loss(policy: eqx.Module, obs: Array, actions: Array, advantages: Array, mask: Array,
                   entropy_coef: float = 0.0) -> Array:
    """−1/m Σ_i Σ_t log π_θ(u_t|s_t) A_t (lecture: ĝ = 1/m Σ_i Σ_t ∇θ log π_θ(u_t^i|s_t^i) R), minus an entropy bonus."""
    logp = jax.vmap(jax.vmap(lambda o, a: policy(o).log_prob(a)))(obs, actions)
    ent = jax.vmap(jax.vmap(lambda o: policy(o).entropy()))(obs)
    surrogate = score_function_surrogate(mask * logp, advantages)
    return -(surrogate + entropy_coef * jnp.sum(mask * ent)) / obs.shape[0]


def value_loss(value: eqx.Module, obs: Array, targets: Array, mask: Array) -> Array:
    """Mean over real steps of (V(s_t) − G_t)²."""
    v = jax.vmap(jax.vmap(value))(obs)
    return jnp.sum(mask * (v - targets) ** 2) / jnp.maximum(mask.sum(), 1.0)


# -- configuration and state ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """REINFORCE options; the defaults are tuned for CartPole-v1."""

    num_envs: int = 8
    """Episodes per update (m in the lecture's ĝ), run in lockstep."""
    gamma: float = 0.99
    """Discount of the reward-to-go."""
    baseline: Literal["none", "mean", "value"] = "value"
    """b(s_t): none, a running mean of G_t per time index, or a learned value V(s_t)."""
    lr: float = 3e-3
    """Adam step size of the policy."""
    value_lr: float = 3e-3
    """Adam step size of the value baseline."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the value network."""
    value_steps: int = 20
    """Full-batch value regression steps per iteration (one scanned jit call)."""
    mean_decay: float = 0.9
    """Decay of the running-mean baseline (b ← decay·b + (1−decay)·mean G)."""
    normalize_advantages: bool = True
    """Scale advantages to zero mean and unit variance over the batch (keeps step sizes comparable)."""
    entropy_coef: float = 0.0
    """Weight of the policy entropy bonus."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip of the policy step."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions only)."""


class State(NamedTuple):
    policy: eqx.Module
    value: eqx.Module
    policy_opt: Any
    value_opt: Any
    mean_baseline: Array  # [T] running mean of G_t per time index
    key: PRNGKey
    env_steps: Array


def _optimizers(config: Config):
    pol = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
    return pol, optax.adam(config.value_lr)


def init(key: PRNGKey, space: gym.Space, obs_dim: int, horizon: int, config: Config) -> State:
    kp, kv, key = jax.random.split(key, 3)
    policy = make_policy(space, obs_dim, config.hidden, kp, config.log_std_init)
    value = VCritic(obs_dim, config.value_hidden, key=kv, act="tanh")
    pol_opt, val_opt = _optimizers(config)
    return State(policy, value, pol_opt.init(policy), val_opt.init(value), jnp.zeros(horizon), key,
                 jnp.zeros((), jnp.int32))


def _advantages(state: State, ep: Episodes, config: Config) -> tuple[Array, Array]:
    """Reward-to-go G (bootstrapped with V on truncation) and advantages G − b."""
    v_final = jax.vmap(state.value)(ep.final_obs)
    use_v = config.baseline == "value"
    boot = ep.truncated * v_final if use_v else jnp.zeros_like(v_final)
    g = jax.vmap(padded_reward_to_go, (0, 0, 0, None))(ep.rewards, ep.mask, boot, config.gamma)
    if config.baseline == "value":
        b = jax.vmap(jax.vmap(state.value))(ep.obs)
    elif config.baseline == "mean":
        b = jnp.broadcast_to(state.mean_baseline, g.shape)
    else:
        b = jnp.zeros_like(g)
    adv = (g - b) * ep.mask
    if config.normalize_advantages:
        n = jnp.maximum(ep.mask.sum(), 1.0)
        mu = adv.sum() / n
        std = jnp.sqrt((((adv - mu) * ep.mask) ** 2).sum() / n)
        adv = (adv - mu) / (std + 1e-8) * ep.mask
    return g, adv


def _fit_value(state: State, ep: Episodes, g: Array, config: Config) -> tuple[eqx.Module, Any, Array]:
    _, val_opt = _optimizers(config)

    def step(carry, _):
        value, opt = carry
        loss, grads = jax.value_and_grad(value_loss)(value, ep.obs, g, ep.mask)
        updates, opt = val_opt.update(grads, opt, value)
        return (optax.apply_updates(value, updates), opt), loss

    (value, opt), losses = jax.lax.scan(step, (state.value, state.value_opt), None, length=config.value_steps)
    return value, opt, losses[-1]


def update(state: State, ep: Episodes, config: Config) -> tuple[State, dict[str, Array]]:
    """One REINFORCE step on m padded episodes (jit with ``config`` static)."""
    g, adv = _advantages(state, ep, config)
    pol_opt, _ = _optimizers(config)
    loss, grads = jax.value_and_grad(reinforce_loss)(state.policy, ep.obs, ep.actions, adv, ep.mask,
                                                     config.entropy_coef)
    updates, policy_opt = pol_opt.update(grads, state.policy_opt, state.policy)
    policy = optax.apply_updates(state.policy, updates)
    value, value_opt, v_loss = state.value, state.value_opt, jnp.zeros(())
    if config.baseline == "value":
        value, value_opt, v_loss = _fit_value(state, ep, g, config)
    counts = ep.mask.sum(0)
    batch_mean = jnp.where(counts > 0, (g * ep.mask).sum(0) / jnp.maximum(counts, 1.0), state.mean_baseline)
    mean_b = config.mean_decay * state.mean_baseline + (1 - config.mean_decay) * batch_mean
    steps = ep.mask.sum().astype(jnp.int32)
    new = state._replace(policy=policy, value=value, policy_opt=policy_opt, value_opt=value_opt,
                         mean_baseline=mean_b, env_steps=state.env_steps + steps)
    return new, {"policy_loss": loss, "value_loss": v_loss, "episode_return": (ep.rewards * ep.mask).sum(1).mean()}


update_jit = jax.jit(update, static_argnames="config")


@jax.jit
def sample_actions(policy: eqx.Module, obs: Array, key: PRNGKey, t: Array) -> Array:
    """One action per row of ``obs``, keys folded in with the step index ``t``."""
    keys = jax.random.split(jax.random.fold_in(key, t), obs.shape[0])
    return jax.vmap(lambda o, k: policy(o).sample(k))(obs, keys)


@jax.jit
def policy_mode(policy: eqx.Module, obs: Array) -> Array:
    return policy(obs).mode()


@jax.jit
def policy_sample(policy: eqx.Module, obs: Array, key: PRNGKey) -> Array:
    return policy(obs).sample(key)


# -- the learner -----------------------------------------------------------------------

class PolicyActMixin:
    """``act`` for learners whose ``self.state.policy`` maps an observation to a distribution."""

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs = jnp.asarray(obs, jnp.float32)
        if deterministic:
            a = policy_mode(self.state.policy, obs)
        else:  # a key of its own, so evaluation never perturbs training
            self._act_key, k = jax.random.split(self._act_key)
            a = policy_sample(self.state.policy, obs, k)
        if self.discrete:
            return np.asarray(a).item()
        return np.clip(np.asarray(a), self.action_space.low, self.action_space.high)


class REINFORCE(PolicyActMixin, Learner):
    name = "reinforce"
    Config = Config
    discrete_ok = True
    continuous_ok = True

    def __init__(self, env_id: str, config: Config | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        if self.config.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1 (got {self.config.num_envs}); it is the number of "
                             "episodes per gradient step.")
        if self.config.baseline not in ("none", "mean", "value"):
            raise ValueError(f"Unknown baseline {self.config.baseline!r}; choose 'none', 'mean' or 'value'.")
        self.envs = make_envs(env_id, self.config.num_envs)
        self.action_space = self.envs[0].action_space
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.horizon = max_episode_steps(self.envs[0])
        obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.state = init(jax.random.key(self.seed), self.action_space, obs_dim, self.horizon, self.config)
        self._act_key = jax.random.key(self.seed + 1)

    def train_iteration(self) -> dict[str, float]:
        key, k_env, k_act = jax.random.split(self.state.key, 3)
        self.state = self.state._replace(key=key)
        policy = self.state.policy
        act = lambda obs, t: sample_actions(policy, jnp.asarray(obs), k_act, jnp.int32(t))  # noqa: E731
        steps = list(lockstep_episodes(self.envs, env_seeds(k_env, len(self.envs)), act, self.horizon))
        self.state, metrics = update_jit(self.state, pad_episodes(steps, self.horizon), self.config)
        self.env_steps = int(self.state.env_steps)
        return {k: float(v) for k, v in metrics.items()}

    def get_state(self) -> State:
        return self.state

    def set_state(self, state: State) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)
