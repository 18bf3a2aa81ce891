"""The user-facing facade: ``pw.make``, ``agent.learn``, ``agent.predict``, ``agent.save``, ``pw.load``.

    import pathwise as pw
    agent = pw.make("svg-inf", env="Pendulum-v1", seed=0)
    agent.learn(2_000, progress_bar=True)
    action, _ = agent.predict(obs, deterministic=True)
    agent.save("pendulum.npz")
    agent = pw.load("pendulum.npz")
    agent.export("pendulum.onnx")         # the policy alone: onnx, npz or safetensors

``predict`` follows Stable-Baselines3 (returns ``(action, None)``, accepts one
observation or a batch), so code written for SB3 policies works unchanged.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pathwise import checkpoint as ckpt
from pathwise import train as _train


class Agent:
    """A run plus the training driver that evaluates, logs and checkpoints it."""

    def __init__(self, trainer: _train.Trainer):
        self._trainer = trainer

    @property
    def run(self) -> _train.Run:
        """The underlying :class:`pathwise.train.Run`: the functional state (``run.carry``), spec and loop."""
        return self._trainer.run

    @property
    def config(self) -> Any:
        """The algorithm's frozen ``Config`` this agent was made with (preset and overrides applied)."""
        return self.run.config

    @property
    def env_id(self) -> str:
        """The environment's id as pathwise registered it (a Gymnasium id, or the name given to a user's env)."""
        return self.run.env_id

    @property
    def num_timesteps(self) -> int:
        """Environment steps consumed so far (SB3's name)."""
        return self.run.env_steps

    def learn(self, total_timesteps: int, *, progress_bar: bool = False, callback: Callable | None = None,
              reset_num_timesteps: bool = False) -> "Agent":
        """Train for ``total_timesteps`` more environment steps (SB3 semantics) and return ``self``.

        ``callback(info)`` gets each iteration's metrics; returning ``False`` stops training.
        """
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, float, np.integer)) or \
                not math.isfinite(total_timesteps) or int(total_timesteps) != total_timesteps or total_timesteps <= 0:
            raise ValueError(f"learn: total_timesteps must be a positive whole number, got {total_timesteps!r}: the "
                             "environment steps to train for; e.g. agent.learn(2_000).")
        start = 0 if reset_num_timesteps else self.num_timesteps
        self._trainer.train(start + int(total_timesteps), callback=callback, progress_bar=progress_bar)
        return self

    def evaluate(self, episodes: int = 10, planner: str | bool | None = None, **plan: Any) -> dict[str, float]:
        """Deterministic evaluation on the Gymnasium environment (seeded episodes, in lockstep), as the run's own
        evaluations play it: the policy, or the planning agent where the run says ``eval_planner`` (pets: its own CEM,
        the plan carried from step to step). ``planner``
        chooses: False the policy; 'mppi' or 'cem' (or 'run' / True: the run's own ``act_planner``, MPPI if it
        acted by its policy) a model-based run's planning agent (:meth:`planner`; ``plan``: its ``horizon``,
        ``samples``, ``iterations``, ``policy_fraction``)."""
        if planner in (None, False) and plan:
            raise ValueError(f"evaluate: {sorted(plan)} set the planner's options; pass planner='mppi', 'cem' or "
                             "'run' too, or leave them out to evaluate the policy.")
        options = planner if planner in (None, False) else \
            {"planner": None if planner in ("run", True) else planner, **plan}
        return self._trainer.evaluate(episodes, options)

    def planner(self, planner: str | None = None, **plan: Any) -> Any:
        """The planning agent of a model-based run, to deploy: ``ctrl = agent.planner("mppi", horizon=16)``, then
        ``ctrl.reset()`` at each episode's start and ``action = ctrl(obs)`` at each step (or a batch of episodes'
        observations at once). MPPI or CEM over the run's learned model, seeded by the policy, closed by the value
        (:meth:`pathwise.train.Run.planner`; options default to the run's ``act_plan_*``)."""
        return self.run.planner(planner, **plan)

    def predict(self, observation: Any, deterministic: bool = True) -> tuple[np.ndarray | int, None]:
        """``(action, None)`` for one observation, or ``(actions, None)`` for a batch (one jitted call)."""
        if not isinstance(deterministic, (bool, np.bool_)):
            raise ValueError(f"predict: deterministic must be True or False, got {deterministic!r}.")
        try:
            obs = np.asarray(observation, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"predict: the observation must be numbers of shape ({self.run.spec.obs_dim},) or a batch "
                             f"of them for {self.env_id}, got {str(observation)[:60]!r} ({exc}).") from None
        shape = (self.run.spec.obs_dim,)
        if obs.shape != shape and obs.shape[1:] != shape:
            raise ValueError(f"predict: observation has shape {obs.shape}, expected {shape} or (batch, *{shape}) "
                             f"for {self.env_id}.")
        if not np.all(np.isfinite(obs)):
            raise ValueError(f"predict: the observation contains NaN or inf ({obs}); pass a finite observation.")
        if obs.shape == shape:
            return self.run.act(obs, deterministic=deterministic), None
        return self.run.act_batch(obs, deterministic=deterministic), None

    @property
    def summary(self) -> dict[str, Any]:
        """The results so far, as ``summary.json`` holds them (:meth:`pathwise.train.Trainer.summary`)."""
        return self._trainer.summary()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the full state (parameters, optimizer, data, RNG, counters) atomically to ``path``."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        ckpt.check_writable(path, "save:")
        ckpt.save(path, self.run.carry, self._trainer.meta())
        return path

    def export(self, path: str | os.PathLike, format: str | None = None) -> Path:
        """Write the deterministic policy (what ``predict(obs, deterministic=True)`` returns) to ``path`` as
        ``onnx``, ``npz`` or ``safetensors`` (default: from the suffix); see :mod:`pathwise.export`."""
        from pathwise import export

        return export.export(self.run, path, format)

    def inference_fn(self, deterministic: bool = True) -> tuple[Callable[..., Any], dict[str, Any]]:
        """``(fn, params)``: ``fn(params, obs)`` is ``predict``'s action as a pure, jittable function of the policy's
        parameters, batched over the leading axes of ``obs`` (``fn(params, obs, key)`` when not deterministic)."""
        from pathwise import export

        return export.inference_fn(self.run, deterministic)

    def __repr__(self) -> str:
        return f"Agent({self.run.name!r}, env={self.env_id!r}, seed={self.run.seed}, steps={self.num_timesteps})"


