"""The ``pathwise`` command line: train, evaluate, solve, estimators, list.

    pathwise train svg-inf --env Pendulum-v1 --steps 2000 --seed 0
    pathwise train ddpg --env Pendulum-v1 --lr 3e-4 --set tau=0.01
    pathwise train --resume runs/svg-inf-Pendulum-v1-s0-...
    pathwise evaluate runs/svg-inf-Pendulum-v1-s0-... --episodes 20 --render pendulum.gif
    pathwise solve ilqr --system pendulum
    pathwise estimators gaussian
    pathwise list

Every subcommand has ``--help``; ``pathwise train ALGO --help`` lists the
algorithm's options with the values the preset for ``--env`` gives them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from pathwise import algorithms

HELP = """usage: pathwise {train,evaluate,solve,estimators,list} ...

End-to-end policy optimization through backpropagation (JAX).

commands:
  train ALGO --env ID   train an algorithm (pathwise list shows them); --resume RUN_DIR continues a run
  evaluate RUN_DIR      evaluate a trained run on its environment, optionally render it
  solve METHOD          trajectory optimization (lqr, ilqr, shooting, mpc; conditioning) on a system
  estimators STUDY      gradient-estimator variance studies (gaussian, pendulum)
  list                  algorithms, systems, environments with known rewards, presets

Run `pathwise COMMAND --help` for the options of a command.
"""


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """Train ALGO on an environment; algorithm options follow (see below) or go in --set/--config."""

    env: str = "Pendulum-v1"
    """Environment: a Gymnasium id (Pendulum-v1, CartPole-v1) or a pathwise system (pathwise/Pendulum-v1, pendulum)."""
    steps: int | None = None
    """Budget in environment steps (default: the preset's, else 20000)."""
    seed: int = 0
    """Random seed (the same seed gives the same run on the same machine)."""
    seeds: int = 1
    """Train this many seeds (seed, seed+1, ...); each gets OUT/seed_K."""
    vmap_seeds: bool = True
    """With --seeds > 1, train all seeds as one vmapped (and, over several devices, sharded) program where the
    algorithm's loop is fully jittable (bptt; svgk on a pathwise System); otherwise one after another."""
    host_devices: int | None = None
    """With vmapped seeds on a machine without an accelerator: split the CPU into this many XLA devices and shard
    the seeds over them, so they train in parallel (default: one per core; 1 = a single device)."""
    out: str | None = None
    """Run directory (default: runs/ALGO-ENV-sSEED-TIMESTAMP)."""
    config: str | None = None
    """A TOML or JSON file of algorithm options (applied after the preset)."""
    set: tuple[str, ...] = ()
    """Algorithm options as KEY=VALUE (applied last), e.g. --set lr=3e-4 hidden=64,64."""
    no_preset: bool = False
    """Ignore the tuned preset for (ALGO, ENV) and start from the algorithm's defaults."""
    eval_every: int | None = None
    """Evaluate every this many environment steps (default: the preset's, else 1000)."""
    eval_episodes: int | None = None
    """Episodes per evaluation (default 10)."""
    quiet: bool = False
    """No progress bar."""


@dataclasses.dataclass(frozen=True)
class ResumeArgs:
    """Continue a run from its last checkpoint; the result equals an uninterrupted run with the same seed."""

    resume: str
    """Run directory to continue."""
    steps: int | None = None
    """New total budget in environment steps (default: the run's own)."""
    quiet: bool = False
    """No progress bar."""


@dataclasses.dataclass(frozen=True)
class EvaluateArgs:
    """Evaluate a trained run (deterministic policy, seeded episodes) and optionally render an episode."""

    run_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    """Run directory written by `pathwise train` (or an agent .npz file)."""
    episodes: int = 10
    """Number of episodes."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed+i)."""
    checkpoint: Literal["best", "last"] = "best"
    """Which checkpoint of a run directory to evaluate."""
    render: str | None = None
    """Render the first episode to this file: .gif, .mp4 (needs ffmpeg) or .png (a strip of frames)."""


def _tyro_help(cls: type, prog: str, default: Any = None, description: str | None = None) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        tyro.cli(cls, args=["--help"], prog=prog, default=default, description=description)
    return buf.getvalue()


def _load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--config {path}: no such file.")
    text = p.read_text()
    if p.suffix == ".json":
        return json.loads(text)
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path} is not valid TOML ({exc}); use KEY = VALUE lines or a .json file.") from exc


