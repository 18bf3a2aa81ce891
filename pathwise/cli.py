"""The ``pathwise`` command line: train, evaluate, solve, estimators, list.

    pathwise train svg-inf --env Pendulum-v1 --steps 2000 --seed 0
    pathwise train ddpg --env Pendulum-v1 --actor-lr 3e-4 --set tau=0.01
    pathwise train --resume runs/svg-inf-Pendulum-v1-s0-...
    pathwise train reinforce --env mypkg.envs:make              # your own gymnasium.Env
    pathwise train bptt --system mypkg.dynamics:MySystem        # your own differentiable System
    pathwise evaluate runs/svg-inf-Pendulum-v1-s0-... --episodes 20 --render pendulum.gif
    pathwise evaluate runs/svg-inf-Pendulum-v1-s0-... --episodes 100 --per-start-csv starts.csv
    pathwise solve ilqr --system pendulum
    pathwise estimators gaussian
    pathwise list

Every subcommand has ``--help``; ``pathwise train ALGO --help`` lists the
algorithm's options with the values the preset for ``--env`` gives them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from pathwise import algorithms, helptext, registry
from pathwise import config as config_mod

#: The commands of the top-level help, in its order.
COMMAND_SUMMARIES = (
    ("train ALGO --env ID", "train an algorithm (pathwise list shows them); --env/--system pkg.mod:name: your own; "
                            "--resume RUN_DIR continues a run"),
    ("evaluate RUN_DIR", "evaluate a trained run on its environment (per start state where known), render it"),
    ("export RUN --out FILE", "the policy alone as ONNX, npz or safetensors (runs without pathwise)"),
    ("solve METHOD", "trajectory optimization (lqr, ilqr, shooting, mpc; conditioning) on a system"),
    ("estimators STUDY", "gradient-estimator variance studies (gaussian, pendulum)"),
    ("list", "algorithms, systems, environments with known rewards, presets"),
    ("tune ALGO --env ID", "hyperparameter search with Optuna (workers on one --storage share a study)"),
)


def top_help() -> str:
    return helptext.page("pathwise COMMAND [options]",
                         "End-to-end policy optimization through backpropagation (JAX).",
                         [helptext.section("commands", COMMAND_SUMMARIES)],
                         "Run 'pathwise COMMAND --help' for the options of a command.")


@dataclasses.dataclass(frozen=True)
class TrainArgs:
    """Train ALGO on an environment; algorithm options follow (see below) or go in --set/--config."""

    env: str | None = None
    """Environment (default Pendulum-v1): a Gymnasium id (Pendulum-v1, CartPole-v1), a pathwise system
    (pathwise/Pendulum-v1, pendulum), or your own as package.module:name, a function or class that builds a
    gymnasium.Env (or a System) with no arguments."""
    system: str | None = None
    """A differentiable system instead of --env: a pathwise id (pendulum) or your own System as
    package.module:Class (a subclass of pathwise.systems.System, or a function returning one)."""
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
    num_processes: int = 1
    """With vmapped seeds: processes (one per machine, or several on one) that train the --seeds together, each
    running this command with its own --process-id; the seeds are sharded over the devices of all of them and
    each process evaluates and saves the seeds on its own devices."""
    process_id: int = 0
    """This process's index in [0, --num-processes) (0 on the machine --coordinator names)."""
    coordinator: str | None = None
    """With --num-processes > 1: HOST:PORT where process 0 listens, the same on every process (default:
    $JAX_COORDINATOR_ADDRESS)."""
    out: str | None = None
    """Run directory (default: runs/ALGO-ENV-sSEED-TIMESTAMP); an existing run there is refused (see --overwrite)."""
    overwrite: bool = False
    """Replace the run already in --out (its checkpoints, logs and TensorBoard events are deleted first)."""
    config: str | None = None
    """A TOML or JSON file of algorithm options (applied after the preset)."""
    set: tuple[str, ...] = ()
    """Algorithm options as KEY=VALUE (applied last), e.g. --set actor_lr=3e-4 hidden=64,64 (`lr` where the
    algorithm has one optimizer; `pathwise list` names each algorithm's step sizes)."""
    no_preset: bool = False
    """Ignore the tuned preset for (ALGO, ENV) and start from the algorithm's defaults."""
    preset_file: str | None = None
    """A preset file (the format of pathwise/presets/*.toml; `pathwise tune` writes one): its table for --env
    replaces the shipped preset, run settings (steps, eval_every, eval_episodes) included."""
    eval_every: int | None = None
    """Evaluate every this many environment steps (default: the preset's, else 1000)."""
    eval_episodes: int | None = None
    """Episodes per evaluation (default 10)."""
    video_every: int | None = None
    """Record the first episode of every N-th evaluation (the first evaluation included) as
    OUT/videos/eval_STEP.gif, with a step and return overlay (default: no videos)."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (the wandb extra; WANDB_MODE=offline logs without an account into
    OUT/wandb); --resume continues the same W&B run."""
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
    """Evaluate a trained run (its deterministic policy, or with --planner a model-based run's planning agent, on
    seeded episodes) and optionally render an episode."""

    run_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN_DIR")]
    """Run directory written by `pathwise train` (or an agent .npz file)."""
    episodes: int | None = None
    """Number of episodes (default: as many as the run's own evaluations)."""
    seed: int | None = None
    """Seed of the first episode, episode i uses seed+i (default: the run's own evaluation seeds, so the result
    is comparable with its eval.csv)."""
    checkpoint: Literal["best", "last"] = "best"
    """Which checkpoint of a run directory to evaluate."""
    render: str | None = None
    """Render the first episode to this file: .gif, .mp4 (needs ffmpeg) or .png (a strip of frames)."""
    per_start_csv: str | None = None
    """Write one row per episode to this .csv file: its seed, start state (where the environment's is known, e.g.
    Pendulum-v1's theta0, theta_dot0), return, length and whether it is below the task's failure line."""
    planner: Literal["auto", "none", "run", "mppi", "cem"] = "auto"
    """Who acts: 'auto' as the run's own evaluations (its policy, or its planning agent where it trained with
    eval_planner=true; pets: its CEM, the plan carried from step to step); 'none' the policy (pets: its CEM planned
    anew at every step); 'mppi' or 'cem' the planning agent of a model-based run (mbrl, svg-inf,
    svgk on an environment): at every step a sampling planner over the run's learned model, seeded by its policy,
    closed by its value, warm-started from the step before ('run': the run's own act_planner, mppi if it acted by
    its policy). The episodes are played in lockstep, one batched call per step."""
    plan_horizon: int | None = None
    """The planner's horizon (default: the run's act_plan_horizon)."""
    plan_samples: int | None = None
    """Action sequences the planner scores per refit (default: the run's act_plan_samples)."""
    plan_iterations: int | None = None
    """Refits per step (default: the run's act_plan_iterations)."""
    plan_policy_fraction: float | None = None
    """Fraction of the samples drawn from the policy (default: the run's act_plan_policy_fraction)."""


