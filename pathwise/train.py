"""The training driver: one run of any algorithm, evaluated, logged and checkpointed.

A :class:`Run` is an algorithm (``pathwise.algorithms``) on one environment with one seed: its
:class:`~pathwise.spec.EnvSpec`, the loop that feeds it (``pathwise.loops``) and the loop's *carry*
(everything the run resumes from). The :class:`Trainer` repeatedly calls ``run.iteration()`` until a
budget of environment steps is spent, and around it does what a user expects from a run: periodic
deterministic evaluation on the Gymnasium environment, a progress bar, metrics to CSV and TensorBoard,
a learning-curve plot, best and last checkpoints (written atomically), ``summary.json``, exact resume,
and protection against non-finite updates. Nothing here depends on which algorithm runs.

Run directory layout::

    RUN_DIR/config.json          algorithm, env, seed, budget, full algorithm config
    RUN_DIR/metrics.csv          one row per training iteration
    RUN_DIR/eval.csv             one row per evaluation (each episode's return is kept in the checkpoints' evals)
    RUN_DIR/tb/                  TensorBoard events
    RUN_DIR/learning_curve.png   with the first solve, the point from which it stayed solved, the failure line
    RUN_DIR/summary.json         final/best return, first solve and whether it held (:func:`stability`)
    RUN_DIR/checkpoints/{last,best}.npz
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import algorithms, ceilings, compiled, loops, problems, registry, tblog
from pathwise import checkpoint as ckpt
from pathwise import config as cfg_mod
from pathwise import spec as spec_mod

DEFAULT_STEPS = 20_000
DEFAULT_EVAL_EVERY = 1000
DEFAULT_EVAL_EPISODES = 10
#: Key of each evaluation record (``Trainer.evals``, checkpoint meta) holding the episodes' returns; not in eval.csv.
EPISODE_RETURNS = "eval_returns"
MAX_CONSECUTIVE_NONFINITE = 3
NONFINITE_HINT = ("Lower the learning rates (`pathwise train ALGO --help` lists them), shorten the horizon or enable "
                  "gradient clipping, or run in float64 (--set float64=true).")


def nonfinite_hint(config: Any) -> str:
    """What to try after non-finite updates, naming the learning-rate options this algorithm's config has."""
    names = cfg_mod.rate_options(config)  # lr, or actor_lr first and one per other network
    if not names:
        return NONFINITE_HINT
    rates = " ".join(f"{n}={getattr(config, n):g}" for n in names)
    return (f"Lower the learning rates (now {rates}; e.g. --set {names[0]}={getattr(config, names[0]) / 10:g}), "
            "shorten the horizon or enable gradient clipping, or run in float64 (--set float64=true). If the "
            "environment's reward or observations can be NaN, fix them first.")


#: Seeds are whole numbers below this bound: a run's evaluation episodes and resets add up to 10,000 to its seed,
#: and Gymnasium's and NumPy's seeds must stay below 2**31.
SEED_LIMIT = 2**31 - 10_000