def _default_out(algo: str, env: str, seed: int) -> Path:
    safe = env.replace("/", "_")
    return Path("runs") / f"{algo}-{safe}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(argv: list[str]) -> int:
    from pathwise import train as tr

    if "--resume" in argv or any(a.startswith("--resume=") for a in argv):
        args = tyro.cli(ResumeArgs, args=argv, prog="pathwise train --resume")
        _, summary = tr.resume(args.resume, args.steps, quiet=args.quiet or None)
        _print_summary(summary, args.resume)
        return 0
    if not argv or argv[0].startswith("-"):
        print("usage: pathwise train ALGO --env ID [options]   |   pathwise train --resume RUN_DIR\n")
        print("algorithms: " + ", ".join(algorithms.available()))
        print("\nRun `pathwise train ALGO --help` for an algorithm's options.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    algo, rest = argv[0], argv[1:]
    cls = algorithms.get(algo)
    wants_help = any(a in ("-h", "--help") for a in rest)
    rest_nohelp = [a for a in rest if a not in ("-h", "--help")]
    args, unknown = tyro.cli(TrainArgs, args=rest_nohelp, prog=f"pathwise train {cls.name}",
                             return_unknown_args=True)
    env = tr.canonical_env_id(args.env)
    file_values = _load_config_file(args.config) if args.config else None
    base, run = tr.build_config(cls, env, config=file_values, use_preset=not args.no_preset)
    if wants_help:
        print(_tyro_help(TrainArgs, f"pathwise train {cls.name}"))
        print(_tyro_help(cls.Config, f"pathwise train {cls.name} [train options]", default=base,
                         description=f"{cls.name} options ({cls.__module__}.{cls.__name__}.Config); defaults shown "
                                     f"include the preset for {env}. Pass them as flags or with --set KEY=VALUE."))
        return 0
    cfg = tyro.cli(cls.Config, args=unknown, default=base, prog=f"pathwise train {cls.name}")
    cfg, _ = tr.build_config(cls, env, config=cfg, use_preset=False, overrides=tr.parse_set(args.set))
    steps = int(args.steps if args.steps is not None else run.get("steps", 20_000))
    out_root = Path(args.out) if args.out else _default_out(cls.name, env, args.seed)
    summaries = []
    vmapped = _vmapped_module(cls.name, env, cfg) if args.seeds > 1 and args.vmap_seeds else None
    if vmapped is not None:
        from pathwise import seeds as pw_seeds

        pw_seeds.use_host_devices(args.host_devices)  # before JAX starts: the device count is fixed after that
        summaries = _train_vmapped_seeds(vmapped, cls, env, cfg, args, steps, out_root, run)
    for k in range(0 if summaries else args.seeds):
        seed = args.seed + k
        out = out_root if args.seeds == 1 else out_root / f"seed_{seed}"
        learner = tr.make_learner(cls.name, env, cfg, seed)
        trainer = tr.Trainer(learner, out=out,
                             eval_every=int(args.eval_every or run.get("eval_every", tr.DEFAULT_EVAL_EVERY)),
                             eval_episodes=int(args.eval_episodes or run.get("eval_episodes", 10)),
                             quiet=args.quiet or None, run_info={"steps": steps})
        summary = trainer.run(steps)
        summaries.append(summary)
        _print_summary(summary, out)
    if args.seeds > 1:
        finals = [s["final_return_mean"] for s in summaries]
        print(f"{args.seeds} seeds: final return {sum(finals) / len(finals):.1f} "
              f"(min {min(finals):.1f}, max {max(finals):.1f})")
    return 0


def _vmapped_module(algo: str, env: str, cfg: Any) -> Any:
    """The algorithm module whose whole training loop is one jittable function of a seed on ``env``, or None."""
    if algo == "bptt":
        from pathwise.algorithms import bptt

        return bptt
    if algo == "svgk" and (cfg.use_true_dynamics or env.startswith("pathwise/")):
        from pathwise.algorithms import svgk

        return svgk
    return None


def _train_vmapped_seeds(module: Any, cls, env: str, cfg: Any, args: TrainArgs, steps: int, out_root: Path,
                         run: dict[str, Any]) -> list[dict[str, Any]]:
    """All seeds as one jitted, vmapped (sharded) program; then each seed is evaluated and saved like a normal run."""
    import math

    import equinox as eqx
    import jax
    import numpy as np

    from pathwise import seeds as pw_seeds
    from pathwise import train as tr

    system = module.make_system(env)
    per_update = module.steps_per_update(cfg)
    num_updates = max(1, math.ceil(steps / per_update))
    devices = pw_seeds.shard_count(args.seeds, len(jax.devices()))  # what train_seeds shards over
    where = f"sharded over {devices} devices" if devices > 1 else "on one device"
    print(f"training {args.seeds} seeds of {cls.name} as one vmapped program, {where} ({num_updates} updates each)",
          flush=True)
    t0 = time.perf_counter()
    states, metrics = module.train_seeds(system, cfg, args.seeds, num_updates, first_seed=args.seed)
    jax.block_until_ready(states)
    elapsed = time.perf_counter() - t0
    metrics = {k: np.asarray(v) for k, v in metrics.items()}  # one transfer, not one per seed and update
    summaries = []
    for i in range(args.seeds):
        learner = tr.make_learner(cls.name, env, cfg, args.seed + i)
        learner.set_state(jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, states))
        trainer = tr.Trainer(learner, out=out_root / f"seed_{args.seed + i}",
                             eval_every=int(args.eval_every or run.get("eval_every", tr.DEFAULT_EVAL_EVERY)),
                             eval_episodes=int(args.eval_episodes or run.get("eval_episodes", 10)), quiet=True,
                             run_info={"steps": steps, "vmapped_seeds": args.seeds,
                                       "seed_devices": pw_seeds.devices_of(states)})
        trainer.history = [{"iteration": u + 1, "env_steps": (u + 1) * per_update,
                            **{k: float(v[i, u]) for k, v in metrics.items()}} for u in range(num_updates)]
        c = trainer.counters
        c.iterations, c.env_steps, c.train_time = num_updates, learner.env_steps, elapsed / args.seeds
        c.next_eval = c.env_steps + trainer.eval_every
        trainer._evaluate_and_save()
        summaries.append(trainer.summary())
        _print_summary(summaries[-1], trainer.out)
    print(f"{args.seeds} seeds trained in {elapsed:.1f} s (one program, {where})")
    return summaries