#: How the values of the options that name things are written in the help.
METAVARS = {"env": "ID", "out": "DIR", "config": "FILE", "set": "KEY=VALUE [KEY=VALUE ...]", "resume": "RUN_DIR",
            "run_dir": "RUN_DIR", "render": "FILE", "per_start_csv": "FILE"}


def _help(cls: type, usage: str, description: str | None = None, **options: Any) -> str:
    """The help page of a command whose options are the fields of dataclass ``cls``."""
    return helptext.page(usage, description or (cls.__doc__ or ""),
                         [helptext.section("options", helptext.options(cls, metavars=METAVARS, **options))])


def _default_out(algo: str, env: str, seed: int) -> Path:
    safe = env.replace("/", "_")
    return Path("runs") / f"{algo}-{safe}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(argv: list[str]) -> int:
    from pathwise import train as tr

    if "--resume" in argv or any(a.startswith("--resume=") for a in argv):
        if helptext.has_help(argv):
            print(_help(ResumeArgs, "pathwise train --resume RUN_DIR [options]"), end="")
            return 0
        args = tyro.cli(ResumeArgs, args=argv, prog="pathwise train --resume")
        _, summary = tr.resume(args.resume, args.steps, quiet=args.quiet or None)
        _print_summary(summary, args.resume)
        return 0
    if not argv or argv[0].startswith("-"):
        print(helptext.page("pathwise train ALGO --env ID [options]  |  pathwise train --resume RUN_DIR [options]",
                            "Train an algorithm on an environment, or continue a run from its last checkpoint.",
                            [helptext.section("algorithms", ((name, algorithms.get(name).info.summary)
                                                             for name in algorithms.available()))],
                            "Run 'pathwise train ALGO --help' for an algorithm's options."), end="")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    parsed = _parse_train(argv)
    if parsed is None:  # --help was printed
        return 0
    algorithm, env, cfg, args, settings = parsed
    steps = int(args.steps if args.steps is not None else settings.get("steps", tr.DEFAULT_STEPS))
    if steps <= 0:
        raise ValueError(f"--steps {steps}: the budget must be a positive number of environment steps.")
    out_root = Path(args.out) if args.out else _default_out(algorithm.name, env, args.seed)
    _refuse_existing_runs(out_root, args)
    summaries = _seed_runs(algorithm, env, cfg, args, steps, out_root, settings)()
    if args.seeds > 1:
        finals = [s["final_return_mean"] for s in summaries]
        print(f"{len(summaries)} seeds: final return {sum(finals) / len(finals):.1f} "
              f"(min {min(finals):.1f}, max {max(finals):.1f})")
        _write_aggregate(out_root, algorithm.name, env, args, summaries)
    return 0


