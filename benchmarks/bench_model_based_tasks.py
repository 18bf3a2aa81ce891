"""Issue 17's task targets for the model-based learners, each (learner, task, seed) run with the shipped presets.

    python benchmarks/bench_model_based_tasks.py                      # every task's learners, seeds 0 1 2
    python benchmarks/bench_model_based_tasks.py --quick              # one seed, a fifth of each budget
    python benchmarks/bench_model_based_tasks.py --tasks InvertedPendulum-v5 --algos svg1 --seeds 2
    python benchmarks/bench_model_based_tasks.py --full-budget        # keep training after the target is reached
    python benchmarks/bench_model_based_tasks.py --from-json          # re-render the section only

Writes benchmarks/results/model_based_tasks.json, then benchmarks/sections/66_model_based_tasks.md (from
benchmarks/templates/66_model_based_tasks.md) and benchmarks/figures/model_based_tasks.png; the runs' own
directories go to benchmarks/out/model_based_tasks/. Each run's row is saved as soon as it finishes, under a lock;
rows of (task, learner, seed) already in the results file and not run again are kept. So seeds and learners can
run one process at a time, or in processes side by side that write to the same file::

    for s in 0 1 2; do
        python benchmarks/bench_model_based_tasks.py --tasks HalfCheetah-v5 --algos svg0 --seeds $s &
    done

Protocol: ``pathwise.train.train(algo, env, budget, seed=seed)`` with the learner's preset for the task
(``pathwise/presets/<algo>.toml``, the table of the env id), i.e. ``pathwise train ALGO --env ENV --seed S``; a
deterministic evaluation of ``eval_episodes`` Gymnasium episodes every ``eval_every`` real steps. A run stops at the
first evaluation whose mean return reaches the task's target (``--full-budget``: it runs the whole budget), so
"steps to target" is the real steps at that evaluation and "final" the last evaluation's mean return. A target is
met on a task when every seed of every learner reached it within the budget. Besides, each row records the real
steps after the first iteration whose (stochastic) training episodes reached the target on average (exploration
finding the goal, before the deterministic policy does).

The table ``TASKS`` holds every task of issue 17 (target, budget, evaluation, learners, the extra it needs); only
those with ``run=True`` are run by default (the others need presets first), e.g. ``--tasks
dm_control/cartpole-swingup-v0`` runs one once the learners have presets for it. A task may be measured in a second
setting, a variant with its own rows: ``--tasks dm_control/reacher-easy-v0:reward-learned`` runs the presets with
``reward_source="learned"`` where the plain id plans through the registered reward.

Hopper-v5 and HalfCheetah-v5 have a target relative to another library (``Task.baseline``): Stable-Baselines3
SAC with the RL Zoo's hyperparameters (``sb3-sac``, the ``bench`` extra) runs as one more learner on the same seeds
and the same evaluation episodes, every run trains its whole budget, and a pathwise learner meets the target when
its mean return at the budget is ``ratio`` times SAC's mean over the same seeds::

    python benchmarks/bench_model_based_tasks.py --tasks Hopper-v5 HalfCheetah-v5 --algos sb3-sac svgk
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Callable

from pathwise.envs.dmc import split_repeat
from common import (finished, machine, merge_runs, options, publish, results_path, save_figure,  # noqa: I001
                    saved_results, separated, update_saved, utc_now, written_for)  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
NAME, SECTION = "model_based_tasks", "66_model_based_tasks"
MODEL_BASED = ("mbrl", "svg-inf", "svgk", "svg1")
SEEDS_NEEDED = 3  # seeds on which one learner must reach a target that is asked of the best method
#: the date of the run the template's hand-written notes describe
NOTES_WRITTEN_FOR = "2026-12-08 02:25"


@dataclasses.dataclass(frozen=True)
class Task:
    """One target of issue 17: reach ``target`` (mean evaluation return) within ``budget`` real steps."""

    env: str
    target: float
    budget: int
    eval_every: int
    eval_episodes: int
    algos: tuple[str, ...]
    needs: str = ""  # a module the environment needs (its extra), "" for none
    run: bool = False  # run by default (the learners have presets for it)
    claim: str = ""  # the target as issue 17 words it
    every_learner: bool = False  # the target asks it of every learner (else of the best one, on every seed)
    variant: str = ""  # a second setting of the same env ("reward-learned"), with its own rows: key "ENV:VARIANT"
    overrides: tuple[tuple[str, Any], ...] = ()  # the options the variant sets over the learner's preset
    baseline: str = ""  # a learner of another library run side by side on the same seeds (a key of BASELINES)
    ratio: float = 0.0  # with a baseline: the target is ratio × the baseline's mean return at the budget

    @property
    def key(self) -> str:
        """The task's name in ``TASKS``, ``--tasks`` and the rows' ``task``: the env id, ``:variant`` appended."""
        return f"{self.env}:{self.variant}" if self.variant else self.env

    def saved(self) -> dict[str, Any]:
        """The task as the results file keeps it: its fields and its key."""
        return {**dataclasses.asdict(self), "key": self.key}


def variant(base: Task, name: str, also: str, **overrides: Any) -> Task:
    """``base`` with the options ``overrides`` set over the learner's preset, as its variant ``name`` (key
    ``ENV:NAME``, its own rows); ``also`` is appended to the base task's claim."""
    return dataclasses.replace(base, claim=f"{base.claim}, {also}", variant=name, overrides=tuple(overrides.items()))


