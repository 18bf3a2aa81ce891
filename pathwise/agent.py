"""The user-facing facade: ``pw.make``, ``agent.learn``, ``agent.predict``, ``agent.save``, ``pw.load``.

    import pathwise as pw
    agent = pw.make("svg-inf", env="Pendulum-v1", seed=0)
    agent.learn(2_000, progress_bar=True)
    action, _ = agent.predict(obs, deterministic=True)
    agent.save("pendulum.npz")
    agent = pw.load("pendulum.npz")

``predict`` follows Stable-Baselines3 (returns ``(action, None)``, accepts one
observation or a batch), so code written for SB3 policies works unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pathwise import checkpoint as ckpt
from pathwise import train as _train
from pathwise.algorithms import get as get_algorithm


class Agent:
    """A learner plus the training driver that evaluates, logs and checkpoints it."""

    def __init__(self, trainer: _train.Trainer):
        self._trainer = trainer

    @property
    def learner(self):
        return self._trainer.learner

    @property
    def config(self):
        return self.learner.config

    @property
    def env_id(self) -> str:
        return self.learner.env_id

    @property
    def num_timesteps(self) -> int:
        """Environment steps consumed so far (SB3's name)."""
        return int(self.learner.env_steps)

    def learn(self, total_timesteps: int, *, progress_bar: bool = False, callback: Callable | None = None,
              reset_num_timesteps: bool = False) -> "Agent":
        """Train for ``total_timesteps`` more environment steps (SB3 semantics) and return ``self``.

        ``callback(info)`` gets each iteration's metrics; returning ``False`` stops training.
        """
        if total_timesteps <= 0:
            raise ValueError(f"total_timesteps must be positive, got {total_timesteps}.")
        start = 0 if reset_num_timesteps else self.num_timesteps
        self._trainer.run(start + int(total_timesteps), callback=callback, progress_bar=progress_bar)
        return self

    def evaluate(self, episodes: int = 10) -> dict[str, float]:
        """Deterministic evaluation on the Gymnasium environment (seeded episodes)."""
        return self._trainer.evaluate(episodes)

    def predict(self, observation: Any, deterministic: bool = True) -> tuple[np.ndarray | int, None]:
        """``(action, None)`` for one observation, or ``(actions, None)`` for a batch."""
        obs = np.asarray(observation, dtype=np.float32)
        space = self._obs_shape()
        if obs.shape == space:
            return self.learner.act(obs, deterministic=deterministic), None
        if obs.shape[1:] == space:
            return np.stack([np.asarray(self.learner.act(o, deterministic=deterministic)) for o in obs]), None
        raise ValueError(f"predict: observation has shape {obs.shape}, expected {space} or (batch, *{space}) "
                         f"for {self.env_id}.")

    def _obs_shape(self) -> tuple[int, ...]:
        if not hasattr(self, "_obs_shape_cache"):
            from pathwise.envs import make_env

            env = make_env(self.env_id)
            self._obs_shape_cache = tuple(env.observation_space.shape)
            env.close()
        return self._obs_shape_cache

    @property
    def summary(self) -> dict[str, Any]:
        return self._trainer.summary()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the full state (parameters, optimizer, data, RNG, counters) atomically to ``path``."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        ckpt.save(path, self.learner.get_state(), self._trainer._meta())
        return path

    def __repr__(self) -> str:
        return f"Agent({self.learner.name!r}, env={self.env_id!r}, seed={self.learner.seed}, steps={self.num_timesteps})"


def make(algo: str, env: str, seed: int = 0, *, config: Any = None, use_preset: bool = True,
         out: str | os.PathLike | None = None, eval_every: int | None = None, eval_episodes: int | None = None,
         quiet: bool | None = None, **overrides: Any) -> Agent:
    """Build an agent: ``pw.make("ddpg", env="Pendulum-v1", seed=0, lr=1e-3)``.

    Keyword arguments not listed are algorithm config keys (they override the
    preset for ``(algo, env)`` and ``config``). With ``out`` the agent writes a
    run directory (metrics, TensorBoard, plots, checkpoints) as ``pathwise train`` does.
    """
    env = _train.canonical_env_id(env)
    cls = get_algorithm(algo)
    cfg, run = _train.build_config(cls, env, config=config, use_preset=use_preset, overrides=overrides)
    learner = _train.make_learner(cls.name, env, cfg, seed)
    trainer = _train.Trainer(learner, out=out,
                             eval_every=int(eval_every or run.get("eval_every", _train.DEFAULT_EVAL_EVERY)),
                             eval_episodes=int(eval_episodes or run.get("eval_episodes", 10)), quiet=quiet)
    return Agent(trainer)


def load(path: str | os.PathLike, *, quiet: bool | None = None) -> Agent:
    """Load an agent saved with ``agent.save`` or a run directory (its ``checkpoints/last.npz``)."""
    path = Path(path)
    if path.is_dir():
        return Agent(_train.open_run(path, quiet=quiet))
    meta, _ = ckpt.read(path)
    for key in ("algorithm", "env_id", "config", "seed"):
        if key not in meta:
            raise ckpt.CheckpointError(f"{path} is not a pathwise agent file (its metadata has no {key!r}).")
    cls = get_algorithm(meta["algorithm"])
    cfg = ckpt.config_from_dict(cls.Config, meta["config"], source=f"config in {path}")
    learner = _train.make_learner(cls.name, meta["env_id"], cfg, meta["seed"])
    trainer = _train.Trainer(learner, eval_every=meta.get("eval_every", _train.DEFAULT_EVAL_EVERY),
                             eval_episodes=meta.get("eval_episodes", 10), eval_seed=meta.get("eval_seed"),
                             quiet=quiet)
    trainer.load_checkpoint(path)
    return Agent(trainer)