def _write_aggregate(out_root: Path, algo: str, env: str, args: TrainArgs, summaries: list[dict[str, Any]]) -> None:
    """The seeds' aggregate curve (IQM, bootstrap 95% CI) beside their directories; a note if rliable is missing."""
    from pathwise import plots

    record = registry.record(env)
    try:
        path = plots.aggregate_seeds(out_root, [out_root / f"seed_{s}" for s in range(args.seed, args.seed + args.seeds)],
                                     label=f"{algo} on {env}, {args.seeds} seeds",
                                     step_unit=_step_unit(summaries[0]),
                                     solved_at=record.solved_at, max_return=record.max_return)
    except ImportError as exc:
        if exc.name != "rliable":
            raise
        print(f"note: no aggregate curve: {exc}")
        return
    print(f"aggregate over {args.seeds} seeds (IQM with a 95% bootstrap confidence interval): {path}, "
          f"{out_root / 'aggregate.csv'}")


def _parse_train(argv: list[str]):
    """``(algorithm, env id, config, TrainArgs, preset run settings)``, or None after printing ``--help``.

    Every option is checked here, before anything is built or written.
    """
    algorithm = algorithms.get(argv[0])
    rest = argv[1:]
    wants_help = helptext.has_help(rest)
    args, unknown = tyro.cli(TrainArgs, args=[a for a in rest if a not in ("-h", "--help")],
                             prog=f"pathwise train {algorithm.name}", return_unknown_args=True)
    env = _problem_id(args)
    preset, settings = _preset(algorithm.name, env, args)
    file_values = config_mod.load_file(args.config) if args.config else None
    base = config_mod.build(algorithm.Config, algorithm.name, preset, file_values,
                            config_usage=f"{{}} = ... in {args.config}")
    flags = [a[2:].split("=", 1)[0].replace("-", "_") for a in unknown if a.startswith("--")]
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    config_mod.check_keys(algorithm.Config, flags, lambda name: f"{flag(name)} ...", f"pathwise train {algorithm.name}",
                          spell=flag)  # tyro would only say "unrecognized"
    cfg = tyro.cli(algorithm.Config, args=unknown, default=base, prog=f"pathwise train {algorithm.name}")
    set_values = config_mod.parse_set(args.set)
    cfg = config_mod.build(algorithm.Config, algorithm.name, {}, cfg, set_values, overrides_usage="--set {}=...")
    if wants_help:
        sources = {}
        for name in (f.name for f in dataclasses.fields(algorithm.Config)):
            flag = "--" + name.replace("_", "-")
            if name in set_values:
                sources[name] = "--set"
            elif any(a in (flag, "--no-" + flag[2:]) or a.startswith(flag + "=") for a in unknown):
                sources[name] = "the command line"
            elif file_values and name in file_values:
                sources[name] = f"--config {args.config}"
            elif name in preset:
                sources[name] = f"the {env} preset"
        print(_train_help(algorithm, env, args, settings, cfg, sources), end="")
        return None
    _check_train_options(args)
    return algorithm, env, cfg, args, settings