_DMC = "dm_control"
#: reacher-easy draws its target per episode and a policy reaches a target and holds it or never does, so 5 fixed
#: episodes judge 5 targets (a standard error of ~200): its settings are evaluated on 30. ``_REACHER5`` is the former
#: 5-episode evaluation, kept by the variant whose rows were measured with it and not run again (``:rollouts256``).
_REACHER = Task("dm_control/reacher-easy-v0", 937.0, 20_000, 2000, 30, MODEL_BASED, _DMC, False,
                "≥ 937 (TD-MPC2 at 100k) within 20,000 control steps")
_REACHER5 = dataclasses.replace(_REACHER, eval_episodes=5)
_CHEETAH2 = Task("dm_control/cheetah-run-repeat2-v0", 519.0, 50_000, 5_000, 5, ("svg0",), _DMC, False,
                 "≥ 519 (TD-MPC2 at 100k) within 100,000 control steps, acting every 2nd")
#: reacher's wrist for ``joint_limits``: observation entries 1 (angle) and 5 (velocity), action 1, range ±160°
#: (dm_control's suite/reacher.xml)
REACHER_WRIST = (1.0, 5.0, 1.0, -2.7925, 2.7925)
_MOUNTAINCAR = Task("MountainCarContinuous-v0", 90.0, 10_000, 1000, 5, ("mbrl", "svgk"), "", True,
                    "reaches the goal (return ≥ 90) within 10,000 steps with the exploration bonus")
#: svgk's MountainCarContinuous-v0 preset less what its exploration rests on (the measured variants' common part)
_NO_BONUS = (("model_ensemble", 1), ("model_probabilistic", False), ("exploration_bonus", 0.0))
_INVERTED = Task("InvertedPendulum-v5", 1000.0, 5000, 250, 5, (*MODEL_BASED, "pets"), "mujoco", True,
                 "every model-based learner reaches 1,000 (a whole balanced episode) on 3/3 seeds", every_learner=True)