def _print_summary(summary: dict[str, Any], out: Any) -> None:
    line = (f"{summary['algorithm']} on {summary['env_id']} (seed {summary['seed']}): "
            f"{summary['env_steps']} steps, final return {summary['final_return_mean']:.1f} "
            f"± {summary['final_return_std']:.1f}, best {summary['best_return_mean']:.1f}")
    if summary.get("steps_to_solve") is not None:
        line += f", solved ({summary['solved_threshold']:g}) at {summary['steps_to_solve']} steps"
    if summary.get("ceiling") is not None:
        line += f", ceiling {summary['ceiling']:.1f}"
    print(line)
    print(f"run directory: {out}")


def cmd_evaluate(argv: list[str]) -> int:
    from pathwise.agent import load
    from pathwise.envs import evaluate

    args = tyro.cli(EvaluateArgs, args=argv, prog="pathwise evaluate")
    if args.render:  # refuse a render target that cannot be written before evaluating
        import shutil

        suffix = Path(args.render).suffix.lower()
        if suffix not in (".gif", ".mp4", ".png"):
            raise ValueError(f"--render {args.render}: use a .gif, .mp4 or .png file name.")
        if suffix == ".mp4" and shutil.which("ffmpeg") is None:
            raise ValueError(f"--render {args.render}: writing .mp4 needs ffmpeg on PATH; install it or render to "
                             ".gif (animation) or .png (a strip of frames) instead.")
    path = Path(args.run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a run directory written by `pathwise train` (its --out) "
                                "or an agent .npz file saved with agent.save().")
    if path.is_dir():
        from pathwise.train import open_run

        ckpt_file = path / "checkpoints" / f"{args.checkpoint}.npz"
        if not ckpt_file.exists():
            raise FileNotFoundError(f"{ckpt_file} does not exist; is {path} a finished `pathwise train` run?")
        from pathwise.agent import Agent

        agent = Agent(open_run(path, which=args.checkpoint, quiet=True))
    else:
        agent = load(path, quiet=True)
    res = evaluate(lambda o: agent.learner.act(o, deterministic=True), agent.env_id, episodes=args.episodes,
                   seed=args.seed)
    print(f"{agent.learner.name} on {agent.env_id}: mean return {res.mean:.2f} ± {res.std:.2f} over "
          f"{args.episodes} episodes (mean length {float(sum(res.lengths)) / len(res.lengths):.0f})")
    if args.render:
        from pathwise.render import render_episode

        written = render_episode(lambda o: agent.learner.act(o, deterministic=True), agent.env_id,
                                 args.render, seed=args.seed)
        print(f"rendered episode (seed {args.seed}) to {written}")
    return 0


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def cmd_list(argv: list[str]) -> int:
    from pathwise import presets, systems

    if argv and argv[0] in ("-h", "--help"):
        print("usage: pathwise list\n\nList algorithms, systems, environments with known rewards, and presets.")
        return 0
    print("algorithms:")
    for name in algorithms.available():
        cls = algorithms.get(name)
        kinds = "/".join(k for k, ok in (("continuous", cls.continuous_ok), ("discrete", cls.discrete_ok)) if ok)
        needs = ", needs a known reward" if cls.needs_reward else ""
        needs += ", needs a pathwise system" if cls.needs_system else ""
        doc = _first_line(cls.__doc__) or _first_line(sys.modules[cls.__module__].__doc__)
        print(f"  {name:14s} {kinds}{needs}. {doc}")
    print("\nsystems (differentiable; also Gymnasium ids):")
    for env_id, factory in systems.REGISTRY.items():
        print(f"  {env_id}")
    try:
        from pathwise import rewards

        print("\nenvironments with known rewards (for model-based algorithms):")
        for env_id in sorted(rewards.REWARDS):
            print(f"  {env_id}")
    except ImportError:
        pass
    print("\npresets:")
    for algo, envs in presets.available().items():
        print(f"  {algo:14s} {', '.join(envs)}")
    return 0


def cmd_solve(argv: list[str]) -> int:
    from pathwise.cli_solve import main as solve_main

    return solve_main(argv)


def cmd_estimators(argv: list[str]) -> int:
    from pathwise.cli_estimators import main as estimators_main

    return estimators_main(argv)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "solve": cmd_solve, "estimators": cmd_estimators,
            "list": cmd_list}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return 0 if argv else 2
    if argv[0] == "--version":
        from pathwise import __version__

        print(__version__)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(f"pathwise: unknown command {cmd!r}. Commands: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    try:
        return COMMANDS[cmd](argv[1:])
    except SystemExit as exc:  # tyro's --help (0) and usage errors (2): a return code, as for every command
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pathwise {cmd}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # clear message for known failure types, traceback otherwise
        from pathwise.checkpoint import CheckpointError
        from pathwise.train import NonFiniteError

        if isinstance(exc, (CheckpointError, NonFiniteError)):
            print(f"pathwise {cmd}: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