def _problem_id(args: TrainArgs) -> str:
    """The id of --env or --system (a user's own is imported and registered here: pathwise.problems)."""
    from pathwise import problems

    if args.env is not None and args.system is not None:
        raise ValueError(f"--env {args.env} and --system {args.system}: pass one of them (--system for a "
                         "differentiable System, --env for any environment).")
    if args.system is not None:
        return problems.system_id(args.system, option="--system")
    return problems.env_id(args.env if args.env is not None else "Pendulum-v1", option="--env")


def _preset(algo: str, env: str, args: TrainArgs) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset's ``(config values, run settings)``: from --preset-file, else the shipped one, else none."""
    from pathwise import presets

    if args.preset_file is not None and args.no_preset:
        raise ValueError("--preset-file and --no-preset contradict each other; pass one of them.")
    if args.preset_file is not None:
        return presets.load_file(args.preset_file, env, registry.record(env).twin)
    return registry.record(env).preset(algo) if not args.no_preset else ({}, {})


def _train_help(algorithm, env: str, args: TrainArgs, settings: dict, cfg: Any, sources: dict[str, str]) -> str:
    """``pathwise train ALGO --help``: the run options and the algorithm's, each with the value this command line
    would use and, where it is not the default, where that value comes from."""
    run_sources = {f.name: "the command line" for f in dataclasses.fields(TrainArgs)
                   if getattr(args, f.name) != f.default}
    run_sources.update({k: f"the {env} preset" for k in ("steps", "eval_every", "eval_episodes")
                        if getattr(args, k) is None and k in settings})
    run_values = dataclasses.replace(args, **{k: settings[k] for k in settings if k in run_sources})
    preset_note = (f"Values marked 'from the {env} preset' are the tuned preset's (--no-preset drops them)."
                   if any("preset" in v for v in (*sources.values(), *run_sources.values())) else
                   f"No preset applies to {algorithm.name} on {env}.")
    return helptext.page(
        f"pathwise train {algorithm.name} --env ID [options] [{algorithm.name} options]",
        f"Train {algorithm.name} on --env. {algorithm.info.summary} Algorithm options are flags (--hidden 64 64) or --set KEY=VALUE pairs; both apply after --config.",
        [helptext.section("run options", helptext.options(TrainArgs, run_values, sources=run_sources,
                                                          metavars=METAVARS)),
         helptext.section(f"{algorithm.name} options (the values this command line would use)",
                          helptext.options(algorithm.Config, cfg, sources=sources))],
        preset_note)


def _check_train_options(args: TrainArgs) -> None:
    """The run options, refused with the option's name before anything is built or written."""
    from pathwise.checkpoint import check_writable
    from pathwise.train import SEED_LIMIT

    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: train at least one seed (e.g. --seeds 4).")
    if not 0 <= args.seed or args.seed + args.seeds > SEED_LIMIT:
        raise ValueError(f"--seed {args.seed}: seeds must be whole numbers in [0, 2**31 - 10000) (a seed seeds JAX "
                         "and the Gymnasium resets); e.g. --seed 0.")
    for name in ("eval_every", "eval_episodes", "host_devices", "video_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value}: must be >= 1 (omit it for the default).")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps {args.steps}: the budget must be a positive number of environment steps.")
    if args.out is not None:
        check_writable(args.out, "--out", directory=True)
    if args.wandb_project is not None:
        from pathwise.train import check_wandb

        check_wandb(args.wandb_project, "--out")  # the CLI always writes a run directory
    from pathwise.seeds import check_processes

    check_processes(args.coordinator, args.num_processes, args.process_id)


