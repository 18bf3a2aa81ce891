"""The training driver: the loop every algorithm runs in.

``Trainer`` repeatedly calls ``learner.train_iteration()`` until a budget of
environment steps is spent, and around it does what a user expects from a
run: periodic deterministic evaluation on the Gymnasium environment, a
progress bar, metrics to CSV and TensorBoard, a learning-curve plot, best and
last checkpoints (written atomically), ``summary.json``, exact resume, and
protection against non-finite updates.

Run directory layout::

    RUN_DIR/config.json          algorithm, env, seed, budget, full algorithm config
    RUN_DIR/metrics.csv          one row per training iteration
    RUN_DIR/eval.csv             one row per evaluation
    RUN_DIR/tb/                  TensorBoard events
    RUN_DIR/learning_curve.png
    RUN_DIR/summary.json
    RUN_DIR/checkpoints/{last,best}.npz
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from pathwise import checkpoint as ckpt
from pathwise import presets
from pathwise.algorithms import Learner, get as get_algorithm

#: Mean evaluation return at which a task counts as solved (for "steps to solve").
SOLVED_AT: dict[str, float] = {
    "Pendulum-v1": -200.0,
    "pathwise/Pendulum-v1": -200.0,
    "CartPole-v1": 475.0,
    "pathwise/CartPole-v1": 475.0,
    "MountainCarContinuous-v0": 90.0,
    "Acrobot-v1": -100.0,
}

DEFAULT_EVAL_EVERY = 1000
MAX_CONSECUTIVE_NONFINITE = 3
NONFINITE_HINT = ("Lower the learning rate (--set lr=...), shorten the horizon or enable gradient clipping, "
                  "or run in float64 (--set float64=true).")


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf parameters or kept producing non-finite losses."""


def quiet_default() -> bool:
    return os.environ.get("PATHWISE_QUIET", "") not in ("", "0", "false", "False")


def canonical_env_id(env_id: str) -> str:
    """Map short system names (``pendulum``) to their Gymnasium id; leave other ids alone."""
    from pathwise import systems

    if env_id in systems.REGISTRY:
        return env_id
    import gymnasium as gym

    if env_id in gym.registry:
        return env_id
    alias = systems.ALIASES.get(env_id) or systems.ALIASES.get(env_id.lower())
    return alias or env_id


