"""Black-box interaction with Gymnasium environments (single and vectorized).

Everything a model-free or model-based learner needs to *collect data* from an
environment it cannot differentiate through:

- ``make_env(env_id, seed)``: any Gymnasium id or ``pathwise/...`` id, with
  episode returns/lengths recorded; unknown ids get a helpful ``ValueError``.
- ``evaluate(act, env_id, episodes, seed)``: deterministic-seeded evaluation
  (episode ``i`` starts from ``reset(seed=seed + i)``); ``evaluate_lockstep`` plays
  the same episodes at once, one batched ``act(obs, t)`` call per step.
- ``run_episode(env, act, seed)``: one episode as a stacked ``Transition``.
- ``make_vec_env`` + ``Collector``: step ``num_envs`` copies in lockstep and
  get ``Transition`` arrays of shape ``(num_steps, num_envs, ...)``.

Terminated vs truncated (the bootstrapping rule): a transition that ends in a
true terminal state has ``terminated=True`` and its target must not bootstrap;
one cut by the time limit has ``truncated=True`` and ``next_obs`` is the *true*
final observation, so a learner bootstraps ``r + gamma V(next_obs)`` from it.
Vector envs run in Gymnasium's ``SAME_STEP`` autoreset mode: the reset happens
inside the step that ended the episode, the final observation comes from
``info["final_obs"]``, and no transition is wasted on a reset step.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordEpisodeStatistics

from pathwise.types import Transition

Act = Callable[[np.ndarray], Any]


class EvalResult(NamedTuple):
    """Returns of ``evaluate``: summary statistics and the per-episode values."""

    mean: float
    std: float
    returns: np.ndarray  # (episodes,) undiscounted return of each episode
    lengths: np.ndarray  # (episodes,) number of steps of each episode


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if Gymnasium knows it, else a ``ValueError`` with close matches and a fix."""
    from pathwise.registry import check_id

    return check_id(env_id)