def _refuse_existing_runs(out_root: Path, args: TrainArgs) -> None:
    """A run directory that already holds a run is refused (its model would be lost) unless --overwrite."""
    outs = [out_root] if args.seeds == 1 else [out_root / f"seed_{s}" for s in range(args.seed, args.seed + args.seeds)]
    if not args.overwrite and any((out / "config.json").exists() for out in outs):
        raise FileExistsError(f"{out_root} already holds a run; continue it with `pathwise train --resume {out_root}`, "
                              "choose another --out, or pass --overwrite to replace it.")


def _seed_runs(algorithm, env: str, cfg: Any, args: TrainArgs, steps: int, out_root: Path, settings: dict):
    """What trains the seeds: one vmapped program (the simulated loop), else one run after another."""
    from pathwise import train as tr

    def trainer(seed: int, quiet: bool, info: dict) -> tr.Trainer:
        out = out_root if args.seeds == 1 else out_root / f"seed_{seed}"
        video = {} if args.video_every is None else {"video_every": args.video_every}
        video.update(tr.wandb_info(args.wandb_project))
        return tr.Trainer(tr.Run(algorithm, env, cfg, seed), out=out, quiet=quiet,
                          run_info={"steps": steps, **video, **info},
                          overwrite=args.overwrite,
                          eval_every=args.eval_every if args.eval_every is not None else
                          settings.get("eval_every", tr.DEFAULT_EVAL_EVERY),
                          eval_episodes=args.eval_episodes if args.eval_episodes is not None else
                          settings.get("eval_episodes", tr.DEFAULT_EVAL_EPISODES))

    def sequential() -> list[dict[str, Any]]:
        summaries = []
        for seed in range(args.seed, args.seed + args.seeds):
            t = trainer(seed, args.quiet or None, {})
            if seed == args.seed and t.budget_note(steps):  # said before the run, not found in its summary
                print(t.budget_note(steps), flush=True)
            summaries.append(t.train(steps))
            _print_summary(summaries[-1], out_root if args.seeds == 1 else out_root / f"seed_{seed}")
            if seed == args.seed and t.overshoot_note(steps):
                print(t.overshoot_note(steps), flush=True)
        return summaries

    if args.seeds > 1 and args.vmap_seeds:
        from pathwise import loops

        if loops.select(algorithm, registry.record(env), cfg) == "simulated":  # decided before JAX starts
            from pathwise import seeds as pw_seeds

            pw_seeds.use_host_devices(args.host_devices)  # before JAX starts: the device count is fixed after that
            pw_seeds.start_processes(args.coordinator, args.num_processes, args.process_id)  # so is the group
            return lambda: _train_vmapped_seeds(algorithm, env, cfg, args, steps, trainer)
    if args.num_processes > 1:
        why = ("one seed cannot be shared; pass --seeds N" if args.seeds == 1 else "--no-vmap-seeds trains the seeds "
               "one after another" if not args.vmap_seeds else f"only seeds trained as one vmapped program (an "
               f"algorithm of the simulated loop on a pathwise System) are shared, and "
               f"{algorithm.name} on {env} does not train that way; run `pathwise train ... --seed K` for different "
               "seeds on each machine instead")
        raise ValueError(f"--num-processes {args.num_processes}: {why}.")
    return sequential