def build_config(algo_cls: type[Learner], env_id: str, *, config: Any = None, use_preset: bool = True,
                 overrides: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The algorithm config from defaults < preset < ``config`` < ``overrides``, and the preset's run settings.

    ``config`` may be a ``Config`` instance, a dict, or ``None``.
    """
    values: dict[str, Any] = {}
    run: dict[str, Any] = {}
    if use_preset:
        preset_values, run = presets.load(algo_cls.name, env_id)
        values.update(preset_values)
    if isinstance(config, algo_cls.Config):
        values.update(dataclasses.asdict(config))
    elif isinstance(config, dict):
        values.update(config)
    elif config is not None:
        raise TypeError(f"config must be a {algo_cls.__name__}.Config, a dict or None, got {type(config).__name__}.")
    values.update(overrides or {})
    return ckpt.config_from_dict(algo_cls.Config, values, source=f"{algo_cls.name} config"), run


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["lr=1e-3", "hidden=64,64"]`` -> ``{"lr": "1e-3", "hidden": "64,64"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r} (e.g. --set lr=3e-4).")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def check_env(cls: type[Learner], env_id: str) -> None:
    """Raise ``ValueError`` naming the problem if ``cls`` cannot train on ``env_id``."""
    import difflib

    import gymnasium as gym

    import pathwise.systems  # noqa: F401  (registers the pathwise/... ids)

    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown environment id {env_id!r}.{hint} `pathwise list` shows the pathwise systems; "
                         "any installed Gymnasium id works (see gymnasium.pprint_registry()).")
    if cls.needs_system and not env_id.startswith("pathwise/") and f"pathwise/{env_id}" not in gym.registry:
        raise ValueError(f"{cls.name} differentiates through known dynamics and needs a pathwise System, but "
                         f"{env_id!r} has none. Use one of `pathwise list`'s systems, or a model-based algorithm "
                         "(mbrl, svg-inf) that learns the dynamics.")
    if cls.needs_reward:
        from pathwise import rewards

        if not rewards.has(env_id):
            raise ValueError(f"{cls.name} needs the reward function of {env_id!r} to plan through a learned model, "
                             "and none is known. Register one with pathwise.rewards.register(env_id, fn), or use a "
                             "model-free algorithm (svg0, ddpg, reinforce).")
    space = gym.spec(env_id).kwargs.get("action_space")  # rarely set; fall back to building the env
    if space is None:
        env = gym.make(env_id)
        space = env.action_space
        env.close()
    discrete = isinstance(space, gym.spaces.Discrete)
    if discrete and not cls.discrete_ok:
        raise ValueError(f"{cls.name} needs continuous (Box) actions, but {env_id} has {space}. For discrete actions "
                         "use svg0-discrete (Gumbel-softmax / straight-through), reinforce or qac.")
    if not discrete and not cls.continuous_ok:
        raise ValueError(f"{cls.name} needs discrete actions, but {env_id} has {space}.")


def make_learner(algo: str, env_id: str, config: Any, seed: int) -> Learner:
    """Construct a learner, checking first that it can handle the environment."""
    cls = get_algorithm(algo)
    check_env(cls, env_id)
    if getattr(config, "float64", False):
        jax.config.update("jax_enable_x64", True)
    return cls(env_id, config, seed=seed)


def _nan_in_state(state: Any) -> bool:
    leaves = [x for x in jax.tree.leaves(state)
              if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return False
    return bool(jnp.any(jnp.stack([jnp.any(jnp.isnan(x)) for x in leaves])))


def _snapshot(state: Any) -> Any:
    # JAX arrays are immutable; copy NumPy leaves a learner might update in place.
    return jax.tree.map(lambda x: x.copy() if isinstance(x, np.ndarray) else x, state)


def _perturb_keys(state: Any, n: int) -> Any:
    """Fold ``n`` into every typed PRNG key of ``state`` (a different retry of the same iteration)."""
    def fold(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(x, n)
        return x

    return jax.tree.map(fold, state)


def _scalar(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0]) if np.size(value) else float("nan")


@dataclasses.dataclass
class Counters:
    iterations: int = 0
    env_steps: int = 0
    train_time: float = 0.0
    eval_time: float = 0.0
    next_eval: int = 0
    best_return: float = -math.inf
    best_step: int = -1
    solved_step: int = -1
    solved_time: float = -1.0
    nonfinite_iterations: int = 0
    consecutive_nonfinite: int = 0
    skipped_env_steps: int = 0


class Trainer:
    """Runs one learner, evaluating, logging and checkpointing into ``out`` (or nowhere if ``out`` is None)."""

    def __init__(self, learner: Learner, *, out: str | os.PathLike | None = None,
                 eval_every: int = DEFAULT_EVAL_EVERY, eval_episodes: int = 10, eval_seed: int | None = None,
                 quiet: bool | None = None, run_info: dict[str, Any] | None = None):
        if eval_every <= 0 or eval_episodes <= 0:
            raise ValueError(f"eval_every ({eval_every}) and eval_episodes ({eval_episodes}) must be positive.")
        self.learner = learner
        self.env_id = learner.env_id
        self.out = Path(out) if out is not None else None
        self.eval_every = int(eval_every)
        self.eval_episodes = int(eval_episodes)
        # Evaluation episodes use seeds disjoint from training resets and fixed for the run.
        self.eval_seed = int(eval_seed) if eval_seed is not None else 10_000 + 1_000 * learner.seed
        self.quiet = quiet_default() if quiet is None else quiet
        self.counters = Counters(next_eval=self.eval_every)
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.run_info = dict(run_info or {})
        self._tb = None
        self.solved_at = SOLVED_AT.get(self.env_id)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_config()

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Mean/std return of the deterministic policy over seeded episodes of the Gymnasium env."""
        from pathwise.envs import evaluate

        act = lambda obs: self.learner.act(obs, deterministic=True)  # noqa: E731
        res = evaluate(act, self.env_id, episodes=episodes or self.eval_episodes, seed=self.eval_seed)
        return {"eval_return_mean": float(res.mean), "eval_return_std": float(res.std),
                "eval_length_mean": float(np.mean(res.lengths))}

    # -- main loop ------------------------------------------------------------

    def run(self, total_steps: int, *, callback: Callable[[dict[str, Any]], bool | None] | None = None,
            progress_bar: bool | None = None) -> dict[str, Any]:
        """Train until ``learner.env_steps >= total_steps``; return the summary.

        ``callback(info)`` is called after every iteration with the iteration's metrics
        (and the evaluation's, when one happened); returning ``False`` stops training.
        """
        if total_steps <= 0:
            raise ValueError(f"steps must be positive, got {total_steps}.")
        c = self.counters
        show = (not self.quiet) if progress_bar is None else progress_bar
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(total_steps), initial=min(c.env_steps, total_steps), unit="step",
                       desc=f"{self.learner.name} {self.env_id}", dynamic_ncols=True)
        try:
            while self.learner.env_steps < total_steps:
                snapshot = _snapshot(self.learner.get_state())
                before = self.learner.env_steps
                t0 = time.perf_counter()
                try:
                    metrics = self.learner.train_iteration()
                except KeyboardInterrupt:
                    self.learner.set_state(snapshot)  # the last consistent state
                    raise
                metrics = {k: _scalar(v) for k, v in (metrics or {}).items()}
                jax.block_until_ready(self.learner.get_state())
                dt = time.perf_counter() - t0
                if self.learner.env_steps <= before:
                    raise RuntimeError(f"{type(self.learner).__name__}.train_iteration() did not advance env_steps "
                                       f"({before}); every iteration must consume environment steps.")
                if not self._check_finite(metrics, snapshot):
                    continue
                c.iterations += 1
                c.env_steps = int(self.learner.env_steps)
                c.train_time += dt
                row = {"iteration": c.iterations, "env_steps": c.env_steps, "time": round(c.train_time, 4),
                       "steps_per_s": (c.env_steps - before) / max(dt, 1e-9), **metrics}
                self.history.append(row)
                self._log_scalars("train", row, c.env_steps)
                info = dict(row)
                done = c.env_steps >= total_steps
                if c.env_steps >= c.next_eval or done:
                    while c.next_eval <= c.env_steps:  # before saving: the checkpoint holds the next due step
                        c.next_eval += self.eval_every
                    info.update(self._evaluate_and_save())
                if bar is not None:
                    bar.update(min(c.env_steps, total_steps) - bar.n)
                    post = {"sps": f"{row['steps_per_s']:.0f}"}
                    if self.evals:
                        post["return"] = f"{self.evals[-1]['eval_return_mean']:.1f}"
                    bar.set_postfix(post)
                if callback is not None and callback(info) is False:
                    break
        except KeyboardInterrupt:
            if self.out is not None:
                self._save("last")
                self._write_logs()
            raise
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.flush()
        if not self.evals or self.evals[-1]["env_steps"] != c.env_steps:
            self._evaluate_and_save()
        return self.summary()

    def _check_finite(self, metrics: dict[str, float], snapshot: Any) -> bool:
        """Skip an iteration that produced NaN parameters or non-finite metrics.

        The learner is rolled back to its state before the iteration with its PRNG
        keys folded with the retry count (so the retry draws different data and
        noise), the iteration is counted, and after ``MAX_CONSECUTIVE_NONFINITE``
        failures in a row training stops with ``NonFiniteError``. Nothing NaN is
        ever checkpointed.
        """
        c = self.counters
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        nan_state = _nan_in_state(self.learner.get_state())
        if not bad and not nan_state:
            c.consecutive_nonfinite = 0
            return True
        c.nonfinite_iterations += 1
        c.consecutive_nonfinite += 1
        c.skipped_env_steps += int(self.learner.env_steps) - c.env_steps
        what = "NaN parameters" if nan_state else f"non-finite {bad}"
        if c.consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
            self.learner.set_state(snapshot)
            raise NonFiniteError(
                f"{self.learner.name} on {self.env_id}: {what} in {c.consecutive_nonfinite} consecutive iterations "
                f"at env step {c.env_steps}; each was skipped and retried, and the run was stopped with the last "
                "finite state kept (nothing NaN was saved). " + NONFINITE_HINT)
        self.learner.set_state(_perturb_keys(snapshot, c.nonfinite_iterations))
        return False

    def _evaluate_and_save(self) -> dict[str, float]:
        c = self.counters
        t0 = time.perf_counter()
        ev = self.evaluate()
        c.eval_time += time.perf_counter() - t0
        row = {"env_steps": c.env_steps, "time": round(c.train_time, 4), **ev}
        self.evals.append(row)
        self._log_scalars("eval", ev, c.env_steps)
        mean = ev["eval_return_mean"]
        improved = mean > c.best_return
        if improved:
            c.best_return, c.best_step = mean, c.env_steps
        if self.solved_at is not None and c.solved_step < 0 and mean >= self.solved_at:
            c.solved_step, c.solved_time = c.env_steps, c.train_time
        if self.out is not None:
            if improved:
                self._save("best")
            self._save("last")
            self._write_logs()
        return ev

    # -- files ----------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {"algorithm": self.learner.name, "env_id": self.env_id, "seed": self.learner.seed,
                "config": ckpt.config_to_dict(self.learner.config), "counters": dataclasses.asdict(self.counters),
                "history": self.history, "evals": self.evals, "eval_every": self.eval_every,
                "eval_episodes": self.eval_episodes, "eval_seed": self.eval_seed}

    def _save(self, which: str) -> None:
        ckpt.save(self.out / "checkpoints" / f"{which}.npz", self.learner.get_state(), self._meta())

    def _write_config(self) -> None:
        info = {"algorithm": self.learner.name, "env_id": self.env_id, "seed": self.learner.seed,
                "eval_every": self.eval_every, "eval_episodes": self.eval_episodes, "eval_seed": self.eval_seed,
                "config": ckpt.config_to_dict(self.learner.config), **self.run_info}
        ckpt.atomic_write_text(self.out / "config.json", json.dumps(info, indent=2) + "\n")

    def _write_logs(self) -> None:
        _write_csv(self.out / "metrics.csv", self.history)
        _write_csv(self.out / "eval.csv", self.evals)
        self._plot()
        ckpt.atomic_write_text(self.out / "summary.json", json.dumps(self.summary(), indent=2) + "\n")

    def _log_scalars(self, prefix: str, row: dict[str, float], step: int) -> None:
        if self.out is None:
            return
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        for k, v in row.items():
            if k not in ("iteration", "env_steps") and isinstance(v, (int, float)) and math.isfinite(v):
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["env_steps"] for r in self.evals]
        mean = np.array([r["eval_return_mean"] for r in self.evals])
        std = np.array([r["eval_return_std"] for r in self.evals])
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(steps, mean, marker="o", label=f"{self.learner.name} (seed {self.learner.seed})")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ceiling = self.summary()["ceiling"]
        if ceiling is not None:
            ax.axhline(ceiling, color="k", ls="--", lw=1, label="optimal-control ceiling")
        if self.solved_at is not None:
            ax.axhline(self.solved_at, color="g", ls=":", lw=1, label=f"solved ({self.solved_at:g})")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"mean return ({self.eval_episodes} episodes)")
        ax.set_title(self.env_id)
        ax.legend(loc="lower right")
        fig.tight_layout()
        ckpt.atomic_save_figure(fig, self.out / "learning_curve.png")

    def summary(self) -> dict[str, Any]:
        c = self.counters
        ceiling = _ceiling(self.env_id)
        final = self.evals[-1] if self.evals else None
        out = {
            "algorithm": self.learner.name, "env_id": self.env_id, "seed": self.learner.seed,
            "env_steps": c.env_steps, "iterations": c.iterations, "train_time_s": round(c.train_time, 3),
            "eval_time_s": round(c.eval_time, 3),
            "final_return_mean": final["eval_return_mean"] if final else None,
            "final_return_std": final["eval_return_std"] if final else None,
            "best_return_mean": c.best_return if self.evals else None, "best_env_steps": c.best_step,
            "solved_threshold": self.solved_at,
            "steps_to_solve": c.solved_step if c.solved_step >= 0 else None,
            "time_to_solve_s": round(c.solved_time, 3) if c.solved_step >= 0 else None,
            "ceiling": ceiling,
            "final_over_ceiling": (final["eval_return_mean"] / ceiling) if (final and ceiling) else None,
            "nonfinite_iterations": c.nonfinite_iterations,
            "skipped_env_steps": c.skipped_env_steps,
        }
        try:
            out["learner"] = json.loads(json.dumps(self.learner.describe(), default=float))
        except (TypeError, ValueError):
            out["learner"] = {}
        return out

    # -- resume -----------------------------------------------------------------

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore learner state, counters and logs from a checkpoint written by this driver."""
        meta, leaves = ckpt.read(path)
        if meta.get("algorithm") != self.learner.name:
            raise ckpt.CheckpointError(f"Checkpoint {path} was written by algorithm {meta.get('algorithm')!r}, "
                                       f"not {self.learner.name!r}.")
        state = ckpt.restore(self.learner.get_state(), meta, leaves, source=f"checkpoint {path}")
        self.learner.set_state(state)
        self.learner.env_steps = int(meta["counters"]["env_steps"])
        self.counters = Counters(**meta["counters"])
        self.history = list(meta.get("history", []))
        self.evals = list(meta.get("evals", []))


def _ceiling(env_id: str) -> float | None:
    try:
        from pathwise.ceilings import ceiling
    except ImportError:
        return None
    try:
        return ceiling(env_id)
    except (KeyError, ValueError):
        return None


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


# -- the high-level entry points used by the CLI and the facade ---------------------


def train(algo: str, env: str, steps: int | None = None, *, seed: int = 0, config: Any = None,
          overrides: dict[str, Any] | None = None, use_preset: bool = True, out: str | os.PathLike | None = None,
          eval_every: int | None = None, eval_episodes: int | None = None, quiet: bool | None = None,
          callback: Callable | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Train ``algo`` on ``env`` and return ``(trainer, summary)``.

    ``steps``/``eval_every``/``eval_episodes`` default to the preset's run settings,
    else 20,000 steps / every 1,000 / 10 episodes.
    """
    env = canonical_env_id(env)
    cls = get_algorithm(algo)
    cfg, run = build_config(cls, env, config=config, use_preset=use_preset, overrides=overrides)
    steps = int(steps if steps is not None else run.get("steps", 20_000))
    learner = make_learner(cls.name, env, cfg, seed)
    trainer = Trainer(learner, out=out, eval_every=int(eval_every or run.get("eval_every", DEFAULT_EVAL_EVERY)),
                      eval_episodes=int(eval_episodes or run.get("eval_episodes", 10)), quiet=quiet,
                      run_info={"steps": steps})
    return trainer, trainer.run(steps, callback=callback)