#: pets's imagined reward in the InvertedPendulum-v5 variants: the task's reward times 1 − x² (the cart's position)
_CENTRED = (("reward_source", "pathwise.rewards:inverted_pendulum_centred_reward"),)
TASKS = {t.key: t for t in (
    _INVERTED,
    dataclasses.replace(_INVERTED, algos=("pets",), variant="centred", run=False,
                        overrides=_CENTRED,
                        claim=f"{_INVERTED.claim}, pets planning with the task's reward times 1 − x² (x the cart's "
                              "position on its rail of ±1; `rewards.inverted_pendulum_centred_reward` as its "
                              "imagined reward, the evaluations scoring the task's own)"),
    dataclasses.replace(_INVERTED, algos=("pets",), variant="centred-cem600", run=False,
                        overrides=(*_CENTRED, ("plan_samples", 600), ("plan_elites", 60), ("plan_iterations", 8)),
                        claim=f"{_INVERTED.claim}, pets planning with `:centred`'s objective and a CEM of 600 "
                              "sequences refit 8 times to their 60 best (the preset's: 200, 5 and 20)"),
    _MOUNTAINCAR,
    *(dataclasses.replace(_MOUNTAINCAR, algos=("svgk",), variant=name, overrides=(*_NO_BONUS, *extra),
                          claim=f"reaches the goal (return ≥ 90) within 10,000 steps without the ensemble or the "
                                f"exploration bonus (one deterministic model), the exploration noise {noise}")
      for name, noise, extra in (("nobonus", "white", ()), ("nobonus-pink", "pink (`noise_color` 1)",
                                                            (("noise_color", 1.0),)))),
    *(dataclasses.replace(_MOUNTAINCAR, algos=("svg0",), variant=name, overrides=extra,
                          claim=f"reaches the goal (return ≥ 90) within 10,000 steps by svg0 (SAC's losses, no model, "
                                f"no bonus; the library's defaults), the exploration noise {noise}")
      for name, noise, extra in (("svg0", "white", ()), ("svg0-pink", "pink (`noise_color` 1)",
                                                         (("noise_color", 1.0),)))),
    Task("dm_control/cartpole-swingup-v0", 839.0, 20_000, 2000, 5, MODEL_BASED, _DMC, False,
         "≥ 839 (TD-MPC2 at 100k) within 20,000 control steps"),
    Task("dm_control/pendulum-swingup-v0", 724.0, 20_000, 2000, 5, MODEL_BASED, _DMC, False,
         "≥ 724 (TD-MPC2 at 100k) within 20,000 control steps"),
    Task("dm_control/pendulum-swingup-repeat4-v0", 724.0, 5_000, 500, 5, (*MODEL_BASED, "pets"), _DMC, False,
         "≥ 724 (TD-MPC2 at 100k) within 20,000 control steps, acting every 4th"),
    dataclasses.replace(_REACHER, algos=(*MODEL_BASED, "svg0"),
                        claim=f"{_REACHER.claim}, the reward known (`rewards.reacher_easy_reward`)"),
    variant(_REACHER, "reward-learned", "the reward learned (as TD-MPC2 learns it)", reward_source="learned"),
    variant(_REACHER5, "rollouts256", "the reward known, 256 imagined rollouts per update, without the σ floor",
            n_envs=256, log_std_min=-5.0),
    variant(_REACHER, "ensemble5", "the reward known, a probabilistic ensemble of 5 with one member per imagined "
            "rollout", model_ensemble=5, model_probabilistic=True, model_sampling="ts-inf"),
    variant(_REACHER, "decay", "the reward known, the policy's step decayed to 0.3 of itself over 15,000 updates",
            actor_lr_decay_steps=15_000, actor_lr_final_fraction=0.3),
    variant(_REACHER, "plan", "the reward known, real episodes acted by MPPI over the model, seeded by the policy "
            "and closed by the value (TD-MPC's acting)", act_planner="mppi", act_plan_horizon=16),
    variant(_REACHER, "model3x200", "the reward known, a dynamics model of three hidden layers of 200",
            model_hidden=(200, 200, 200)),
    variant(_REACHER, "updates1500", "the reward known, 1,500 policy updates per 1,000-step episode instead of 750",
            updates_per_episode=1500),
    variant(_REACHER, "goalnoise", "the reward known, the imagined rollouts' targets moved by N(0, 0.05²) per axis "
            "(`start_noise` on `to_target`)", start_noise=(0.0, 0.0, 0.05, 0.05, 0.0, 0.0)),
    variant(_REACHER, "goalnoise-model3x200", "the reward known, the targets moved in imagination as in `:goalnoise`, "
            "a dynamics model of three hidden layers of 200", start_noise=(0.0, 0.0, 0.05, 0.05, 0.0, 0.0),
            model_hidden=(200, 200, 200)),
    variant(_REACHER, "pessimism", "the reward known, `:ensemble5`'s ensemble with the imagined reward lowered by 10 "
            "× the members' disagreement (`uncertainty_penalty`)", model_ensemble=5, model_probabilistic=True,
            model_sampling="ts-inf", uncertainty_penalty=10.0),
    variant(_REACHER, "pessimism-updates1500", "the reward known, `:pessimism`'s penalised ensemble with "
            "`:updates1500`'s 1,500 policy updates per 1,000-step episode", model_ensemble=5,
            model_probabilistic=True, model_sampling="ts-inf", uncertainty_penalty=10.0, updates_per_episode=1500),
    variant(_REACHER, "pessimism3", "the reward known, `:pessimism` with the imagined reward lowered by 3 (not 10) "
            "× the members' disagreement", model_ensemble=5, model_probabilistic=True, model_sampling="ts-inf",
            uncertainty_penalty=3.0),
    variant(_REACHER, "pessimism-model3x200", "the reward known, `:pessimism`'s penalised ensemble with members of "
            "`:model3x200`'s three hidden layers of 200", model_ensemble=5, model_probabilistic=True,
            model_sampling="ts-inf", uncertainty_penalty=10.0, model_hidden=(200, 200, 200)),
    variant(_REACHER, "optimism", "the reward known, `:ensemble5`'s ensemble with the imagined reward raised by 10 × "
            "the members' disagreement (`exploration_bonus`)", model_ensemble=5, model_probabilistic=True,
            model_sampling="ts-inf", exploration_bonus=10.0),
    variant(_REACHER, "mirror", "the reward known, the model fitted on D and its mirror image across the x axis and "
            "half of the imagined rollouts started from mirrored states (`mirror`)",
            mirror=(-1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0)),
    variant(_REACHER, "pink", "the reward known, the real episodes' exploration noise pink (power 1/f over each "
            "episode, `noise_color` 1), the random episode's actions too", noise_color=1.0),
    variant(_REACHER, "red", "the reward known, the real episodes' exploration noise red (power 1/f² over each "
            "episode, `noise_color` 2), the random episode's actions too", noise_color=2.0),
    variant(_REACHER, "limits", "the reward known, the wrist's limits (±160°) kept by the learned model "
            "(`joint_limits`)", joint_limits=REACHER_WRIST),
    variant(_REACHER, "realvalue", "the reward known, V fitted on the recent real episodes' TD(λ) targets as well "
            "as on the imagined ones (`real_value`)", real_value=True),
    variant(_REACHER, "pessimism-realvalue", "the reward known, `:pessimism`'s penalised ensemble with `:realvalue`'s "
            "V", model_ensemble=5, model_probabilistic=True, model_sampling="ts-inf", uncertainty_penalty=10.0,
            real_value=True),
    variant(_REACHER, "realvalue-limits", "the reward known, `:realvalue`'s V with `:limits`'s wrist limits kept by "
            "the model", real_value=True, joint_limits=REACHER_WRIST),
    Task("dm_control/reacher-easy-repeat4-v0", 937.0, 5_000, 500, 5, MODEL_BASED, _DMC, False,
         "≥ 937 (TD-MPC2 at 100k) within 20,000 control steps, acting every 4th"),
    Task("dm_control/cheetah-run-v0", 519.0, 100_000, 10_000, 5, (*MODEL_BASED, "svg0"), _DMC, False,
         "≥ 519 (TD-MPC2 at 100k) within 100,000 control steps"),
    dataclasses.replace(_CHEETAH2, claim=f"{_CHEETAH2.claim} (TD-MPC2's repeat)"),
    variant(_CHEETAH2, "updates10", "the updates and branched rollouts per control step of the preset without a "
            "repeat", updates_per_step=10.0, model_rollouts_per_step=100.0),
    *(Task(env, 0.0, 50_000, 5000, 10, ("sb3-sac", *MODEL_BASED, *extra), "mujoco", False,
           "the return at 50,000 steps ≥ 1.5 × Stable-Baselines3 SAC's (RL Zoo hyperparameters), on the same seeds",
           baseline="sb3-sac", ratio=1.5) for env, extra in (("Hopper-v5", ()), ("HalfCheetah-v5", ("svg0",)))),
)}
#: Learners of other libraries that a task runs side by side with pathwise's (``Task.baseline``); the bench extra.
BASELINES = ("sb3-sac",)