def is_seed(value: Any) -> bool:
    """Whether ``value`` is a whole number in ``[0, SEED_LIMIT)`` (a run's seed, or a planner's)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and 0 <= int(value) < SEED_LIMIT


def check_count(value: Any, name: str, example: int) -> int:
    """``value`` as a positive whole number, else a ``ValueError`` naming ``name``, the value and an example."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or \
            (isinstance(value, float) and not value.is_integer()) or not value >= 1:
        raise ValueError(f"{name}={value!r} must be a whole number >= 1; e.g. {name}={example}.")
    return int(value)


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf parameters or kept producing non-finite metrics."""


def quiet_default() -> bool:
    return os.environ.get("PATHWISE_QUIET", "") not in ("", "0", "false", "False")


# -- a run ----------------------------------------------------------------------------------------------------


@eqx.filter_jit
def _act_many(act, state: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    keys = jax.random.split(key, obs.shape[0])
    return jax.vmap(lambda o, k: act(state, o, k, deterministic))(obs, keys)


class Run:
    """One algorithm on one environment with one seed: its spec, its loop and the loop's carry."""

    def __init__(self, algorithm: algorithms.Algorithm, env_id: str, config: Any, seed: int):
        if not is_seed(seed):
            raise ValueError(f"seed={seed!r} must be a whole number in [0, 2**31 - 10000) (it seeds JAX and the "
                             "Gymnasium resets).")
        self.algorithm, self.env_id, self.seed = algorithm, env_id, int(seed)
        compiled.release_if_crowded()  # a process training run after run (tune's trials) must not run out of maps
        loops.precheck(algorithm, registry.record(env_id))
        self.spec = spec_mod.from_env(env_id)
        self.config = config = config.resolved(self.spec)  # what the record decides today, pinned for a resume
        if not self.spec.discrete and (env_id in registry.user_registered() or registry.is_own(env_id)):
            # a user's functions (registered, or its own System's reward on observations), traced once
            registry.check_functions(registry.record(env_id), self.spec.obs_dim, self.spec.action_dim)
        with self.precision():
            self.loop = loops.make(algorithm, self.spec, config)
            self.carry = self.loop.init(jax.random.key(self.seed))
        self._act_key = jax.random.key(self.seed + 1)  # only for act(deterministic=False): never the carry's

    def precision(self):
        """The run's floating-point precision as a context: JAX's x64 mode on for ``config.float64``, off otherwise,
        whatever the process default (``jax.enable_x64`` is thread-local), so a float64 run never changes
        another run's dtypes. Every method of the run enters it; enter it too around anything that makes or
        restores the run's arrays outside them (a checkpoint, a vmapped program over seeds)."""
        return precision(self.config)

    @property
    def name(self) -> str:
        """The algorithm's registered name (``"bptt"``, ``"svg-inf"``, ...)."""
        return self.algorithm.name

    @property
    def env_steps(self) -> int:
        """Environment steps consumed so far, counted as the loop counts them (real or simulated steps)."""
        return int(self.carry.env_steps)

    def iteration(self) -> dict[str, float]:
        """One iteration of the loop (it consumes environment steps); returns its metrics."""
        with self.precision():
            self.carry, metrics = self.loop.iteration(self.carry)
        return metrics

    def act(self, obs: np.ndarray, deterministic: bool = True) -> Any:
        """The action for one observation (an int for discrete actions), as Gymnasium takes it."""
        key = self._next_key(deterministic)
        obs = jnp.asarray(obs, jnp.float32).reshape(self.spec.obs_dim)
        with self.precision():
            action = loops.act_once(self.algorithm.act, self.carry.algo, obs, key, deterministic)
        return self._to_env(np.asarray(action))

    def act_batch(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations, in one jitted call."""
        key = self._next_key(deterministic)
        obs = jnp.asarray(obs, jnp.float32).reshape(len(obs), self.spec.obs_dim)
        with self.precision():
            actions = _act_many(self.algorithm.act, self.carry.algo, obs, key, deterministic)
        return self._to_env(np.asarray(actions))

    def _next_key(self, deterministic: bool) -> jax.Array:
        if deterministic:
            return self._act_key
        self._act_key, key = jax.random.split(self._act_key)
        return key

    def _to_env(self, action: np.ndarray) -> Any:
        if self.spec.discrete:
            return int(action) if action.ndim == 0 else action.astype(np.int64)
        low, high = np.asarray(self.spec.action_low), np.asarray(self.spec.action_high)
        return np.clip(action, low, high).astype(np.float32)

    def planner(self, planner: str | None = None, *, horizon: int | None = None, samples: int | None = None,
                iterations: int | None = None, policy_fraction: float | None = None, seed: int = 0) -> Any:
        """The planning agent of a model-based run (:class:`pathwise.loops.model_based.PlanningController`): MPPI
        or CEM (``planner``; default the run's ``act_planner``, else 'mppi') over the run's learned model, seeded by
        its policy and closed by its value, re-planned at every step from the step before. ``horizon``,
        ``samples``, ``iterations`` and ``policy_fraction`` default to the run's ``act_plan_*`` options; ``seed``
        keys the planner's samples. A run without a learned model (a known System, model-free) is refused."""
        if not is_seed(seed):
            raise ValueError(f"planner: seed={seed!r} must be a whole number in [0, 2**31 - 10000).")
        with self.precision():
            return self.loop.planning_controller(
                self.carry, jax.random.key(int(seed)), self.precision, act_planner=planner, act_plan_horizon=horizon,
                act_plan_samples=samples, act_plan_iterations=iterations, act_plan_policy_fraction=policy_fraction)

    def evaluate(self, episodes: int, seed: int, progress: Callable[[int], None] | None = None,
                 planner: dict[str, Any] | bool | None = None) -> Any:
        """The run's evaluation on ``episodes`` seeded episodes of the Gymnasium environment (episode ``i`` from
        ``reset(seed=seed + i)``), played in lockstep: one batched call per step
        (:func:`pathwise.envs.evaluate_lockstep`). Who plays: ``planner=None`` the run's own choice (the
        deterministic policy, or the planning agent where the config says ``eval_planner`` or a planning algorithm
        carries its plan, pets's ``plan_warm_start``: ``Loop.evaluates_by_planner``); ``False`` the policy;
        a dict of :meth:`planner`'s options (``{}``: the run's own) the planning agent. Returns an ``EvalResult``."""
        from pathwise.envs import evaluate_lockstep

        options = self.evaluated_planner(planner)
        if options is None:
            def act(obs: np.ndarray, t: int) -> np.ndarray:
                return self.act_batch(obs, deterministic=True)
        else:
            controller = self.planner(**{"seed": seed, **options})

            def act(obs: np.ndarray, t: int) -> np.ndarray:
                if t == 0:
                    controller.reset()
                return controller(obs)

        return evaluate_lockstep(act, self.env_id, episodes=episodes, seed=seed, progress=progress)

    def evaluated_planner(self, planner: dict[str, Any] | bool | None = None) -> dict[str, Any] | None:
        """:meth:`evaluate`'s ``planner`` decided: the planner's options, or None where the policy plays."""
        if planner is None:
            by_planner = getattr(self.config, "eval_planner", False) or self.loop.evaluates_by_planner(self.carry)
            return {} if by_planner else None
        if isinstance(planner, bool):
            return {} if planner else None
        return dict(planner)

    def episode_actor(self, seed: int, planner: dict[str, Any] | bool | None = None) -> Callable[[Any], Any]:
        """``act(obs)`` for one evaluation episode from its start (a render): the deterministic policy, or a fresh
        planning agent (``planner`` as :meth:`evaluate`'s), keyed as :meth:`evaluate`'s first episode."""
        options = self.evaluated_planner(planner)
        if options is None:
            return lambda obs: self.act(obs, deterministic=True)
        return self.planner(**{"seed": seed, **options})

    def describe(self) -> dict[str, Any]:
        """The loop's extra facts about this run for ``summary.json`` (e.g. a learned model's errors)."""
        with self.precision():
            return self.loop.describe(self.carry)


def precision(config: Any):
    """``jax.enable_x64(config.float64)``: the context a run with ``config`` computes in (:meth:`Run.precision`)."""
    return jax.enable_x64(bool(getattr(config, "float64", False)))


def make_run(algo: str, env: Any, seed: int = 0, *, config: Any = None, overrides: dict[str, Any] | None = None,
             use_preset: bool = True) -> tuple[Run, dict[str, Any]]:
    """A fresh :class:`Run` and the preset's run settings (``steps``, ``eval_every``, ``eval_episodes``).

    ``env`` is any form :func:`pathwise.problems.env_id` takes (an id, a ``gymnasium.Env``, a factory, a
    ``System``, ``"package.module:name"``). The config is built as defaults < preset for ``(algo, env)`` <
    ``config`` < ``overrides``.
    """
    algorithm = algorithms.get(algo)
    env = problems.env_id(env)
    preset, run = registry.record(env).preset(algorithm.name) if use_preset else ({}, {})
    config = cfg_mod.build(algorithm.Config, algorithm.name, preset, config, overrides)
    return Run(algorithm, env, config, seed), run


# -- the driver -----------------------------------------------------------------------------------------------


def _nan_in(tree: Any) -> bool:
    leaves = [x for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    return bool(leaves) and bool(jnp.any(jnp.stack([jnp.any(jnp.isnan(x)) for x in leaves])))


def _perturb_keys(tree: Any, n: int) -> Any:
    """Fold ``n`` into every typed PRNG key of ``tree`` (a different retry of the same iteration)."""
    def fold(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(x, n)
        return x

    return jax.tree.map(fold, tree)


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it: the block's bookkeeping is never half done.

    Outside the main thread (where Python never receives SIGINT) it does nothing.
    """
    pending: list[int] = []
    try:
        if signal.getsignal(signal.SIGINT) is None:  # a handler not set from Python: it could not be put back
            raise ValueError
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        signal.raise_signal(signal.SIGINT)  # to the handler that was there: KeyboardInterrupt by default


@dataclasses.dataclass
class Counters:
    """What a :class:`Trainer` has counted so far; saved in every checkpoint and reported in ``summary.json``.

    Times are wall-clock seconds; steps are environment steps; -1 means "not yet".
    """

    iterations: int = 0
    """Loop iterations done."""
    env_steps: int = 0
    """Environment steps consumed."""
    train_time: float = 0.0
    """Seconds spent training (evaluation excluded)."""
    eval_time: float = 0.0
    """Seconds spent evaluating."""
    next_eval: int = 0
    """The environment step at which the next evaluation is due."""
    best_return: float = -math.inf
    """The best mean evaluation return so far."""
    best_step: int = -1
    """The environment step of ``best_return``."""
    solved_step: int = -1
    """The environment step of the first evaluation at or above the solved threshold."""
    solved_time: float = -1.0
    """``train_time`` at ``solved_step``."""
    nonfinite_iterations: int = 0
    """Iterations whose update was skipped because it was not finite."""
    consecutive_nonfinite: int = 0
    """Non-finite iterations in a row (the run stops after too many)."""
    skipped_env_steps: int = 0
    """Environment steps consumed by the skipped iterations."""


#: The keys :func:`stability` adds to ``summary.json``.
STABILITY_KEYS = ("stably_solved_at", "solved_fraction_after_first", "worst_return_after_solved", "ends_solved",
                  "failed_episode_fraction")


def stability(evals: list[dict[str, Any]], solved_at: float | None, failure_below: float | None = None
              ) -> dict[str, Any]:
    """Whether a run stays solved, from its evaluations (``Trainer.evals``, in the order they ran).

    An evaluation is *solved* when its mean return is at least ``solved_at``. With ``first`` the first solved one:

    - ``stably_solved_at``: the env steps of the first evaluation from which every evaluation, that one included,
      is solved (None when the last evaluation is not solved);
    - ``solved_fraction_after_first``: the fraction of the evaluations from ``first`` on (``first`` included) that
      are solved;
    - ``worst_return_after_solved``: the lowest mean return among those evaluations;
    - ``ends_solved``: whether the last evaluation is solved;
    - ``failed_episode_fraction``: the fraction of the last evaluation's episodes whose return is below
      ``failure_below``.

    The first three are None when no evaluation is solved, the first four when there is no threshold or no
    evaluation, the last when there is no failure line or the last evaluation kept no per-episode returns
    (checkpoints written before they were kept).
    """
    out: dict[str, Any] = dict.fromkeys(STABILITY_KEYS)
    if evals and failure_below is not None and evals[-1].get(EPISODE_RETURNS):
        out["failed_episode_fraction"] = float(np.mean(np.asarray(evals[-1][EPISODE_RETURNS]) < failure_below))
    if not evals or solved_at is None:
        return out
    means = [float(e["eval_return_mean"]) for e in evals]
    solved = [m >= solved_at for m in means]
    out["ends_solved"] = solved[-1]
    if not any(solved):
        return out
    first = solved.index(True)
    out["solved_fraction_after_first"] = sum(solved[first:]) / (len(solved) - first)
    out["worst_return_after_solved"] = min(means[first:])
    stable = 1 + max((i for i, ok in enumerate(solved) if not ok), default=-1)
    if stable < len(evals):
        out["stably_solved_at"] = int(evals[stable]["env_steps"])
    return out


class Trainer:
    """Runs one :class:`Run`, evaluating, logging and checkpointing into ``out`` (or nowhere if ``out`` is None)."""

    def __init__(self, run: Run, *, out: str | os.PathLike | None = None, eval_every: int = DEFAULT_EVAL_EVERY,
                 eval_episodes: int = DEFAULT_EVAL_EPISODES, eval_seed: int | None = None, quiet: bool | None = None,
                 run_info: dict[str, Any] | None = None, overwrite: bool = False):
        eval_every = check_count(eval_every, "eval_every", DEFAULT_EVAL_EVERY)
        eval_episodes = check_count(eval_episodes, "eval_episodes", DEFAULT_EVAL_EPISODES)
        if eval_seed is not None and (isinstance(eval_seed, bool) or not isinstance(eval_seed, (int, np.integer))
                                      or not 0 <= eval_seed < 2**31):
            raise ValueError(f"eval_seed={eval_seed!r} must be a whole number in [0, 2**31) or None.")
        if out is not None:
            _claim_run_directory(Path(out), overwrite)
        self.run, self.env_id = run, run.env_id
        self.out = Path(out) if out is not None else None
        self.eval_every, self.eval_episodes = int(eval_every), int(eval_episodes)
        # Evaluation episodes: the same for every run by default (ceilings.EVALUATION_SEED + i), the episodes whose
        # optimal-control ceilings ceilings.json holds, so summary.json compares a policy with them on the same starts
        self.eval_seed = int(eval_seed) if eval_seed is not None else ceilings.EVALUATION_SEED
        self.quiet = quiet_default() if quiet is None else quiet
        self.counters = Counters(next_eval=self.eval_every)
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.run_info = dict(run_info or {})
        self.record = registry.record(self.env_id)
        self.video_every = self._check_video_every(self.run_info.get("video_every"))
        self._tb: tblog.EventLog | None = None
        self._wandb: Any = None
        self._logs_at: tuple[int, int] | None = None
        self._trained_from: int | None = None  # env steps when train() last began
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.write_config()

    def _check_video_every(self, video_every: Any) -> int | None:
        """``video_every`` (a run setting): None, or a count >= 1 for a renderable env (videos are written only
        where the run has a directory)."""
        if video_every is None:
            return None
        video_every = check_count(video_every, "video_every", 5)
        from pathwise.render import check_renderable

        check_renderable(self.render_id)
        return int(video_every)

    @property
    def render_id(self) -> str:
        """The environment the videos show: the run's own, or for a simulated twin (``pathwise/Pendulum-v1``, which
        draws no frames) the Gymnasium environment it reproduces, reset with the same seed (whose start state is
        not the twin's)."""
        return self.record.twin if self.record.twin and self.env_id.startswith("pathwise/") else self.env_id

    def record_video(self) -> Path:
        """The first evaluation episode (seed ``eval_seed``) played as the evaluations play it (the deterministic
        policy, or the planning agent with ``eval_planner``), as ``videos/eval_STEP.gif`` in the run directory,
        with a step and return overlay."""
        from pathwise.render import render_episode

        path = self.out / "videos" / f"eval_{self.counters.env_steps:09d}.gif"
        path.parent.mkdir(parents=True, exist_ok=True)
        return render_episode(self.run.episode_actor(self.eval_seed), self.render_id, path, seed=self.eval_seed)

    def evaluate(self, episodes: int | None = None, planner: dict[str, Any] | bool | None = None
                 ) -> dict[str, float]:
        """Mean/std return over seeded episodes of the Gymnasium env (and, where the environment has a failure line,
        ``eval_failed_episodes``: how many returns fell below it) of the deterministic policy, or of the planning
        agent where the run evaluates by it (``eval_planner``); ``planner`` chooses as :meth:`Run.evaluate`'s."""
        return self._evaluate_episodes(episodes, planner)[0]

    def _evaluate_episodes(self, episodes: int | None = None, planner: dict[str, Any] | bool | None = None
                           ) -> tuple[dict[str, float], list[float]]:
        """:meth:`evaluate`'s numbers and each episode's return."""
        episodes = self.eval_episodes if episodes is None else check_count(episodes, "episodes", 10)
        res = self.run.evaluate(episodes, self.eval_seed, planner=planner)
        ev = {"eval_return_mean": float(res.mean), "eval_return_std": float(res.std),
              "eval_length_mean": float(np.mean(res.lengths))}
        if self.record.failure_below is not None:
            ev["eval_failed_episodes"] = int(np.sum(res.returns < self.record.failure_below))
        return ev, [float(r) for r in res.returns]

    def train(self, total_steps: int, *, callback: Callable[[dict[str, Any]], bool | None] | None = None,
              progress_bar: bool | None = None) -> dict[str, Any]:
        """Train until ``run.env_steps >= total_steps``; return the summary.

        ``callback(info)`` is called after every iteration with the iteration's metrics (and the
        evaluation's, when one happened); returning ``False`` stops training.
        """
        if total_steps <= 0:
            raise ValueError(f"steps must be positive, got {total_steps}.")
        if self.out is not None:  # this process now writes the run: what a killed writer left half-written goes
            ckpt.remove_stale_temporaries(self.out, RUN_FILES)
            ckpt.remove_stale_temporaries(self.out / "checkpoints", ("last.npz", "best.npz"))
            self._open_events()
        bar = self._progress_bar(total_steps, progress_bar)
        self._trained_from = self.counters.env_steps
        try:
            if self.counters.env_steps >= self.counters.next_eval:  # it stopped in an evaluation: redo it first
                self.evaluate_and_save()
            while self.run.env_steps < total_steps:
                info = self._one_iteration(total_steps)
                if info is None:
                    continue
                if bar is not None:
                    status = {"return": self.evals[-1]["eval_return_mean"]} if self.evals else {}
                    (bar.event if "eval_return_mean" in info else bar.update)(self.counters.env_steps, **status)
                if callback is not None and callback(info) is False:
                    break
        except KeyboardInterrupt:
            if self.out is not None:  # the state is whole (see _one_iteration, evaluate_and_save): keep it
                self._tb.flush()
                self.save("last")
                self.write_logs()
            self._close_wandb()
            raise
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.flush()
        try:
            if not self.evals or self.evals[-1]["env_steps"] != self.counters.env_steps:
                self.evaluate_and_save()
            elif self.out is not None and self._logs_at != self._log_state():
                self.write_logs()  # a process killed after the last checkpoint, before its logs: write them now
        finally:
            self._close_wandb()
        return self.summary()

    def _progress_bar(self, total_steps: int, progress_bar: bool | None):
        """A :class:`pathwise.progress.Progress` in env steps (simulated steps for the simulated loop): a bar on a
        terminal, a plain line per tenth of the budget and per evaluation otherwise; None when quiet."""
        if not ((not self.quiet) if progress_bar is None else progress_bar):
            return None
        from pathwise.progress import Progress

        return Progress(max(total_steps, self.planned_steps(total_steps) or 0), initial=self.counters.env_steps, desc=f"{self.run.name} {self.env_id}",
                        unit=self.step_unit)

    def planned_steps(self, total_steps: int) -> int | None:
        """The env steps the run will have taken when ``train(total_steps)`` returns, where every iteration takes
        the same number (the simulated loop; None otherwise): training stops after the iteration that reaches the
        budget, so a budget that is not a multiple of an iteration is rounded up to one."""
        per = self.run.loop.steps_per_iteration()
        if per is None:
            return None
        done = self.counters.env_steps
        return done + max(0, math.ceil((total_steps - done) / per)) * per

    def budget_note(self, total_steps: int) -> str | None:
        """One line saying how far past ``total_steps`` whole iterations will take the run, or None if not."""
        planned = self.planned_steps(total_steps)
        if planned is None or planned <= total_steps:
            return None
        per = self.run.loop.steps_per_iteration()
        return (f"note: {self.run.name} trains in whole iterations of {per:,} {self.step_unit} (updates_per_iteration="
                f"{self.run.config.updates_per_iteration}); the budget of {total_steps:,} becomes {planned:,} "
                f"{self.step_unit}.")

    def overshoot_note(self, total_steps: int) -> str | None:
        """After a run: one line saying why it took more steps than ``total_steps`` where its iterations vary in
        length (whole episodes), or None if it did not."""
        steps, what = self.counters.env_steps, self.run.loop.iteration_is()
        if not what or self._trained_from is None or not self._trained_from < total_steps < steps:
            return None
        return (f"note: {self.run.name} took {steps:,} {self.step_unit} for a budget of {total_steps:,}: an iteration "
                f"is {what}, and a run stops after the iteration that reaches its budget.")

    @property
    def step_unit(self) -> str:
        """What the run's steps are: "simulated steps" (through a known System) or "env steps" (real ones)."""
        return "simulated steps" if self.run.loop.kind == "simulated" else "env steps"

    def _one_iteration(self, total_steps: int) -> dict[str, Any] | None:
        """One iteration with its bookkeeping; None when it was rolled back as non-finite.

        Ctrl-C during the iteration rolls the carry back; during the bookkeeping it waits for its end. Either
        way the state the interrupt handler saves is one the run passes through: exact resume.
        """
        c, snapshot, before = self.counters, self.run.carry, self.run.env_steps
        committed = False
        t0 = time.perf_counter()
        try:
            metrics = self.run.iteration()
            jax.block_until_ready(self.run.carry)
            with _interrupts_deferred():
                dt = time.perf_counter() - t0
                if self.run.env_steps <= before:
                    raise RuntimeError(f"{self.run.name}: an iteration did not advance env_steps ({before}); every "
                                       "iteration must consume environment steps.")
                if not self._check_finite(metrics, snapshot):
                    committed = True  # the retry's perturbed carry is the state to keep
                    return None
                c.iterations, c.env_steps, c.train_time = c.iterations + 1, self.run.env_steps, c.train_time + dt
                row = {"iteration": c.iterations, "env_steps": c.env_steps, "time": round(c.train_time, 4),
                       "steps_per_s": (c.env_steps - before) / max(dt, 1e-9), **metrics}
                self.history.append(row)
                self._log_scalars("train", row, c.env_steps)
                committed = True
        except KeyboardInterrupt:
            if not committed:
                self.run.carry = snapshot  # the last consistent state
            raise
        info = dict(row)
        if c.env_steps >= c.next_eval or c.env_steps >= total_steps:
            info.update(self.evaluate_and_save())
        return info

    def _check_finite(self, metrics: dict[str, float], snapshot: Any) -> bool:
        """Skip an iteration that produced NaN parameters or non-finite metrics.

        The run is rolled back to its carry before the iteration with its PRNG keys folded with the
        retry count (so the retry draws different data and noise), the iteration is counted, and after
        ``MAX_CONSECUTIVE_NONFINITE`` failures in a row training stops with ``NonFiniteError``. Nothing
        NaN is ever checkpointed.
        """
        c = self.counters
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        nan_state = _nan_in(self.run.carry.algo)
        if not bad and not nan_state:
            c.consecutive_nonfinite = 0
            return True
        c.nonfinite_iterations += 1
        c.consecutive_nonfinite += 1
        c.skipped_env_steps += self.run.env_steps - c.env_steps
        what = "NaN parameters" if nan_state else f"non-finite {bad}"
        if c.consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
            self.run.carry = snapshot
            raise NonFiniteError(
                f"{self.run.name} on {self.env_id}: {what} in {c.consecutive_nonfinite} consecutive iterations "
                f"at env step {c.env_steps}; each was skipped and retried, and the run was stopped with the last "
                "finite state kept (nothing NaN was saved). " + nonfinite_hint(self.run.config))
        self.run.carry = _perturb_keys(snapshot, c.nonfinite_iterations)
        return False

    def evaluate_and_save(self) -> dict[str, float]:
        """Evaluate now; update best/solved counters; write checkpoints and logs.

        Ctrl-C (or a kill) during the evaluation leaves the state as it was before it, and training resumes
        with this evaluation; after it, the interrupt waits until the checkpoints and logs are written.
        """
        c = self.counters
        self._open_events()
        t0 = time.perf_counter()
        ev, returns = self._evaluate_episodes()
        with _interrupts_deferred():
            c.eval_time += time.perf_counter() - t0
            while c.next_eval <= c.env_steps:
                c.next_eval += self.eval_every
            self.evals.append({"env_steps": c.env_steps, "time": round(c.train_time, 4), **ev,
                               EPISODE_RETURNS: returns})
            self._log_scalars("eval", ev, c.env_steps)
            mean, solved_at = ev["eval_return_mean"], self.record.solved_at
            improved = mean > c.best_return
            if improved:
                c.best_return, c.best_step = mean, c.env_steps
            if solved_at is not None and c.solved_step < 0 and mean >= solved_at:
                c.solved_step, c.solved_time = c.env_steps, c.train_time
            if self.out is not None:
                if self.video_every is not None and (len(self.evals) - 1) % self.video_every == 0:
                    self.record_video()  # evaluations 1, 1 + N, 1 + 2N, ...; redone with its evaluation on resume
                self._tb.flush()  # the events up to this checkpoint are on disk before it
                if improved:
                    self.save("best")
                self.save("last")
                self.write_logs()
        return ev

    # -- files ----------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records besides the carry."""
        return {"algorithm": self.run.name, "env_id": self.env_id, **self._env_source(), "seed": self.run.seed,
                "config": cfg_mod.to_dict(self.run.config), "counters": dataclasses.asdict(self.counters),
                "history": self.history, "evals": self.evals, "eval_every": self.eval_every,
                "eval_episodes": self.eval_episodes, "eval_seed": self.eval_seed}

    def save(self, which: str) -> None:
        """Checkpoint the run as ``out/checkpoints/{which}.npz`` (``"last"`` or ``"best"``), atomically, with
        :meth:`meta`; :meth:`load_checkpoint` or ``pathwise.load`` restore it."""
        ckpt.save(self.out / "checkpoints" / f"{which}.npz", self.run.carry, self.meta())

    def _env_source(self) -> dict[str, str]:
        """``{"env_source": "package.module:name"}`` for a user's environment given by an importable string (what
        rebuilds it in another process), else nothing."""
        found = problems.source(self.env_id)
        return {} if found is None else {"env_source": found}

    def write_config(self) -> None:
        """Write ``out/config.json``: algorithm, environment (and where a user's comes from), seed, evaluation
        settings and every config field, so that the run can be read and repeated."""
        info = {"algorithm": self.run.name, "env_id": self.env_id, **self._env_source(), "seed": self.run.seed,
                "eval_every": self.eval_every, "eval_episodes": self.eval_episodes, "eval_seed": self.eval_seed,
                "config": cfg_mod.to_dict(self.run.config), **self.run_info}
        ckpt.atomic_write_text(self.out / "config.json", json.dumps(info, indent=2) + "\n")

    def write_logs(self) -> None:
        """Write ``metrics.csv`` (per iteration), ``eval.csv`` (per evaluation), the figures and ``summary.json``
        into ``out``, each atomically."""
        _write_csv(self.out / "metrics.csv", self.history)
        _write_csv(self.out / "eval.csv", [{k: v for k, v in r.items() if k != EPISODE_RETURNS} for r in self.evals])
        self._plot()
        ckpt.atomic_write_text(self.out / "summary.json", json.dumps(self.summary(), indent=2) + "\n")
        self._logs_at = self._log_state()

    def _open_events(self) -> None:
        """This process's TensorBoard event file; what a stopped one logged after this state is discarded
        (:mod:`pathwise.tblog`)."""
        if self._tb is None and self.out is not None:
            self._tb = tblog.EventLog(self.out / "tb", purge_from=self.counters.env_steps + 1)
        if self._wandb is None and self.out is not None and self.run_info.get("wandb_project"):
            from pathwise.wandb_log import WandbLog

            self._wandb = WandbLog(self.run_info["wandb_project"], self.run_info["wandb_id"], self.out,
                                   f"{self.run.name}-{self.env_id.replace('/', '_')}-s{self.run.seed}",
                                   {"algorithm": self.run.name, "env_id": self.env_id, "seed": self.run.seed,
                                    "config": cfg_mod.to_dict(self.run.config)})

    def _close_wandb(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def _log_state(self) -> tuple[int, int]:
        return self.counters.iterations, len(self.evals)

    def _log_scalars(self, prefix: str, row: dict[str, float], step: int) -> None:
        if self._tb is None:  # no run directory, or not training (train() opens the event file)
            return
        values = {f"{prefix}/{k}": v for k, v in row.items() if k not in ("iteration", "env_steps") and
                  isinstance(v, (int, float)) and math.isfinite(v)}
        self._tb.scalars(values, step)
        if self._wandb is not None:
            self._wandb.scalars(values, step)

    def _plot(self) -> None:
        from pathwise.plots import learning_curve

        fig = learning_curve(self.evals, title=f"{self.run.name} on {self.env_id} (seed {self.run.seed})",
                             step_unit=self.run.loop.env_steps_are, episodes=self.eval_episodes,
                             max_return=self.record.max_return, ceiling=self.ceiling(),
                             solved_at=self.record.solved_at, failure_below=self.record.failure_below,
                             stably_solved_at=stability(self.evals, self.record.solved_at)["stably_solved_at"])
        ckpt.atomic_save_figure(fig, self.out / "learning_curve.png")

    def ceiling(self) -> float | None:
        """Mean optimal-control ceiling over this run's evaluation episodes (``pathwise.ceilings``), or None
        when those episodes were not measured (another ``eval_seed``, more episodes, another environment)."""
        per_episode = self.record.episode_ceilings(self.eval_seed, self.eval_episodes)
        return None if per_episode is None else float(np.mean(per_episode))

    def summary(self) -> dict[str, Any]:
        """The run's results as ``summary.json`` holds them: steps, times, final and best evaluation returns,
        steps and time to solve, stability after solving, the ceiling and the return as a fraction of it, skipped
        non-finite iterations, and the loop's own facts under ``"learner"``."""
        c, final, ceiling = self.counters, (self.evals[-1] if self.evals else None), self.ceiling()
        out = {
            "algorithm": self.run.name, "env_id": self.env_id, "seed": self.run.seed,
            "env_steps": c.env_steps, "iterations": c.iterations, "train_time_s": round(c.train_time, 3),
            "eval_time_s": round(c.eval_time, 3),
            "final_return_mean": final["eval_return_mean"] if final else None,
            "final_return_std": final["eval_return_std"] if final else None,
            "best_return_mean": c.best_return if self.evals else None, "best_env_steps": c.best_step,
            "solved_threshold": self.record.solved_at,
            "steps_to_solve": c.solved_step if c.solved_step >= 0 else None,
            "time_to_solve_s": round(c.solved_time, 3) if c.solved_step >= 0 else None,
            **stability(self.evals, self.record.solved_at, self.record.failure_below),
            "failure_below": self.record.failure_below,
            "ceiling": ceiling,
            "final_over_ceiling": (final["eval_return_mean"] / ceiling) if (final and ceiling) else None,
            "nonfinite_iterations": c.nonfinite_iterations,
            "skipped_env_steps": c.skipped_env_steps,
        }
        out["learner"] = json.loads(json.dumps(self.run.describe(), default=float))
        return out

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore the carry, counters and logs from a checkpoint written by this driver."""
        meta, arrays = ckpt.read(path)
        if meta.get("algorithm") != self.run.name:
            raise ckpt.CheckpointError(f"Checkpoint {path} was written by algorithm {meta.get('algorithm')!r}, "
                                       f"not {self.run.name!r}.")
        counters = _check_counters(meta.get("counters"), f"Checkpoint {path}")
        for field in ("history", "evals"):
            rows = meta.get(field, [])
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ckpt.CheckpointError(f"Checkpoint {path}: {field}={rows!r:.60} is not a list of rows; "
                                           f"{ckpt.DAMAGED}.")
        with self.run.precision():  # float64 arrays stay float64
            self.run.carry = ckpt.restore(self.run.carry, meta, arrays, source=f"checkpoint {path}")
        self.counters = counters
        self.history = list(meta.get("history", []))
        self.evals = list(meta.get("evals", []))


def _check_counters(values: Any, source: str) -> Counters:
    """The driver counters of a meta record, refused (naming the field) unless every one is there and a number."""
    names = [f.name for f in dataclasses.fields(Counters)]
    if not isinstance(values, dict):
        raise ckpt.CheckpointError(f"{source}: counters={values!r:.60} is not a table; {ckpt.DAMAGED}.")
    wrong = sorted(set(values) ^ set(names))
    if wrong:
        raise ckpt.CheckpointError(f"{source}: its counters lack or add {wrong}; {ckpt.DAMAGED}.")
    for name in names:
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ckpt.CheckpointError(f"{source}: counter {name}={v!r} is not a number; {ckpt.DAMAGED}.")
    if values["env_steps"] < 0 or values["iterations"] < 0:
        raise ckpt.CheckpointError(f"{source}: negative counters (env_steps={values['env_steps']}, "
                                   f"iterations={values['iterations']}); {ckpt.DAMAGED}.")
    return Counters(**values)


#: The files a run writes at the top of its directory (besides checkpoints/ and tb/).
RUN_FILES = ("config.json", "metrics.csv", "eval.csv", "summary.json", "learning_curve.png")


def _claim_run_directory(out: Path, overwrite: bool) -> None:
    """Refuse to train into an existing run directory (its model would be lost), unless ``overwrite``."""
    if not (out / "config.json").exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} already holds a run; continue it with `pathwise train --resume {out}`, choose "
                              "another --out, or pass --overwrite to replace it.")
    import shutil

    for name in ("checkpoints", "tb"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    ckpt.atomic_write_text(path, buf.getvalue())


# -- entry points used by the CLI and the facade --------------------------------------------------------------


def make_trainer(algo: str, env: str, seed: int = 0, *, config: Any = None, overrides: dict[str, Any] | None = None,
                 use_preset: bool = True, out: str | os.PathLike | None = None, steps: int | None = None,
                 eval_every: int | None = None, eval_episodes: int | None = None, quiet: bool | None = None,
                 overwrite: bool = False, video_every: int | None = None,
                 wandb_project: str | None = None) -> tuple[Trainer, int]:
    """A trainer for a fresh run and its step budget (``steps``, else the preset's, else 20,000)."""
    for name, value, example in (("eval_every", eval_every, DEFAULT_EVAL_EVERY),
                                 ("eval_episodes", eval_episodes, DEFAULT_EVAL_EPISODES), ("steps", steps, DEFAULT_STEPS)):
        if value is not None:
            check_count(value, name, example)  # before building anything
    if video_every is not None and out is None:
        raise ValueError("video_every records evaluation episodes into the run directory; give the run one "
                         "(out=... / --out DIR) or drop video_every.")
    if wandb_project is not None:
        check_wandb(wandb_project, out)
    if out is not None:
        ckpt.check_writable(out, "out", directory=True)
        if not overwrite:
            _claim_run_directory(Path(out), overwrite)
    run, settings = make_run(algo, env, seed, config=config, overrides=overrides, use_preset=use_preset)
    steps = int(steps if steps is not None else settings.get("steps", DEFAULT_STEPS))
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}.")
    info = {"steps": steps, **({} if video_every is None else {"video_every": video_every}),
            **wandb_info(wandb_project)}
    trainer = Trainer(run, out=out, quiet=quiet, run_info=info, overwrite=overwrite,
                      eval_every=eval_every if eval_every is not None else settings.get("eval_every",
                                                                                        DEFAULT_EVAL_EVERY),
                      eval_episodes=eval_episodes if eval_episodes is not None else
                      settings.get("eval_episodes", DEFAULT_EVAL_EPISODES))
    return trainer, steps


def check_wandb(project: Any, out: Any) -> None:
    """Refuse, before anything runs, a W&B project that cannot be logged to."""
    if not isinstance(project, str) or not project.strip():
        raise ValueError(f"wandb_project must be a W&B project name, got {project!r}.")
    if out is None:
        raise ValueError("wandb_project logs a run with a directory (its W&B run id is kept in config.json); give "
                         "the run one (out=... / --out DIR) or drop wandb_project.")
    from pathwise.wandb_log import require

    require()


def wandb_info(project: str | None) -> dict[str, str]:
    """The run-record entries of a run logged to W&B: the project and a new W&B run id."""
    if project is None:
        return {}
    from pathwise.wandb_log import new_id

    return {"wandb_project": project, "wandb_id": new_id()}


def train(algo: str, env: str, steps: int | None = None, *, seed: int = 0, config: Any = None,
          overrides: dict[str, Any] | None = None, use_preset: bool = True, out: str | os.PathLike | None = None,
          eval_every: int | None = None, eval_episodes: int | None = None, quiet: bool | None = None,
          callback: Callable | None = None, overwrite: bool = False, video_every: int | None = None,
          wandb_project: str | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Train ``algo`` on ``env`` and return ``(trainer, summary)``.

    ``steps``/``eval_every``/``eval_episodes`` default to the preset's run settings, else 20,000 steps /
    every 1,000 / 10 episodes. An existing run directory ``out`` is refused unless ``overwrite``. With
    ``video_every=N`` (and ``out``) the first episode of every N-th evaluation, starting with the first, is
    recorded as ``out/videos/eval_STEP.gif``; with ``wandb_project`` (and ``out``) the run also logs to Weights &
    Biases (:mod:`pathwise.wandb_log`).
    """
    trainer, steps = make_trainer(algo, env, seed, config=config, overrides=overrides, use_preset=use_preset,
                                  out=out, steps=steps, eval_every=eval_every, eval_episodes=eval_episodes, quiet=quiet,
                                  overwrite=overwrite, video_every=video_every, wandb_project=wandb_project)
    return trainer, trainer.train(steps, callback=callback)


def resume(run_dir: str | os.PathLike, steps: int | None = None, *, quiet: bool | None = None,
           callback: Callable | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Continue the run in ``run_dir`` from ``checkpoints/last.npz`` up to ``steps`` (default: its budget)."""
    if steps is not None and steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}.")
    trainer = open_run(run_dir, quiet=quiet)
    total = int(steps if steps is not None else trainer.run_info.get("steps", trainer.counters.env_steps))
    if steps is not None:
        trainer.run_info["steps"] = total
        trainer.write_config()
    return trainer, trainer.train(total, callback=callback)


def open_run(run_dir: str | os.PathLike, *, which: str = "last", quiet: bool | None = None) -> Trainer:
    """Rebuild the trainer and run of a run directory from its config and a checkpoint (writes nothing)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a pathwise run directory (no config.json). "
                                "Pass the --out directory of a `pathwise train` run.")
    try:
        info = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path} is not valid JSON ({exc}); the run directory is damaged.") from exc
    checkpoint = run_dir / "checkpoints" / f"{which}.npz"
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{run_dir} holds a run but no checkpoints/{which}.npz: it stopped before its first checkpoint (one is "
            f"written at every evaluation). Nothing to continue from; train it again with `--out {run_dir} "
            "--overwrite`." if which == "last" else f"{run_dir} has no checkpoints/{which}.npz.")
    trainer = trainer_from_meta(info, out=None, quiet=quiet, source=str(cfg_path))
    trainer.out = run_dir
    trainer.load_checkpoint(checkpoint)
    return trainer


#: Keys of config.json and checkpoint meta records that are not extra run information.
_RECORD_KEYS = ("algorithm", "env_id", "env_source", "seed", "config", "eval_every", "eval_episodes", "eval_seed", "counters",
                "history", "evals", "format_version", "key_leaves")


def _rebuild_own_env(info: dict[str, Any], source: str) -> None:
    """Register the user's environment of a run record again in this process (from its importable ``env_source``),
    or refuse, naming the fix, a run of an object that this process does not hold."""
    env_id, env_source = info["env_id"], info.get("env_source")
    if env_source is not None:
        if not problems.is_import_path(env_source):
            raise ckpt.CheckpointError(f"{source}: env_source={env_source!r:.80} is not 'package.module:name'; "
                                       f"{ckpt.DAMAGED}.")
        found = problems.env_id(env_source)
        if found != env_id:
            raise ckpt.CheckpointError(f"{source}: env_source {env_source!r} is registered as {found!r} in this "
                                       f"process, not as the run's {env_id!r}; {ckpt.DAMAGED}.")
    elif problems.is_own(env_id) and not registry.is_own(env_id):
        raise problems.not_resumable(env_id, source)


def trainer_from_meta(info: dict[str, Any], *, out: str | os.PathLike | None, quiet: bool | None,
                      source: str) -> Trainer:
    """A trainer rebuilt from a ``config.json`` or a checkpoint's meta record (no state restored yet)."""
    if not isinstance(info, dict):
        raise ckpt.CheckpointError(f"{source} is not a pathwise run record (a {type(info).__name__}, not a table).")
    missing = [k for k in ("algorithm", "env_id", "seed", "config") if k not in info]
    if missing:
        raise ckpt.CheckpointError(f"{source} is not a pathwise run record (it has no {', '.join(missing)}).")
    _rebuild_own_env(info, source)
    try:  # what the record says is checked like user input, but the message names the file
        algorithm = algorithms.get(info["algorithm"])
        registry.check_id(info["env_id"])
        stored = info["config"] if not isinstance(info["config"], dict) else \
            cfg_mod.upgrade(algorithm.Config, info["config"])  # a run of 0.2 reads with today's option names
        config = cfg_mod.from_dict(algorithm.Config, stored, source="its config", complete=True)
        for k in ("steps",):
            if k in info:
                check_count(info[k], k, DEFAULT_STEPS)
        run = Run(algorithm, info["env_id"], config, info["seed"])
        extra = {k: v for k, v in info.items() if k not in _RECORD_KEYS}
        return Trainer(run, out=out, quiet=quiet, run_info=extra,
                       eval_every=info.get("eval_every", DEFAULT_EVAL_EVERY),
                       eval_episodes=info.get("eval_episodes", DEFAULT_EVAL_EPISODES), eval_seed=info.get("eval_seed"))
    except (ValueError, TypeError) as exc:
        raise ckpt.CheckpointError(f"{source} holds a run record pathwise cannot use: {exc} The file is damaged or "
                                   "was edited; restore it (a checkpoint's meta record holds the same values) or "
                                   "retrain.") from None


__all__ = ["Counters", "EPISODE_RETURNS", "NonFiniteError", "Run", "STABILITY_KEYS", "Trainer", "make_run",
           "SEED_LIMIT", "make_trainer", "open_run", "precision", "resume", "stability", "train", "trainer_from_meta"]