def _train_vmapped_seeds(algorithm, env: str, cfg: Any, args: TrainArgs, steps: int, trainer) -> list[dict[str, Any]]:
    """All seeds as one jitted, vmapped (sharded) program; then each seed is evaluated and saved like a normal run."""
    import math

    import jax
    import numpy as np

    from pathwise import seeds as pw_seeds, spec as spec_mod
    from pathwise.loops import simulated
    from pathwise.train import precision

    spec = spec_mod.from_env(env)
    per_iteration = cfg.updates_per_iteration * algorithm.hook("steps_per_update")(spec, cfg)
    iterations = max(1, math.ceil(steps / per_iteration))
    if iterations * per_iteration > steps:
        print(f"note: {algorithm.name} trains in whole iterations of {per_iteration:,} simulated steps "
              f"(updates_per_iteration={cfg.updates_per_iteration}); the budget of {steps:,} becomes "
              f"{iterations * per_iteration:,} simulated steps.", flush=True)
    devices = pw_seeds.shard_count(args.seeds, len(jax.devices()))  # what train_seeds shards over
    where = f"sharded over {devices} devices" if devices > 1 else "on one device"
    print(f"training {args.seeds} seeds of {algorithm.name} as one vmapped program, {where} ({iterations} "
          f"iterations each)", flush=True)
    t0 = time.perf_counter()
    with precision(cfg):
        carries, metrics = simulated.train_seeds(algorithm, spec, cfg, args.seeds, iterations, first_seed=args.seed)
        jax.block_until_ready(carries)
    elapsed = time.perf_counter() - t0
    with precision(cfg):  # in a group of processes: the seeds on this process's devices
        held = pw_seeds.local_seed_rows((carries, metrics))
    summaries = []
    for i, (carry, seed_metrics) in held.items():
        t = trainer(args.seed + i, True, {"vmapped_seeds": args.seeds, "seed_devices": pw_seeds.devices_of(carries)})
        with precision(cfg):  # a float64 run's arrays stay float64
            t.run.carry = carry
        seed_metrics = {k: np.asarray(v) for k, v in seed_metrics.items()}  # one transfer per seed
        t.history = [{"iteration": it + 1, "env_steps": (it + 1) * per_iteration,
                      **{k: float(v[it]) for k, v in seed_metrics.items()}} for it in range(iterations)]
        c = t.counters
        c.iterations, c.env_steps, c.train_time = iterations, t.run.env_steps, elapsed / args.seeds
        c.next_eval = c.env_steps
        t.evaluate_and_save()
        summaries.append(t.summary())
        _print_summary(summaries[-1], t.out)
    group = f", process {args.process_id} of {args.num_processes} saved {len(held)}" if args.num_processes > 1 else ""
    print(f"{args.seeds} seeds trained in {elapsed:.1f} s (one program, {where}{group})")
    return summaries


def _print_summary(summary: dict[str, Any], out: Any) -> None:
    line = (f"{summary['algorithm']} on {summary['env_id']} (seed {summary['seed']}): "
            f"{summary['env_steps']:,} {_step_unit(summary)}, final return {summary['final_return_mean']:.1f} "
            f"± {summary['final_return_std']:.1f}, best {summary['best_return_mean']:.1f}")
    if summary.get("learner", {}).get("evaluated_by"):
        line += f" (evaluated by its {summary['learner']['evaluated_by']})"
    if summary.get("steps_to_solve") is not None:
        line += f", solved ({summary['solved_threshold']:g}) at {summary['steps_to_solve']} steps"
        line += _held(summary)
    if summary.get("failed_episode_fraction") is not None:
        line += f", {summary['failed_episode_fraction']:.0%} of the final episodes below {summary['failure_below']:g}"
    if summary.get("ceiling") is not None:
        line += f", ceiling {summary['ceiling']:.1f}"
    print(line)
    print(f"run directory: {out}")


def _step_unit(summary: dict[str, Any]) -> str:
    """What a run's steps are: simulated (through a known System) or real environment steps."""
    simulated = "simulated" in str(summary.get("learner", {}).get("env_steps_are", ""))
    return "simulated steps" if simulated else "env steps"


def _held(summary: dict[str, Any]) -> str:
    """How the run kept the solve it reached (``summary.json``'s stability keys) in words."""
    if summary.get("solved_fraction_after_first") is None:
        return ""
    held = summary.get("stably_solved_at")
    words = f", solved from {held} steps on" if held is not None else ", not solved at the end"
    return words + (f" ({summary['solved_fraction_after_first']:.0%} of the evaluations since solved, worst "
                    f"{summary['worst_return_after_solved']:.1f})")