def sb3_sac(env_id: str, seed: int) -> Any:
    """Stable-Baselines3 SAC with the RL Zoo's hyperparameters for the MuJoCo tasks (rl-baselines3-zoo,
    ``hyperparams/sac.yml``: ``HalfCheetah-v3: &mujoco-defaults``, which ``Hopper-v3`` takes as it is): SB3's
    defaults (two 256-unit layers, Adam 3e-4, batch 256, γ 0.99, τ 0.005, one gradient step per step, the entropy
    weight learned) with ``learning_starts`` 10,000 uniformly random steps. One torch thread."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(1)
    return SAC("MlpPolicy", gym.make(env_id), learning_starts=10_000, seed=seed, verbose=0, device="cpu")


def run_baseline(task: Task, algo: str, seed: int, budget: int) -> dict:
    """``algo`` of :data:`BASELINES` on ``task`` for ``budget`` steps, evaluated as pathwise's runs are: every
    ``eval_every`` steps, ``eval_episodes`` deterministic episodes ``reset(seed=EVALUATION_SEED + i)``; training
    wall-clock without the evaluations."""
    from stable_baselines3.common.callbacks import BaseCallback

    from pathwise.ceilings import EVALUATION_SEED
    from pathwise.envs import evaluate

    model, evals = sb3_sac(task.env, seed), []
    clock = {"train": 0.0, "since": time.perf_counter()}

    class Evaluations(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % task.eval_every == 0:
                clock["train"] += time.perf_counter() - clock["since"]
                res = evaluate(lambda o: model.predict(o, deterministic=True)[0], task.env,
                               episodes=task.eval_episodes, seed=EVALUATION_SEED)
                evals.append({"step": self.num_timesteps, "return": float(res.mean)})
                clock["since"] = time.perf_counter()
            return True

    model.learn(total_timesteps=budget, callback=Evaluations())
    return {"evals": evals, "train_s": clock["train"], "env_steps": int(model.num_timesteps),
            "best": max((e["return"] for e in evals), default=None)}


def run_one(task: Task, algo: str, seed: int, budget: int, full: bool, out: Path | None) -> dict:
    """One preset run of ``algo`` on ``task``: its evaluation curve, steps to the target, final return, wall-clock."""
    from pathwise.train import train

    run_dir = Path(out or HERE) / "out" / NAME / task.key.replace("/", "_").replace(":", "_") / f"{algo}_seed{seed}"
    started = utc_now()  # each row says when it ran: the file keeps rows of many runs of the script
    start, episodes = time.perf_counter(), []
    full = full or bool(task.baseline)  # a target relative to the baseline is judged at the budget

    def stop_at_target(info: dict) -> bool:
        episodes.append((info["env_steps"], info.get("episode_return", -float("inf"))))
        return full or info.get("eval_return_mean", -float("inf")) < task.target

    if algo in BASELINES:
        ran = run_baseline(task, algo, seed, budget)
    else:
        trainer, s = train(algo, task.env, budget, seed=seed, overrides=dict(task.overrides) or None, out=run_dir,
                           eval_every=task.eval_every, eval_episodes=task.eval_episodes, quiet=True,
                           overwrite=True, callback=stop_at_target)
        ran = {"evals": [{"step": e["env_steps"], "return": e["eval_return_mean"]} for e in trainer.evals],
               "train_s": s["train_time_s"], "env_steps": s["env_steps"], "best": s["best_return_mean"]}
    evals, absolute = ran["evals"], not task.baseline
    reached = next((e["step"] for e in evals if e["return"] >= task.target), None) if absolute else None
    explored = next((step for step, ret in episodes if ret >= task.target), None) if absolute else None
    row = {"task": task.key, "algo": algo, "seed": seed, "budget": budget, "reached_at": reached,
           "episode_reached_at": explored, "final": evals[-1]["return"] if evals else None, "best": ran["best"],
           "env_steps": ran["env_steps"], "train_s": ran["train_s"], "wall_s": time.perf_counter() - start,
           "started": started, "xla_flags": os.environ.get("XLA_FLAGS") or None, "eval_episodes": task.eval_episodes,
           "evals": evals}
    goal = f"target {task.target:g} reached at {reached}" if absolute else f"return at {budget} steps"
    print(f"{task.key} {algo} seed {seed}: {goal}, final {row['final']}, {row['wall_s']:.0f} s", flush=True)
    return row


def chosen(args: argparse.Namespace) -> list[tuple[Task, str]]:
    """The (task, learner) pairs to run: ``--tasks`` (default: those with ``run``), ``--algos`` (default: the
    task's learners); ValueError for an unknown one, SystemExit where a task's extra is missing."""
    names = args.tasks or [t.key for t in TASKS.values() if t.run]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: choose from {sorted(TASKS)} (or add one to TASKS)")
    pairs = []
    for task in (TASKS[n] for n in names):
        if task.needs and importlib.util.find_spec(task.needs) is None:
            raise SystemExit(f"{task.key} needs the {task.needs} module (its extra, see pyproject.toml)")
        pairs += [(task, a) for a in (args.algos or task.algos) if a in task.algos]
    if any(a in BASELINES for _, a in pairs) and importlib.util.find_spec("stable_baselines3") is None:
        raise SystemExit("the sb3-sac baseline needs stable-baselines3 and torch: pip install -e '.[bench]'")
    return pairs


def stored(facts: dict, args: argparse.Namespace, new: list[dict]) -> Callable[[dict | None], dict]:
    """How finished runs change the saved results: their rows merged in (replacing those of the same task, learner
    and seed), the facts of this process on top."""
    key = lambda r: (r["task"], r["algo"], r["seed"])  # noqa: E731

    def change(saved: dict | None) -> dict:
        runs = sorted(merge_runs((saved or {}).get("runs", []), new, key=key), key=key)
        return {"machine": finished(facts), "quick": args.quick, "full_budget": args.full_budget, "runs": runs,
                "tasks": [t.saved() for t in TASKS.values()]}

    return change


def measure(args: argparse.Namespace) -> dict:
    """Each chosen run, its row saved as soon as it finishes (under a lock: processes running other seeds or
    tasks may write to the same results file at the same time), then the figure."""
    pairs = chosen(args)
    facts = machine("mujoco", *(("stable-baselines3", "torch") if any(a in BASELINES for _, a in pairs) else ()))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    path = results_path(NAME, args.results)
    results = saved_results(NAME, path) or stored(facts, args, [])(None)  # written only once a run finishes
    for task, algo in pairs:
        for seed in seeds:
            row = run_one(task, algo, seed, task.budget // 5 if args.quick else task.budget, args.full_budget,
                          args.out)
            results = update_saved(path, stored(facts, args, [row]))
    plot(results, args.out)
    return results


def plot(results: dict, out: Path | None) -> None:
    """One panel per task measured: every (learner, seed) evaluation curve and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in results["tasks"] if any(r["task"] == _key(t) for r in results["runs"])]
    cols = min(max(len(tasks), 1), 3)
    rows = -(-max(len(tasks), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    colors = {a: f"C{i}" for i, a in enumerate(dict.fromkeys(a for t in TASKS.values() for a in t.algos))}
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        repeat = split_repeat(task["env"])[1]  # decisions -> control steps, so every panel counts the same
        runs = [r for r in results["runs"] if r["task"] == _key(task)]
        target = relative(task, runs)["target"] if task.get("baseline") else task["target"]
        for r in runs:
            label = r["algo"] if r["seed"] == min(x["seed"] for x in results["runs"] if x["algo"] == r["algo"]
                                                  and x["task"] == r["task"]) else None
            ax.plot([e["step"] * repeat for e in r["evals"]], [e["return"] for e in r["evals"]], "o-", ms=3,
                    alpha=0.8, color=colors.get(r["algo"], "k"), label=label)
        if target is not None:
            ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.0f}")
        ax.set(xlabel="control steps" if repeat > 1 else "real environment steps",
               ylabel="evaluation return", title=_key(task))
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "model_based_tasks.png", out)