def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` wrapped in ``RecordEpisodeStatistics``.

    ``seed`` (optional) seeds the env (by a first ``reset(seed=seed)``) and its
    action space, so ``env.reset()`` and ``env.action_space.sample()`` are
    reproducible afterwards. Completed-episode statistics are in
    ``info["episode"]`` and ``env.return_queue`` / ``env.length_queue``.
    """
    env = RecordEpisodeStatistics(gym.make(check_env_id(env_id), **kwargs))
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
    return env


def to_env_action(action: Any, space: gym.Space) -> Any:
    """Convert a policy's output to what ``space`` accepts (int for ``Discrete``, float32 array for ``Box``)."""
    action = np.asarray(action)
    if isinstance(space, gym.spaces.Discrete):
        if action.size != 1:
            raise ValueError(
                f"A discrete action must be a single integer index, got shape {action.shape}; "
                "take the argmax of one-hot/relaxed actions before stepping the env."
            )
        return int(action.reshape(()))
    if isinstance(space, gym.spaces.Box):
        if action.shape != space.shape:
            raise ValueError(f"The action must have shape {space.shape}, got {action.shape}.")
        return action.astype(space.dtype)
    return action


def run_episode(
    env: gym.Env, act: Act, seed: int | None = None, max_steps: int | None = None
) -> tuple[Transition, float, int]:
    """Run one episode of ``act(obs) -> action`` from ``env.reset(seed=seed)``.

    Returns ``(transitions, return, length)``: the transitions stacked along a
    leading time axis (numpy arrays), the undiscounted return and the number of
    steps. The episode stops at termination, at the env's time limit, or after
    ``max_steps`` steps (then the last transition is marked ``truncated``).
    """
    obs, _ = env.reset(seed=seed)
    rows: list[Transition] = []
    total = 0.0  # summed in float64 from the env's own rewards
    while True:
        action = to_env_action(act(obs), env.action_space)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        truncated = bool(truncated) or (max_steps is not None and len(rows) + 1 >= max_steps)
        rows.append(Transition(obs, np.asarray(action), np.float32(reward), next_obs, bool(terminated), truncated))
        total += float(reward)
        obs = next_obs
        if terminated or truncated:
            break
    return Transition(*(np.stack(field) for field in zip(*rows))), total, len(rows)


def collect_padded(env: gym.Env, act: Callable[[np.ndarray, int], Any], seed: int, max_steps: int
                   ) -> tuple[Transition, int, float]:
    """One episode of ``act(obs, t)`` from ``env.reset(seed=seed)``, zero-padded to ``max_steps`` rows.

    Observations are flattened and float32; Box actions float32, Discrete ones int32. Rows past the
    episode are padding, so episodes of any length share one compiled update. Returns
    ``(transitions, length, undiscounted return)``.
    """
    step = itertools.count()
    episode, total, length = run_episode(env, lambda obs: act(obs, next(step)), seed=seed, max_steps=max_steps)
    return pad_episode(episode, max_steps), length, total


def pad_episode(episode: Transition, length: int) -> Transition:
    """A recorded episode (leading axis ``n <= length``) with flat float32 observations, zero-padded to ``length``."""
    n = episode.obs.shape[0]

    def pad(x, dtype, flat):
        x = np.asarray(x).astype(dtype).reshape(n, -1) if flat else np.asarray(x).astype(dtype)
        out = np.zeros((length, *x.shape[1:]), dtype)
        out[:n] = x
        return out

    discrete = np.issubdtype(np.asarray(episode.action).dtype, np.integer)
    return Transition(pad(episode.obs, np.float32, True),
                      pad(episode.action, np.int32, False) if discrete else pad(episode.action, np.float32, True),
                      pad(episode.reward, np.float32, False), pad(episode.next_obs, np.float32, True),
                      pad(episode.terminated, bool, False), pad(episode.truncated, bool, False))


def evaluate(
    act: Act, env_id: str | gym.Env, episodes: int = 10, seed: int = 0, max_steps: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Return statistics of ``act`` over ``episodes`` episodes; episode ``i`` uses ``reset(seed=seed + i)``.

    ``env_id`` is an id (a fresh env is made and closed) or an existing env.
    ``act`` should be deterministic for a reproducible result. ``progress(done)`` is called after each episode.
    """
    if episodes < 1:
        raise ValueError(f"evaluate: episodes must be >= 1, got {episodes}.")
    env = make_env(env_id) if isinstance(env_id, str) else env_id
    try:
        results = []
        for i in range(episodes):
            results.append(run_episode(env, act, seed=seed + i, max_steps=max_steps)[1:])
            if progress is not None:
                progress(i + 1)
    finally:
        if isinstance(env_id, str):
            env.close()
    returns = np.array([r for r, _ in results], np.float64)
    lengths = np.array([n for _, n in results], np.int64)
    return EvalResult(float(returns.mean()), float(returns.std()), returns, lengths)


def evaluate_lockstep(
    act: Callable[[np.ndarray, int], Any], env_id: str, episodes: int = 10, seed: int = 0,
    max_steps: int | None = None, progress: Callable[[int], None] | None = None, batch: int = 32,
) -> EvalResult:
    """:func:`evaluate`'s episodes (episode ``i`` from ``reset(seed=seed + i)``), played ``batch`` at a time in
    lockstep: one copy of the environment per episode, stepped together, and one call ``act(obs, t)`` per step for
    the group (``obs``: the episodes' flat float32 observations stacked, ``[n, obs_dim]``; ``t``: the step, 0 at the
    group's start; returns one action per row). An episode that has ended keeps its last observation in the group,
    so the group's shape never changes (one compiled program), and its action is ignored. For a batched policy
    (one jitted call per step instead of one per episode and step) or an actor that keeps a state per episode
    (a warm-started planner: ``t == 0`` starts new episodes). ``progress(done)`` is called as episodes end."""
    if episodes < 1 or batch < 1:
        raise ValueError(f"evaluate_lockstep: episodes and batch must be >= 1, got {episodes} and {batch}.")
    returns, lengths = np.zeros(episodes, np.float64), np.zeros(episodes, np.int64)
    for first in range(0, episodes, batch):
        group = range(first, min(first + batch, episodes))
        copies = [make_env(env_id) for _ in group]
        try:
            _play_together(act, copies, [seed + i for i in group], returns[group.start:group.stop],
                           lengths[group.start:group.stop], max_steps,
                           None if progress is None else (lambda n, done=first: progress(done + n)))
        finally:
            for env in copies:
                env.close()
    return EvalResult(float(returns.mean()), float(returns.std()), returns, lengths)


def _play_together(act: Callable[[np.ndarray, int], Any], copies: list[gym.Env], seeds: list[int],
                   returns: np.ndarray, lengths: np.ndarray, max_steps: int | None,
                   progress: Callable[[int], None] | None) -> None:
    """One group of :func:`evaluate_lockstep`: fills ``returns`` and ``lengths`` (views) in place."""
    obs = np.stack([np.asarray(env.reset(seed=s)[0], np.float32).reshape(-1) for env, s in zip(copies, seeds)])
    running = np.ones(len(copies), bool)
    for t in itertools.count():
        actions = act(obs, t)
        for i in np.flatnonzero(running):
            env = copies[i]
            next_obs, reward, terminated, truncated, _ = env.step(to_env_action(actions[i], env.action_space))
            returns[i] += float(reward)
            lengths[i] += 1
            obs[i] = np.asarray(next_obs, np.float32).reshape(-1)
            if terminated or truncated or (max_steps is not None and lengths[i] >= max_steps):
                running[i] = False
                if progress is not None:
                    progress(len(copies) - int(running.sum()))
        if not running.any():
            return


def reset_states(env_id: str, episodes: int, seed: int = 0) -> np.ndarray:
    """The internal states ``env.reset(seed=seed + i)`` draws, i < ``episodes``, stacked as float32.

    These are the start states ``evaluate(..., seed=seed)`` plays from, so a simulated twin
    (``pw.systems.Pendulum`` for ``Pendulum-v1``) can be scored on exactly the same episodes in one
    vmapped program. Needs an env that keeps its state in ``env.unwrapped.state`` (classic control).
    """
    if episodes < 1:
        raise ValueError(f"reset_states: episodes must be >= 1, got {episodes}.")
    env = make_env(env_id)
    try:
        states = []
        for i in range(episodes):
            env.reset(seed=seed + i)
            state = getattr(env.unwrapped, "state", None)
            if state is None:
                raise ValueError(f"reset_states: {env_id} keeps no `unwrapped.state`; only envs that expose "
                                 "their state (Gymnasium's classic control) can be replayed in a System.")
            states.append(np.asarray(state, np.float32))
    finally:
        env.close()
    return np.stack(states)


def make_vec_env(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` in a ``SyncVectorEnv`` with ``SAME_STEP`` autoreset.

    With ``seed``, sub-env ``i`` is reset with ``seed + i`` (Gymnasium's rule)
    and the action space is seeded.
    """
    if num_envs < 1:
        raise ValueError(f"make_vec_env: num_envs must be >= 1, got {num_envs}.")
    check_env_id(env_id)
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **kwargs,
    )
    if seed is not None:
        envs.reset(seed=int(seed))
        envs.action_space.seed(int(seed))
    return envs


class Collector:
    """Steps a vector env with a batched policy and returns ``Transition`` arrays.

    ``act(obs_batch) -> action_batch`` receives observations of shape
    ``(num_envs, *obs_shape)``. ``collect(act, num_steps)`` returns a
    ``Transition`` whose fields have shape ``(num_steps, num_envs, ...)``; the
    vector env keeps running between calls (episodes span calls). On the step
    that ends an episode, ``next_obs`` is the true final observation (from
    ``info["final_obs"]``), not the first observation of the next episode.
    Completed episodes are appended to ``episode_returns`` / ``episode_lengths``
    (and those completed during the latest ``collect`` call to ``last_returns`` /
    ``last_lengths``).
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int | None = None):
        mode = envs.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"Collector needs a vector env with autoreset_mode=SAME_STEP, got {mode}; build it with "
                "pathwise.envs.make_vec_env(env_id, num_envs, seed)."
            )
        self.envs = envs
        self.num_envs = envs.num_envs
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.last_returns: list[float] = []
        self.last_lengths: list[int] = []
        self.reset(seed)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start fresh episodes in every sub-env (sub-env ``i`` seeded with ``seed + i``)."""
        self.obs, _ = self.envs.reset(seed=seed)
        self._running_return = np.zeros(self.num_envs, np.float64)
        self._running_length = np.zeros(self.num_envs, np.int64)
        return self.obs

    def _record(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self._running_return += rewards
        self._running_length += 1
        for i in np.flatnonzero(done):
            for returns, lengths in ((self.episode_returns, self.episode_lengths), (self.last_returns, self.last_lengths)):
                returns.append(float(self._running_return[i]))
                lengths.append(int(self._running_length[i]))
        self._running_return[done] = 0.0
        self._running_length[done] = 0

    def step(self, act: Callable[[np.ndarray], Any]) -> Transition:
        """One lockstep transition of every sub-env (fields of shape ``(num_envs, ...)``)."""
        actions = np.asarray(act(self.obs))
        if isinstance(self.envs.single_action_space, gym.spaces.Discrete):
            actions = actions.astype(np.int64).reshape(self.num_envs)
        next_obs, rewards, terminated, truncated, info = self.envs.step(actions)
        done = np.logical_or(terminated, truncated)
        true_next = np.array(next_obs, copy=True)
        if done.any():
            for i in np.flatnonzero(info["_final_obs"]):
                true_next[i] = info["final_obs"][i]
        self._record(np.asarray(rewards, np.float64), done)
        out = Transition(self.obs, actions, np.asarray(rewards, np.float32), true_next,
                         np.asarray(terminated, bool), np.asarray(truncated, bool))
        self.obs = next_obs
        return out

    def collect(self, act: Callable[[np.ndarray], Any], num_steps: int) -> Transition:
        """``num_steps`` lockstep transitions, stacked: fields of shape ``(num_steps, num_envs, ...)``."""
        if num_steps < 1:
            raise ValueError(f"Collector.collect: num_steps must be >= 1, got {num_steps}.")
        self.last_returns, self.last_lengths = [], []
        rows = [self.step(act) for _ in range(num_steps)]
        return Transition(*(np.stack(field) for field in zip(*rows)))

    def close(self) -> None:
        """Close the vector env and its sub-environments (worker processes, render windows)."""
        self.envs.close()


__all__ = ["Collector", "EvalResult", "check_env_id", "collect_padded", "evaluate", "evaluate_lockstep", "make_env",
           "make_vec_env", "pad_episode", "reset_states", "run_episode", "to_env_action"]