def cmd_evaluate(argv: list[str]) -> int:
    from pathwise.train import SEED_LIMIT

    if helptext.has_help(argv):
        print(_help(EvaluateArgs, "pathwise evaluate RUN_DIR [options]", positional=("run_dir",)), end="")
        return 0
    args = tyro.cli(EvaluateArgs, args=argv, prog="pathwise evaluate")
    if args.render:  # refuse a render target that cannot be written before evaluating
        _check_render(args.render)
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: evaluate at least one episode (e.g. --episodes 10).")
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed {args.seed}: the first episode's seed must be a whole number in [0, 2**31 - 10000); "
                         "e.g. --seed 0.")
    if args.per_start_csv and (Path(args.per_start_csv).suffix.lower() != ".csv" or Path(args.per_start_csv).is_dir()):
        what = "is a directory" if Path(args.per_start_csv).is_dir() else "does not end in .csv"
        raise ValueError(f"--per-start-csv {args.per_start_csv}: {what}; the report is written as CSV, so pass a file "
                         "name ending in .csv, e.g. --per-start-csv starts.csv.")
    plan = _planner_options(args)
    agent = _evaluated_agent(args)
    seed = args.seed if args.seed is not None else agent._trainer.eval_seed
    episodes = args.episodes if args.episodes is not None else agent._trainer.eval_episodes
    if episodes < 1:
        raise ValueError(f"--episodes {episodes}: evaluate at least one episode.")
    from pathwise.progress import Progress

    act, who, plan = agent.run.episode_actor(seed, plan), agent.run.name, agent.run.evaluated_planner(plan)
    if plan is not None:  # the planning agent (refused above for a run without a model to plan over)
        who = f"{agent.run.name} {act.describe()}"
    with Progress(episodes, desc=f"evaluate {agent.env_id}", unit="episodes") as bar:
        res = agent.run.evaluate(episodes, seed, progress=bar.update, planner=False if plan is None else plan)
    print(f"{who} on {agent.env_id}: mean return {res.mean:.2f} ± {res.std:.2f} over "
          f"{episodes} episodes from seed {seed} (mean length {float(sum(res.lengths)) / len(res.lengths):.0f})")
    _per_start_report(agent.env_id, res, seed, args.per_start_csv)
    if args.render:
        from pathwise.render import render_episode

        written = render_episode(act, agent.env_id, args.render, seed=seed)  # a fresh planner: episode 0's key
        print(f"rendered episode (seed {seed}) to {written}")
    return 0


def _evaluated_agent(args: EvaluateArgs) -> Any:
    """The agent ``pathwise evaluate`` plays: the run directory's checkpoint ``--checkpoint``, or an agent file."""
    from pathwise.agent import Agent, load

    path = Path(args.run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a run directory written by `pathwise train` (its --out) "
                                "or an agent .npz file saved with agent.save().")
    if path.is_dir():
        from pathwise.train import open_run

        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a pathwise run directory (no config.json): pass the --out directory "
                                    "of a `pathwise train` run or an agent .npz file saved with agent.save().")
        ckpt_file = path / "checkpoints" / f"{args.checkpoint}.npz"
        if not ckpt_file.exists():
            raise FileNotFoundError(f"{ckpt_file} does not exist; is {path} a finished `pathwise train` run?")
        agent = Agent(open_run(path, which=args.checkpoint, quiet=True))
    else:
        agent = load(path, quiet=True)
    return agent