def _key(task: dict) -> str:
    """A saved task's key (results written before variants: its env id)."""
    return task.get("key", task["env"])


def view(results: dict) -> dict:
    """Per task: its rows and the verdict. Where the target asks it of every learner (``every_learner``), it is
    met when every row reached it within the budget and each of the task's learners ran at least
    :data:`SEEDS_NEEDED` seeds; else when one learner did on every one of its seeds, at least
    :data:`SEEDS_NEEDED` of them (issue 17: "the best pathwise method per task named", 3 seeds each)."""
    tasks = []
    for task in results["tasks"]:
        key = _key(task)
        rows = [{"started": None, "xla_flags": None, **r} for r in results["runs"] if r["task"] == key]  # older rows
        # a run ends with the episode that crosses its budget: an evaluation after it is past the budget
        past = {(r["algo"], r["seed"]): r["reached_at"] for r in rows
                if r["reached_at"] is not None and r["reached_at"] > r.get("budget", task["budget"])}
        rows = [{**r, "reached_at": None} if (r["algo"], r["seed"]) in past else r for r in rows]
        if not rows:
            continue
        other = [f"{r['algo']} seed {r['seed']}" for r in rows if r.get("eval_episodes", task["eval_episodes"])
                 != task["eval_episodes"]]  # rows written before the field were measured with their task's count
        if other:
            raise ValueError(f"{key}: rows {other} were evaluated on another number of episodes than the task's "
                             f"{task['eval_episodes']}; run them again or remove them from the results file")
        if task.get("baseline"):
            tasks.append({**task, "key": key, "xla": xla_groups(rows), **relative(task, rows)})
            continue
        reached = [r for r in rows if r["reached_at"] is not None]
        repeat = split_repeat(task["env"])[1]  # a -repeatN-v0 id's budget counts decisions of N control steps
        seeds = {a: [r["reached_at"] is not None for r in rows if r["algo"] == a] for a in {r["algo"] for r in rows}}
        met_by = sorted(a for a, ok in seeds.items() if len(ok) >= SEEDS_NEEDED and all(ok))
        # results written before the field: the table's verdict for the task (every row, for a task not in it)
        every = task.get("every_learner", TASKS[key].every_learner if key in TASKS else True)
        missed = [f"{r['algo']} seed {r['seed']} (best {r['best']:.1f}"
                  + (f", reached at {past[r['algo'], r['seed']]:,} steps, past the budget)" if (r["algo"], r["seed"])
                     in past else ")") for r in rows if r["reached_at"] is None]
        # a target asked of every learner is not met while one of the task's learners lacks its seeds
        short = [f"{a} ({len(seeds.get(a, []))} run{'' if len(seeds.get(a, [])) == 1 else 's'})"
                 for a in task["algos"] if every and len(seeds.get(a, [])) < SEEDS_NEEDED]
        tasks.append({**task, "key": key, "relative": False, "xla": xla_groups(rows),
                      "rows": [{"episode_reached_at": None, **r, "reached": r["reached_at"] is not None,
                                "evals": separated(r["evals"])} for r in rows],
                      "action_repeat": repeat, "repeated": repeat > 1, "control_budget": task["budget"] * repeat,
                      "met": not missed and not short if every else bool(met_by), "best_of": not every,
                      "any_short": bool(short), "short": separated(short), "seeds_needed": SEEDS_NEEDED,
                      "met_by": separated(met_by), "any_missed": bool(missed), "n_rows": len(rows),
                      "n_reached": len(reached),
                      "missed": separated(missed), "learners": separated(sorted({r["algo"] for r in rows}))})
    not_run = [_key(t) for t in results["tasks"] if not any(r["task"] == _key(t) for r in results["runs"])]
    return {**results, "measured": tasks, "not_run": separated(not_run), "any_not_run": bool(not_run),
            "any_not_run_plain": bool(not_run) and all(":" not in key for key in not_run),
            "notes": written_for(results, NOTES_WRITTEN_FOR)}


