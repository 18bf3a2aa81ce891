"""Hyperparameter search with Optuna: ``pathwise tune ALGO --env ID --trials N --steps S --storage URL ...``.

RL Zoo's convention: one search space per algorithm (:data:`SPACES`, keyed by the names of the fields of the
algorithm's ``Config``), a TPE sampler, median pruning on the evaluation returns reported while a trial
trains, and a shared relational database as the only coordination between workers. Every worker started with
the same ``--storage`` and ``--study-name`` joins one study (``load_if_exists``), on one machine (SQLite) or
many (PostgreSQL); each runs ``--trials`` trials of its own.

A trial trains the algorithm for ``--steps`` environment steps from the preset for (ALGO, ENV) with the sampled
values on top, evaluating ``--evaluations`` times on the way (each time ``--eval-episodes`` deterministic
episodes on the same seeds). Each evaluation's mean return is reported to the pruner, which stops a trial whose
return is below the median of the earlier trials at the same step. The objective is the mean return of the
**final** evaluation (after the whole budget), as in RL Zoo. A trial whose training diverges (non-finite
updates) fails and the worker goes on. When a worker is done it writes the study's best configuration so far as
a preset file, ``OUT/ALGO.toml``, which ``pathwise train ALGO --env ID --preset-file OUT/ALGO.toml`` trains from.

Optuna is an optional dependency (``pip install "pathwise[tune]"``); only this module imports it, lazily.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

import tyro

#: SQLite's busy timeout (seconds) for every connection: workers that write at once wait for the lock instead of
#: failing with "database is locked" (the remedy Optuna's maintainers give in optuna/optuna#820).
SQLITE_TIMEOUT_S = 60
#: Attempts at opening the storage and the study: workers started at the same moment race to create the schema
#: of a new SQLite file, and the losers see "table ... already exists" (optuna/optuna#4621); they retry.
OPEN_ATTEMPTS = 8


# -- search spaces --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A float drawn log-uniformly from [low, high] (learning rates, coefficients spanning decades)."""

    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``options`` (numbers, strings, booleans; layer sizes as ``"64,64"``, which configs read as a tuple)."""

    options: tuple[Any, ...]


Param = LogUniform | Uniform | Choice

GAMMA = Choice((0.9, 0.95, 0.98, 0.99, 0.995, 0.999))
HIDDEN = Choice(("64,64", "128,128", "256,256"))
SMALL_HIDDEN = Choice(("32,32", "64,64", "128,128"))
BATCH = Choice((64, 128, 256, 512))
TAU = Choice((0.001, 0.005, 0.01, 0.02, 0.05))
GRAD_NORM = Choice((0.3, 0.5, 1.0, 2.0, 5.0, 10.0))
ACTOR_LR = LogUniform(1e-5, 1e-2)
CRITIC_LR = LogUniform(1e-5, 1e-2)
MODEL_LR = LogUniform(1e-4, 1e-2)
ENTROPY = LogUniform(1e-6, 0.1)
OFF_POLICY = {"actor_lr": ACTOR_LR, "critic_lr": CRITIC_LR, "gamma": GAMMA, "batch_size": BATCH, "tau": TAU,
              "hidden": HIDDEN, "critic_hidden": HIDDEN}

#: The search space of each algorithm: ``Config`` field name -> distribution. Names follow the learning-rate
#: convention ``lr`` (one optimizer) / ``actor_lr`` + ``critic_lr``/``value_lr``/``model_lr``/``alpha_lr``.
SPACES: dict[str, dict[str, Param]] = {
    "bptt": {"lr": LogUniform(1e-4, 1e-2), "horizon": Choice((25, 50, 100)), "batch_size": Choice((32, 64, 128, 256)),
             "max_grad_norm": GRAD_NORM, "hidden": SMALL_HIDDEN},
    "imitation": {"lr": LogUniform(1e-4, 1e-2), "fit_batch": BATCH, "rollouts_per_round": Choice((8, 16, 32)),
                  "hidden": SMALL_HIDDEN},
    "reinforce": {"actor_lr": LogUniform(1e-4, 1e-2), "value_lr": LogUniform(1e-4, 1e-2), "gamma": GAMMA,
                  "num_envs": Choice((4, 8, 16)), "entropy_coef": ENTROPY, "max_grad_norm": GRAD_NORM,
                  "hidden": SMALL_HIDDEN},
    "qac": {"actor_lr": LogUniform(1e-4, 1e-2), "critic_lr": LogUniform(1e-4, 1e-2), "gamma": GAMMA,
            "n_steps": Choice((4, 8, 16, 32)), "entropy_coef": ENTROPY, "max_grad_norm": GRAD_NORM,
            "hidden": SMALL_HIDDEN, "critic_hidden": SMALL_HIDDEN},
    "ddpg": {**OFF_POLICY, "exploration_std": Uniform(0.05, 0.5)},
    "svg0": {**OFF_POLICY},
    "svg0-discrete": {**OFF_POLICY, "alpha_lr": LogUniform(1e-5, 1e-2), "temperature": LogUniform(0.1, 2.0)},
    "svg1": {**OFF_POLICY, "model_lr": MODEL_LR},
    "mbrl": {"actor_lr": LogUniform(1e-4, 1e-2), "model_lr": MODEL_LR, "horizon": Choice((10, 25, 50, 100)),
             "gamma": GAMMA, "explore_std": Uniform(0.0, 0.3), "hidden": SMALL_HIDDEN},
    "svg-inf": {"actor_lr": LogUniform(1e-4, 1e-2), "model_lr": MODEL_LR, "gamma": GAMMA,
                "segment_length": Choice((20, 50, 100)), "init_log_std": Uniform(-3.0, 0.0),
                "mean_penalty": LogUniform(1e-4, 0.1), "hidden": SMALL_HIDDEN},
    "svgk": {"actor_lr": LogUniform(1e-4, 1e-2), "critic_lr": LogUniform(1e-4, 1e-2), "model_lr": MODEL_LR,
             "horizon": Choice((8, 16, 32, 64)), "gamma": GAMMA, "lam": Choice((0.8, 0.9, 0.95, 0.99)),
             "target_tau": Choice((0.05, 0.1, 0.2, 0.5)), "hidden": SMALL_HIDDEN, "critic_hidden": SMALL_HIDDEN},
    "pets": {"model_lr": MODEL_LR, "plan_horizon": Choice((15, 20, 30, 40)), "plan_samples": Choice((200, 400, 800)),
             "plan_elites": Choice((10, 20, 40)), "plan_iterations": Choice((3, 5, 8)),
             "plan_smoothing": Choice((0.0, 0.1, 0.25)), "model_ensemble": Choice((3, 5, 7))},
}


def space(algorithm: Any) -> dict[str, Param]:
    """The search space of ``algorithm`` (a ``pathwise.algorithms.Algorithm``), every name checked against its Config."""
    if algorithm.name not in SPACES:
        raise ValueError(f"pathwise tune has no search space for {algorithm.name}; tunable: {', '.join(SPACES)}.")
    fields = {f.name for f in dataclasses.fields(algorithm.Config)}
    unknown = sorted(set(SPACES[algorithm.name]) - fields)
    if unknown:
        raise ValueError(f"the search space of {algorithm.name} names {unknown}, which {algorithm.name}'s Config "
                         f"does not have (fields: {', '.join(sorted(fields))}); fix pathwise.tune.SPACES.")
    return SPACES[algorithm.name]


def sample(trial: Any, params: dict[str, Param]) -> dict[str, Any]:
    """Values for ``params`` drawn through an Optuna ``trial``."""
    out = {}
    for name, p in params.items():
        if isinstance(p, LogUniform):
            out[name] = trial.suggest_float(name, p.low, p.high, log=True)
        elif isinstance(p, Uniform):
            out[name] = trial.suggest_float(name, p.low, p.high)
        else:
            out[name] = trial.suggest_categorical(name, p.options)
    return out


# -- the command ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TuneArgs:
    """Search ALGO's hyperparameters on an environment with Optuna; workers sharing --storage and --study-name
    run one study."""

    env: str = "Pendulum-v1"
    """Environment: a Gymnasium id or a pathwise system (as for pathwise train)."""
    trials: int = 20
    """Trials this worker runs (each worker of a study runs its own)."""
    steps: int | None = None
    """Training budget of each trial in environment steps (default: the preset's, else 20000)."""
    storage: str = "sqlite:///pathwise-tune.db"
    """Optuna storage URL shared by the workers: sqlite:///study.db (one machine) or
    postgresql://USER:PASSWORD@HOST/DB (several machines; needs psycopg2)."""
    study_name: str | None = None
    """Study name (default: ALGO-ENV); workers with the same name and storage join one study."""
    out: str | None = None
    """Folder for the best configuration, written as the preset file OUT/ALGO.toml (default: tune/STUDY_NAME)."""
    seed: int = 0
    """Training seed of every trial (configurations are compared on the same seed; the sampler is not seeded, so
    that workers draw different configurations)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    evaluations: int = 5
    """Evaluations per trial (the pruner compares trials at each; the last one is the objective)."""
    set: tuple[str, ...] = ()
    """Algorithm options held fixed, as KEY=VALUE (applied over the preset and not searched), e.g.
    --set hidden=256,256 max_episode_steps=200."""
    quiet: bool = False
    """Only warnings from Optuna (not one line per trial)."""


def cmd_tune(argv: list[str]) -> int:
    """``pathwise tune``: parse, check every option before anything runs, run this worker's trials."""
    from pathwise import algorithms
    from pathwise import config as config_mod

    from pathwise import helptext

    usage = "pathwise tune ALGO --env ID --trials N --steps S --storage URL --study-name NAME"
    if not argv or argv[0].startswith("-"):
        print(helptext.page(usage, TuneArgs.__doc__ or "", [helptext.section("tunable algorithms", (
            (name, algorithms.get(name).info.summary) for name in SPACES if name in algorithms.available()))],
            "Run 'pathwise tune ALGO --help' for the options."), end="")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    algorithm = algorithms.get(argv[0])
    if helptext.has_help(argv[1:]):
        print(helptext.page(usage.replace("ALGO", algorithm.name), TuneArgs.__doc__ or "",
                            [helptext.section("options", helptext.options(
                                TuneArgs, metavars={"env": "ID", "storage": "URL", "study_name": "NAME",
                                                    "out": "DIR", "set": "KEY=VALUE [KEY=VALUE ...]"}))]), end="")
        return 0
    args = tyro.cli(TuneArgs, args=argv[1:], prog=f"pathwise tune {algorithm.name}")
    study, best = tune(algorithm.name, args.env, trials=args.trials, steps=args.steps, storage=args.storage,
                 study_name=args.study_name, out=args.out, seed=args.seed, eval_episodes=args.eval_episodes,
                 evaluations=args.evaluations, fixed=config_mod.parse_set(args.set), quiet=args.quiet)
    print(_report(study))
    print(f"best configuration: {best} (pathwise train {algorithm.name} --env {args.env} --preset-file {best})"
          if best is not None else "no trial has completed yet: no best configuration written")
    return 0


def tune(algo: str, env: str, *, trials: int, steps: int | None = None, storage: str, study_name: str | None = None,
         out: str | Path | None = None, seed: int = 0, eval_episodes: int = 5, evaluations: int = 5,
         fixed: dict[str, Any] | None = None, quiet: bool = False) -> tuple[Any, Path | None]:
    """Run ``trials`` trials of the study ``study_name`` in ``storage`` (created if new).

    Afterwards the study's best configuration so far is written to ``OUT/ALGO.toml`` (see the module docstring).
    Returns the Optuna study and that file (None while no trial of the study has completed). ``fixed`` options
    are applied over the preset and left out of the search.
    """
    from pathwise import algorithms, loops, registry
    from pathwise import config as config_mod
    from pathwise.checkpoint import check_writable
    from pathwise.train import DEFAULT_STEPS, SEED_LIMIT

    algorithm = algorithms.get(algo)
    env = registry.check_id(registry.canonical_id(env))
    loops.precheck(algorithm, registry.record(env))  # an algorithm that cannot run here fails now, not in a trial
    params = space(algorithm)
    for name, value in (("trials", trials), ("eval-episodes", eval_episodes), ("evaluations", evaluations),
                        ("steps", 1 if steps is None else steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} {value}: must be a whole number >= 1 (e.g. --{name} 10).")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"--seed {seed}: must be a whole number in [0, 2**31 - 10000); e.g. --seed 0.")
    preset, settings = registry.record(env).preset(algorithm.name)
    fixed = dict(fixed or {})
    preset = config_mod.to_dict(config_mod.build(algorithm.Config, algorithm.name, preset, fixed))  # checks them
    params = {k: p for k, p in params.items() if k not in fixed}
    steps = int(steps if steps is not None else settings.get("steps", DEFAULT_STEPS))
    study_name = study_name or f"{algorithm.name}-{env.replace('/', '_')}"
    out = Path(out) if out is not None else Path("tune") / study_name.replace("/", "_")
    check_writable(out, "--out", directory=True)
    optuna = _optuna()
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    eval_every = max(1, math.ceil(steps / evaluations))
    study = open_study(storage, study_name, steps)
    objective = _Objective(algorithm, env, preset, params, steps, seed, eval_every, eval_episodes)
    from pathwise.train import NonFiniteError

    study.optimize(objective, n_trials=trials, catch=(NonFiniteError,))
    best = write_best(study, algorithm, env, out / f"{algorithm.name}.toml",
                      {"steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes})
    return study, best


def _optuna():
    try:
        import optuna
    except ModuleNotFoundError as exc:
        raise ValueError("pathwise tune needs Optuna: pip install \"pathwise[tune]\" (or pip install optuna).") from exc
    return optuna


def open_study(storage: str, study_name: str, steps: int) -> Any:
    """The study ``study_name`` in ``storage``, created if new; bad URLs and unreachable databases are ValueErrors."""
    optuna = _optuna()
    import sqlalchemy.exc

    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise ValueError(f"--storage {storage!r} is not a database URL; use sqlite:///study.db (one machine) or "
                         "postgresql://USER:PASSWORD@HOST/DB (several machines).") from None
    sqlite = url.get_backend_name() == "sqlite"
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite else {}
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=steps // 3)
    for attempt in range(OPEN_ATTEMPTS):
        try:
            rdb = optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)
            return optuna.create_study(storage=rdb, study_name=study_name, direction="maximize", pruner=pruner,
                                       load_if_exists=True)
        except ImportError as exc:  # the database driver (psycopg2 for postgresql://) is not installed
            raise ValueError(f"--storage {storage}: {exc.__cause__ or exc}; install that database driver (for "
                             "postgresql:// with SQLAlchemy 2.1: pip install \"psycopg[binary]\").") from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            racing = sqlite and any(s in str(exc) for s in ("locked", "already exists", "UNIQUE constraint"))
            if racing and attempt + 1 < OPEN_ATTEMPTS:  # another worker is creating the same schema right now
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
                continue
            raise ValueError(f"--storage {storage}: cannot open the database ({str(exc.orig or exc).strip()}); "
                             "check the path or host, that it exists and is writable, and the credentials.") from None
        except ValueError as exc:  # Optuna's own: e.g. the study exists with another direction
            raise ValueError(f"--storage {storage} --study-name {study_name}: {exc}") from None
    raise AssertionError("unreachable")


class _Objective:
    """One trial: sample a config, train it while reporting each evaluation to the pruner, return the final one."""

    def __init__(self, algorithm: Any, env: str, preset: dict[str, Any], params: dict[str, Param], steps: int,
                 seed: int, eval_every: int, eval_episodes: int):
        self.algorithm, self.env, self.preset, self.params = algorithm, env, preset, params
        self.steps, self.seed, self.eval_every, self.eval_episodes = steps, seed, eval_every, eval_episodes

    def __call__(self, trial: Any) -> float:
        from pathwise import config as config_mod
        from pathwise import train as tr

        cfg = config_mod.build(self.algorithm.Config, self.algorithm.name, self.preset, sample(trial, self.params))
        trial.set_user_attr("config", config_mod.to_dict(cfg))
        trainer = tr.Trainer(tr.Run(self.algorithm, self.env, cfg, self.seed), eval_every=self.eval_every,
                             eval_episodes=self.eval_episodes, quiet=True)
        pruned = []

        def report(info: dict[str, Any]) -> bool | None:
            if "eval_return_mean" not in info:
                return None
            trial.report(info["eval_return_mean"], int(info["env_steps"]))
            if trial.should_prune():
                pruned.append(int(info["env_steps"]))
                return False
            return None

        summary = trainer.train(self.steps, callback=report)
        if pruned:
            raise _optuna().TrialPruned(f"evaluation return {summary['final_return_mean']:.1f} at {pruned[0]} steps "
                                        "is below the median of the earlier trials")
        return float(summary["final_return_mean"])


def write_best(study: Any, algorithm: Any, env: str, path: Path, run: dict[str, Any]) -> Path | None:
    """Write the study's best complete trial as a preset file at ``path`` (None, and nothing written, if none is).

    The table holds the keys the shipped preset sets, the tuned ones and any other that differs from the Config's
    default, at the best trial's values, so that
    ``pathwise train ALGO --env ENV --preset-file PATH`` builds exactly the configuration that trial trained.
    """
    from pathwise import checkpoint, presets, registry
    from pathwise import config as config_mod

    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    config = best.user_attrs["config"]
    defaults = config_mod.to_dict(algorithm.Config())
    shipped = registry.record(env).preset(algorithm.name)[0]
    keys = [k for k in config if k in shipped or k in best.params or config[k] != defaults[k]]
    comment = (f"Written by `pathwise tune {algorithm.name} --env {env}` (study {study.study_name!r}): trial "
               f"{best.number}, the best of {len(complete)} complete trials, final evaluation return "
               f"{best.value:.2f} after {run['steps']} steps.\n"
               f"Train from it: pathwise train {algorithm.name} --env {env} --preset-file {path.name}")
    checkpoint.atomic_write_text(path, presets.dumps(env, {k: config[k] for k in keys}, run, comment))
    return path


def _report(study: Any) -> str:
    optuna = _optuna()
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING)}
    line = f"study {study.study_name}: " + ", ".join(f"{n} {k}" for k, n in counts.items())
    if counts["complete"]:
        best = study.best_trial
        line += f"; best trial {best.number}: return {best.value:.2f} with {best.params}"
    return line


__all__ = ["Choice", "LogUniform", "SPACES", "TuneArgs", "Uniform", "cmd_tune", "open_study", "sample", "space",
           "tune", "write_best"]