def resume(run_dir: str | os.PathLike, steps: int | None = None, *, quiet: bool | None = None,
           callback: Callable | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Continue the run in ``run_dir`` from ``checkpoints/last.npz`` up to ``steps`` (default: its budget)."""
    trainer = open_run(run_dir, quiet=quiet)
    total = int(steps if steps is not None else trainer.run_info.get("steps", trainer.counters.env_steps))
    if steps is not None:
        trainer.run_info["steps"] = total
        trainer._write_config()
    return trainer, trainer.run(total, callback=callback)


def open_run(run_dir: str | os.PathLike, *, which: str = "last", quiet: bool | None = None) -> Trainer:
    """Rebuild the trainer and learner of a run directory from its config and a checkpoint."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a pathwise run directory (no config.json). "
                                "Pass the --out directory of a `pathwise train` run.")
    info = json.loads(cfg_path.read_text())
    cls = get_algorithm(info["algorithm"])
    cfg = ckpt.config_from_dict(cls.Config, info["config"], source=f"{cfg_path}")
    learner = make_learner(cls.name, info["env_id"], cfg, info["seed"])
    run_info = {k: v for k, v in info.items()
                if k not in ("algorithm", "env_id", "seed", "config", "eval_every", "eval_episodes", "eval_seed")}
    trainer = Trainer(learner, out=run_dir, eval_every=info["eval_every"], eval_episodes=info["eval_episodes"],
                      eval_seed=info["eval_seed"], quiet=quiet, run_info=run_info)
    path = run_dir / "checkpoints" / f"{which}.npz"
    trainer.load_checkpoint(path)
    return trainer