def xla_groups(rows: list[dict]) -> list[dict]:
    """The rows that ran with ``XLA_FLAGS`` set, grouped by the flags (a row repeats only under the same XLA
    threading): ``[{"flags": ..., "runs": [svg0 seeds 0, 1, 2, ...]}]`` (``separated``), empty where none set them."""
    groups: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        if r["xla_flags"]:
            groups.setdefault(r["xla_flags"], {}).setdefault(r["algo"], []).append(r["seed"])
    return [{"flags": flags, "runs": separated([f"{algo} seed{'s' if len(seeds) > 1 else ''} "
                                                + ", ".join(str(s) for s in sorted(seeds))
                                                for algo, seeds in sorted(by_algo.items())], "; ")}
            for flags, by_algo in groups.items()]


def relative(task: dict, rows: list[dict]) -> dict:
    """A target relative to a baseline run on the same seeds (``Task.baseline``): ``ratio`` × the baseline's mean
    return at the budget. A learner meets it when its mean over the seeds the baseline ran, at least
    :data:`SEEDS_NEEDED` of them, reaches it; each row shows its return over the baseline's on its seed."""
    base = {r["seed"]: r["final"] for r in rows if r["algo"] == task["baseline"]}
    base_mean = sum(base.values()) / len(base) if base else None
    target = task["ratio"] * base_mean if base else None
    learners = []
    for algo in sorted({r["algo"] for r in rows} - {task["baseline"]}):
        finals = [r["final"] for r in rows if r["algo"] == algo and r["seed"] in base]
        mean = sum(finals) / len(finals) if finals else None
        learners.append({"algo": algo, "mean": mean, "n_seeds": len(finals),
                         "vs": mean / base_mean if mean is not None and base_mean else None,
                         "met": target is not None and len(finals) >= SEEDS_NEEDED and mean >= target})
    shown = [{**r, "baseline": r["algo"] == task["baseline"],
              "vs_baseline": r["final"] / base[r["seed"]] if base.get(r["seed"]) else None,
              "evals": separated(r["evals"])} for r in rows]
    met_by = [x["algo"] for x in learners if x["met"]]
    return {"relative": True, "rows": shown, "target": target, "baseline_mean": base_mean,
            "baseline_seeds": len(base), "learner_means": separated(learners), "any_learner": bool(learners),
            "met": bool(met_by), "met_by": separated(met_by)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=None, help=f"keys of TASKS: env ids, ENV:VARIANT for a "
                        f"variant (default: those run today: {', '.join(t.key for t in TASKS.values() if t.run)})")
    parser.add_argument("--algos", nargs="+", default=None, help="learners (default: each task's own)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: 0 1 2; --quick: 0)")
    parser.add_argument("--quick", action="store_true", help="seed 0 only, a fifth of each budget")
    parser.add_argument("--full-budget", action="store_true", help="train for the whole budget even after the "
                        "target is reached (default: stop at the first evaluation that reaches it)")
    publish(options(parser, NAME).parse_args(), NAME, SECTION, measure, view, written=True)


if __name__ == "__main__":
    main()