def _planner_options(args: EvaluateArgs) -> dict[str, Any] | bool | None:
    """:meth:`pathwise.train.Run.evaluate`'s ``planner`` from ``--planner`` and ``--plan-*``: None as the run
    evaluates itself, False the policy, else the planner's options."""
    given = {"horizon": args.plan_horizon, "samples": args.plan_samples, "iterations": args.plan_iterations,
             "policy_fraction": args.plan_policy_fraction}
    if args.planner in ("auto", "none"):
        named = [f"--plan-{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if named:
            raise ValueError(f"{', '.join(named)} set the planner's options, but --planner is {args.planner}; add "
                             "--planner run (the run's own planner), mppi or cem, or leave them out.")
        return None if args.planner == "auto" else False
    return {"planner": None if args.planner == "run" else args.planner, **given}


def _check_render(render: str) -> None:
    """Refuse a --render file that cannot be written (wrong suffix, no ffmpeg for .mp4, unwritable)."""
    import shutil

    suffix = Path(render).suffix.lower()
    if suffix not in (".gif", ".mp4", ".png"):
        raise ValueError(f"--render {render}: use a .gif, .mp4 or .png file name.")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError(f"--render {render}: writing .mp4 needs ffmpeg on PATH; install it or render to "
                         ".gif (animation) or .png (a strip of frames) instead.")
    from pathwise.checkpoint import check_writable

    check_writable(render, "--render")


def _per_start_report(env_id: str, res: Any, seed: int, csv_path: str | None) -> None:
    """Each episode's start state beside its return, printed where the environment's start state is known (which
    starts fail shows a local optimum) and written to ``csv_path`` if given."""
    from pathwise import starts

    known = bool(registry.record(env_id).state_names)
    if not known and csv_path is None:
        return
    rows = starts.per_start(env_id, res.returns, res.lengths, seed)
    if known:
        print(starts.format_table(rows, env_id))
    if csv_path is not None:
        starts.write_csv(rows, csv_path)
        print(f"per-start report ({len(rows)} episodes) written to {csv_path}")


def cmd_export(argv: list[str]) -> int:
    from pathwise.cli_export import main as export_main

    return export_main(argv)


def cmd_list(argv: list[str]) -> int:
    from pathwise import presets, systems

    if argv and argv[0] in ("-h", "--help"):
        print(helptext.page("pathwise list", "List the algorithms (one line each: action spaces, what they need, "
                            "what they do), the differentiable systems, the environments with known rewards, and "
                            "the presets.", []), end="")
        return 0
    if argv:
        raise ValueError(f"list takes no arguments, got {' '.join(argv)!r}; run `pathwise list`.")
    print("algorithms:")
    for name in algorithms.available():
        info = algorithms.get(name).info
        kinds = "/".join(k for k, ok in (("continuous", info.continuous), ("discrete", info.discrete)) if ok)
        needs = ", needs a pathwise system" if info.loops == ("simulated",) else ""
        rates = ", ".join(config_mod.rate_options(algorithms.get(name).Config))
        print(f"  {name:14s} {kinds}{needs}. {info.summary} Step sizes: {rates}.")
    print("\nsystems (differentiable; also Gymnasium ids):")
    for env_id in systems.REGISTRY:
        print(f"  {env_id}")
    print("\nenvironments with known rewards (for model-based algorithms):")
    for env_id in registry.known_rewards():
        print(f"  {env_id}")
    print("\npresets:")
    for algo, envs in presets.available().items():
        print(f"  {algo:14s} {', '.join(envs)}")
    return 0


def cmd_solve(argv: list[str]) -> int:
    from pathwise.cli_solve import main as solve_main

    return solve_main(argv)


def cmd_tune(argv: list[str]) -> int:
    from pathwise.tune import cmd_tune as tune_main

    return tune_main(argv)


def cmd_estimators(argv: list[str]) -> int:
    from pathwise.cli_estimators import main as estimators_main

    return estimators_main(argv)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "solve": cmd_solve, "estimators": cmd_estimators,
            "list": cmd_list, "tune": cmd_tune, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input and environmental faults are one line on stderr (``--debug``: the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(top_help(), end="")
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
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        if debug:
            raise
        print(f"pathwise {cmd}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # clear message for known failure types, traceback otherwise
        message = _fault_message(exc)
        if message is None or debug:
            raise
        print(f"pathwise {cmd}: error: {message}", file=sys.stderr)
        return 1


def _fault_message(exc: Exception) -> str | None:
    """One line for a known fault (a damaged checkpoint, diverged training, an unwritable or full disk, a missing
    optional dependency); None for a bug, whose traceback is shown."""
    from pathwise.checkpoint import CheckpointError
    from pathwise.train import NonFiniteError

    if isinstance(exc, (CheckpointError, NonFiniteError)):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) and str(exc.filename) not in str(exc) else ""
        return (f"{exc}{where}" if type(exc).__name__ == "WriteError" else
                f"{exc.strerror or exc}{where}; check that the path exists and is writable and that the disk has free "
                "space (`--debug` shows the traceback).")
    optional = ("mujoco", "Box2D", "box2d", "brax", "shimmy", "dm_control", "pygame", "moviepy", "imageio", "wandb")
    if type(exc).__name__ == "DependencyNotInstalled" or (
            isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in optional):
        return (f"a missing optional dependency: {exc} Install the extra it names (e.g. pip install "
                "\"pathwise[mujoco]\" for MuJoCo environments, \"pathwise[dmc]\" for the DeepMind Control Suite).")
    return None


if __name__ == "__main__":
    sys.exit(main())