def make(algo: str, env: Any = None, seed: int = 0, *, system: Any = None, config: Any = None,
         use_preset: bool = True, out: str | os.PathLike | None = None, eval_every: int | None = None,
         eval_episodes: int | None = None, quiet: bool | None = None, overwrite: bool = False,
         video_every: int | None = None, wandb_project: str | None = None, **overrides: Any) -> Agent:
    """Build an agent: ``pw.make("ddpg", env="Pendulum-v1", seed=0, actor_lr=1e-3)``.

    ``env`` is a Gymnasium id, a ``gymnasium.Env``, a zero-argument function or class returning one, a
    ``System``, or ``"package.module:name"`` of one of these; ``system`` (instead of ``env``) a differentiable
    ``System``: a pathwise id, an instance, its class or factory, or ``"package.module:Class"``
    (:mod:`pathwise.problems`). A run of an importable string resumes in any process; one of an object only
    in this one.

    Keyword arguments not listed are algorithm config keys (they override the preset for ``(algo, env)``
    and ``config``). With ``out`` the agent writes a run directory (metrics, TensorBoard, plots,
    checkpoints) as ``pathwise train`` does; a run already there is refused unless ``overwrite``. With
    ``video_every=N`` it also records the first episode of every N-th evaluation as ``out/videos/eval_STEP.gif``;
    with ``wandb_project`` it also logs to Weights & Biases.
    """
    from pathwise import problems

    if (env is None) == (system is None):
        raise ValueError("make: pass the environment as env= (a Gymnasium id, a gymnasium.Env or a factory of one) "
                         "or a differentiable system as system= (a pathwise System, its class, or "
                         f"'package.module:Class'), exactly one of them; got env={env!r:.60}, system={system!r:.60}.")
    env = problems.env_id(env) if system is None else problems.system_id(system)
    trainer, _ = _train.make_trainer(algo, env, seed, config=config, overrides=overrides, use_preset=use_preset,
                                     out=out, eval_every=eval_every, eval_episodes=eval_episodes, quiet=quiet,
                                     overwrite=overwrite, video_every=video_every, wandb_project=wandb_project)
    return Agent(trainer)


def load(path: str | os.PathLike, *, quiet: bool | None = None) -> Agent:
    """Load an agent saved with ``agent.save`` or a run directory (its ``checkpoints/last.npz``)."""
    path = Path(path)
    if path.is_dir():
        return Agent(_train.open_run(path, quiet=quiet))
    meta, _ = ckpt.read(path)
    trainer = _train.trainer_from_meta(meta, out=None, quiet=quiet, source=str(path))
    trainer.load_checkpoint(path)
    return Agent(trainer)
