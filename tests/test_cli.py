"""The ``pathwise`` command line, end to end with tiny budgets.

Every registered algorithm trains through ``pathwise train`` (in-process, via
``pathwise.cli.main``; the tiny configurations are tests/cli_tiny.py's), then
``evaluate`` (with --render png/gif), ``list``, ``estimators``, ``--resume``,
``--seeds`` of an algorithm that is not vmapped, every ``--help``, and each bad
input's message. The other run options (preset precedence, vmapped ``--seeds``,
the non-finite stop, SIGKILL and resume) are tests/test_cli_runs.py's.
"""

import contextlib
import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli_tiny import TINY, train_argv
from pathwise import algorithms, presets, registry
from pathwise import checkpoint as ckpt
from pathwise import config as cfg_mod
from pathwise.cli import main
from pathwise.config import parse_set
from runfiles import rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run directories of the per-algorithm CLI runs, trained on first use (shared by later tests)."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def get(algo: str) -> Path:
        if algo not in done:
            out = root / algo
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert main(train_argv(algo, out)) == 0
            (root / f"{algo}.stdout").write_text(printed.getvalue())
            done[algo] = out
        return done[algo]

    return get


def test_every_registered_algorithm_has_a_tiny_cli_config():
    assert set(TINY) == set(algorithms.ALGORITHMS), "add a tiny configuration for each new algorithm"


@pytest.mark.parametrize("algo", list(algorithms.ALGORITHMS))
def test_train_every_algorithm(algo, runs, capsys):
    out = runs(algo)
    printed = (out.parent / f"{algo}.stdout").read_text()
    env, steps, sets = TINY[algo]
    assert f"{algo} on {env} (seed 1)" in printed and "final return" in printed and str(out) in printed
    for name in ("config.json", "metrics.csv", "eval.csv", "summary.json", "learning_curve.png",
                 "checkpoints/last.npz", "checkpoints/best.npz"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == algo and summary["env_id"] == env and summary["seed"] == 1
    assert summary["env_steps"] >= steps and np.isfinite(summary["final_return_mean"])
    simulated = "simulated" in summary["learner"]["env_steps_are"]
    said = f"note: {algo} took {summary['env_steps']:,} env steps for a budget of {steps:,}: an iteration is "
    assert (said in printed) == (summary["env_steps"] > steps and not simulated), printed  # whole episodes
    info = json.loads((out / "config.json").read_text())
    assert info["steps"] == steps and info["eval_episodes"] == 1
    config = info["config"]

    expected = cfg_mod.from_dict(algorithms.get(algo).Config, parse_set(sets))
    for key in parse_set(sets):  # every --set value reached the algorithm's config
        assert config[key] == json.loads(json.dumps(getattr(expected, key))), key
    meta, arrays = ckpt.read(out / "checkpoints" / "last.npz")
    assert meta["counters"]["env_steps"] == summary["env_steps"]
    assert all(name.startswith(("algo/", "key", "env_steps", "buffer/", "model/", "recent/", "episodes"))
               for name in arrays), sorted(arrays)  # leaves named by key path
    assert all(np.all(np.isfinite(x)) for x in arrays.values() if np.issubdtype(x.dtype, np.floating))


def test_evaluate_with_episodes_and_render(runs, tmp_path, capsys):
    pendulum = runs("ddpg")
    png = tmp_path / "frames.png"
    assert main(["evaluate", str(pendulum), "--episodes", "2", "--render", str(png)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ddpg on Pendulum-v1: mean return -?\d+\.\d+ ± \d+\.\d+ over 2 episodes from seed 10000 "
                     r"\(mean length 200\)", out), out  # the run's own evaluation episodes (every run: 10000 + i)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"rendered episode (seed 10000) to {png}" in out
    # with no options it repeats the run's own last evaluation: same seeds, same number of episodes
    assert main(["evaluate", str(pendulum), "--checkpoint", "last"]) == 0
    last = rows(pendulum / "eval.csv")[-1]
    mean = float(re.search(r"mean return (-?\d+\.\d+)", capsys.readouterr().out).group(1))
    assert mean == round(float(last["eval_return_mean"]), 2)
    cartpole = runs("reinforce")
    gif = tmp_path / "episode.gif"
    assert main(["evaluate", str(cartpole), "--episodes", "1", "--checkpoint", "last", "--render", str(gif)]) == 0
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    # an agent file saved from a run evaluates too, with the same numbers as its run directory
    import pathwise as pw

    agent_file = pw.load(cartpole, quiet=True).save(tmp_path / "agent.npz")
    capsys.readouterr()
    assert main(["evaluate", str(cartpole), "--checkpoint", "last", "--episodes", "2"]) == 0
    assert main(["evaluate", str(agent_file), "--episodes", "2"]) == 0
    a, b = capsys.readouterr().out.strip().splitlines()
    assert a == b


def test_evaluate_by_the_planning_agent(runs, capsys):
    """``--planner``: a model-based run's planning agent plays the evaluation episodes (in lockstep), with the
    ``--plan-*`` sizes; the numbers are the Python facade's; runs without a model, PETS and stray options are
    refused with what to do."""
    mbrl = runs("mbrl")
    plan = ["--planner", "mppi", "--plan-horizon", "4", "--plan-samples", "8", "--plan-iterations", "1"]
    assert main(["evaluate", str(mbrl), "--episodes", "2", "--checkpoint", "last", *plan]) == 0
    out = capsys.readouterr().out
    found = re.search(r"mbrl planning by mppi \(horizon 4, 8 samples, 1 refits per step\) on Pendulum-v1: mean return "
                      r"(-?\d+\.\d+) ± \d+\.\d+ over 2 episodes from seed 10000 \(mean length 200\)", out)
    assert found, out
    import pathwise as pw

    agent = pw.load(mbrl, quiet=True)  # its last checkpoint
    facade = agent.evaluate(2, planner="mppi", horizon=4, samples=8, iterations=1)["eval_return_mean"]
    assert float(found.group(1)) == round(facade, 2)
    for algo, message in (("svgk", "learns no model to plan over"), ("pets", "acts by planning already")):
        assert main(["evaluate", str(runs(algo)), "--episodes", "1", "--planner", "mppi"]) == 2
        assert message in capsys.readouterr().err
    assert main(["evaluate", str(mbrl), "--plan-horizon", "4"]) == 2
    assert "--plan-horizon set the planner's options, but --planner is auto" in capsys.readouterr().err
    assert main(["evaluate", str(mbrl), "--planner", "mppi", "--plan-horizon", "0"]) == 2
    assert "act_plan_horizon=0 must be > 0" in capsys.readouterr().err


def test_a_run_evaluated_by_its_planning_agent(tmp_path, capsys):
    """``--set eval_planner=true``: the run's evaluations play its planning agent, it says so, and ``pathwise evaluate``
    repeats that evaluation by default; ``--planner none`` plays the policy."""
    out = tmp_path / "mbrl"
    assert main([*train_argv("mbrl", out), "eval_planner=true"]) == 0
    printed = capsys.readouterr().out
    assert "(evaluated by its planning agent: mppi, horizon 5)" in printed, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learner"]["evaluated_by"] == "planning agent: mppi, horizon 5"
    recorded = round(float(rows(out / "eval.csv")[-1]["eval_return_mean"]), 2)
    means = []
    for extra in ([], ["--planner", "none"]):
        assert main(["evaluate", str(out), "--checkpoint", "last", *extra]) == 0
        said = capsys.readouterr().out
        means.append(float(re.search(r"mean return (-?\d+\.\d+)", said).group(1)))
        assert ("planning by mppi" in said) == (not extra), said
    assert means[0] == recorded and means[1] != recorded


def test_evaluate_render_errors(runs, tmp_path, capsys):
    run = runs("reinforce")
    assert main(["evaluate", str(run), "--episodes", "1", "--render", str(tmp_path / "x.avi")]) == 2
    assert "use a .gif, .mp4 or .png file name" in capsys.readouterr().err and not (tmp_path / "x.avi").exists()
    import shutil

    if shutil.which("ffmpeg") is None:
        assert main(["evaluate", str(run), "--render", str(tmp_path / "x.mp4")]) == 2
        assert "writing .mp4 needs ffmpeg on PATH" in capsys.readouterr().err


def test_evaluate_reports_each_start_state_and_writes_it_as_csv(runs, tmp_path, capsys):
    from pathwise.envs import reset_states

    pendulum, table = runs("ddpg"), tmp_path / "starts.csv"
    assert main(["evaluate", str(pendulum), "--episodes", "3", "--per-start-csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert "per start state (Pendulum-v1, return below -400 fails):" in out
    assert re.search(r"seed +theta0 +theta_dot0 +return", out) and f"(3 episodes) written to {table}" in out
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["10000", "10001", "10002"]  # the run's own evaluation episodes
    assert np.allclose([[float(r["theta0"]), float(r["theta_dot0"])] for r in rows],
                       reset_states("Pendulum-v1", 3, 10_000))
    mean = float(re.search(r"mean return (-?\d+\.\d+)", out).group(1))
    assert round(float(np.mean([float(r["return"]) for r in rows])), 2) == mean
    failed = [r["failed"] == "True" for r in rows]
    assert failed == [float(r["return"]) < -400 for r in rows]
    assert (f"failing starts: {sum(failed)} of 3 episodes below -400" if any(failed) else
            "failing starts: none of 3 episodes below -400") in out
    # a name that is not a .csv file is refused before anything runs
    assert main(["evaluate", str(pendulum), "--per-start-csv", str(tmp_path / "starts.txt")]) == 2
    assert "starts.txt: does not end in .csv; the report is written as CSV" in capsys.readouterr().err
    # no known start state (CartPole): no table, but the CSV has each episode's seed, return and failure
    cartpole = runs("reinforce")
    assert main(["evaluate", str(cartpole), "--episodes", "2", "--per-start-csv", str(tmp_path / "cp.csv")]) == 0
    assert "per start state" not in capsys.readouterr().out
    with open(tmp_path / "cp.csv") as f:
        assert next(csv.reader(f)) == ["episode", "seed", "return", "length", "failed"]


def test_resume_extends_a_finished_run_like_an_uninterrupted_one(runs, tmp_path):
    algo = "svg0"  # replay buffer, two critics, entropy tuning: the whole state must survive
    half = tmp_path / "half"
    full = tmp_path / "full"
    assert main(train_argv(algo, half, steps=60, extra=["--eval-every", "30"])) == 0
    assert main(["train", "--resume", str(half), "--steps", "120", "--quiet"]) == 0
    assert main(train_argv(algo, full, steps=120, extra=["--eval-every", "30"])) == 0
    assert rows(half / "metrics.csv") == rows(full / "metrics.csv")
    assert rows(half / "eval.csv") == rows(full / "eval.csv")
    assert json.loads((half / "config.json").read_text())["steps"] == 120


def test_seeds_of_other_algorithms_train_one_after_another(runs, tmp_path, capsys):
    out = tmp_path / "seeds"
    runs("reinforce")  # the same config: compiled already
    capsys.readouterr()
    assert main(train_argv("reinforce", out, seed=1, extra=["--seeds", "2"])) == 0
    printed = capsys.readouterr().out
    assert "2 seeds: final return" in printed and "vmapped" not in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed_1", "seed_2"]
    import importlib.util

    aggregate = ["aggregate.csv", "aggregate_curve.png"] if importlib.util.find_spec("rliable") else []
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == aggregate  # the seeds' IQM curve beside them
    # seed 1 of the pair is the same run as the single seed-1 run
    assert rows(out / "seed_1" / "metrics.csv") == rows(runs("reinforce") / "metrics.csv")


def test_list_shows_algorithms_systems_rewards_and_presets(capsys):
    from pathwise import systems

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    sections = re.split(r"\n(?=\S)", out)
    algos = next(s for s in sections if s.startswith("algorithms:"))
    for name in algorithms.available():
        info = algorithms.get(name).info
        line = next(ln for ln in algos.splitlines() if ln.split()[:1] == [name])
        assert ("continuous" in line) == info.continuous and ("discrete" in line) == info.discrete
        assert info.summary in line and len(info.summary) > 10, f"{name} has no description"
    for env_id in systems.REGISTRY:
        assert f"  {env_id}\n" in out
    assert registry.known_rewards() and all(f"  {env_id}\n" in out for env_id in registry.known_rewards())
    preset_lines = out.split("presets:")[1].strip().splitlines()
    assert {ln.split()[0] for ln in preset_lines} == set(presets.available())
    assert any(ln.split()[0] == "bptt" and "Pendulum-v1" in ln and "CartPoleSwingUp" in ln for ln in preset_lines)


def test_presets_ship_valid_configs_for_registered_envs():
    import gymnasium as gym

    import pathwise.systems  # noqa: F401  (registers pathwise/... ids)
    from pathwise.envs.dmc import split_repeat

    found = presets.available()
    assert "bptt" in found
    for algo, envs in found.items():
        algorithm = algorithms.get(algo)  # a preset file is named after a registered algorithm
        for env_id in envs:
            # a Control Suite id (or its action-repeat variant, -repeatN-v0) is registered by the dmc extra (shimmy)
            # only where it is installed
            base, repeat = split_repeat(env_id)
            known = env_id in gym.registry or (base in registry.DMC_SOLVED and (base == env_id or repeat >= 2))
            assert known, f"preset {algo}/{env_id}: unknown env id"
            values, run = registry.record(env_id).preset(algo)
            cfg = cfg_mod.build(algorithm.Config, algo, values)  # every key is a valid, well-typed, valid value
            assert isinstance(cfg, algorithm.Config)
            assert all(isinstance(v, int) and v > 0 for v in run.values()), (algo, env_id, run)


def test_estimators_gaussian_study_runs_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "est"
    assert main(["estimators", "gaussian", "--out", str(out), "--sigmas", "0.001", "0.01", "--n-samples", "4",
                 "--n-repeats", "50"]) == 0
    printed = capsys.readouterr().out
    slope = float(re.search(r"log-log slope (-?\d+\.\d+)", printed).group(1))
    assert -2.5 < slope < -1.5  # the 1/sigma^2 law (50 repeats per point)
    for ext in ("csv", "md", "png"):
        assert (out / f"estimators_gaussian.{ext}").is_file()
    assert main(["estimators", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_estimators_pendulum_study_runs_with_a_tiny_budget(tmp_path):
    out = tmp_path / "est"
    assert main(["estimators", "pendulum", "--out", str(out), "--values", "0.3", "--horizon", "3",
                 "--n-samples", "4", "--n-repeats", "4", "--reference-samples", "64"]) == 0
    assert (out / "estimators_pendulum_sigma.csv").is_file()


def test_help_at_every_level_is_complete(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for cmd in ("train", "evaluate", "solve", "estimators", "list"):
        assert f"  {cmd}" in top
    from pathwise import cli_solve

    solve_methods = re.findall(r"^  (\w+)\s", cli_solve.USAGE, flags=re.M)
    assert all(m in top for m in solve_methods), solve_methods  # the top-level help names every solve method
    assert main([]) == 2
    capsys.readouterr()
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--resume RUN_DIR" in text and all(a in text for a in algorithms.available())
    for algo in algorithms.available():
        assert main(["train", algo, "--help"]) == 0
        text = capsys.readouterr().out
        for flag in ("--env", "--steps", "--seed", "--out", "--config", "--set", "--no-preset", "--quiet"):
            assert flag in text, (algo, flag)
        for field in dataclasses.fields(algorithms.get(algo).Config):  # every algorithm option, documented
            assert f"--{field.name.replace('_', '-')}" in text, (algo, field.name)
    for argv, words in ((["evaluate", "--help"], ("--episodes", "--render", "--checkpoint", "RUN_DIR")),
                        (["train", "--resume", "x", "--help"], ("--resume", "--steps")),
                        (["list", "--help"], ("presets",)),
                        (["solve", "--help"], ("lqr", "ilqr", "shooting", "mpc", "--system")),
                        (["solve", "ilqr", "--help"], ("--system", "--horizon", "--out")),
                        (["estimators", "--help"], ("gaussian", "pendulum")),
                        (["estimators", "gaussian", "--help"], ("--sigmas", "--n-samples")),
                        (["estimators", "pendulum", "--help"], ("--sweep", "--horizon"))):
        assert main(argv) == 0, argv
        text = capsys.readouterr().out
        for w in words:
            assert w in text, (argv, w)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, rc, message", [
    (["frobnicate"], 2, r"unknown command 'frobnicate'"),
    (["train", "reinforce", "--env", "CartPol-v1"], 2,
     r"Unknown environment id 'CartPol-v1'\. Did you mean CartPole-v1"),
    (["train", "svg-inf", "--env", "Pendulum-v2"], 2, r"Did you mean Pendulum-v1"),
    (["train", "ppo", "--env", "CartPole-v1"], 2, r"Unknown algorithm 'ppo'\. Available: bptt"),
    (["train", "bptt", "--env", "LunarLanderContinuous-v3"], 2, r"bptt differentiates through known dynamics and "
                                                                 r"needs a pathwise System"),
    (["train", "ddpg", "--env", "CartPole-v1"], 2, r"ddpg needs continuous \(Box\) actions.*svg0-discrete"),
    (["train", "qac", "--env", "Pendulum-v1"], 2, r"qac needs discrete actions, but Pendulum-v1 has a continuous"),
    (["train", "reinforce", "--env", "CartPole-v1", "--set", "hidden=big"], 2, r"Config key 'hidden': cannot use"),
    (["train", "reinforce", "--env", "CartPole-v1", "--set", "num_envs=2.5"], 2,
     r"Config key 'num_envs': cannot use '2\.5'"),
    (["train", "reinforce", "--env", "CartPole-v1", "--set", "baseline=magic"], 2,
     r"Config key 'baseline': cannot use 'magic' \(must be one of"),
    (["train", "reinforce", "--env", "CartPole-v1", "--set", "lrr=1"], 2,
     r"Unknown reinforce config key\(s\) \['lrr'\].*Valid keys:.*\bactor_lr\b"),
    (["train", "reinforce", "--env", "CartPole-v1", "--config", "no_such.toml"], 2, r"--config no_such\.toml: no such"),
    (["evaluate", "no/such/run"], 2, r"no/such/run does not exist: pass a run directory"),
    (["train", "--resume", "no/such/run"], 2, r"no/such/run is not a pathwise run directory"),
])
def test_bad_input_gets_a_clear_message(argv, rc, message, capsys):
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_bad_config_file_contents(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("hidden = [8\n")
    assert main(["train", "reinforce", "--env", "CartPole-v1", "--config", str(bad)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"learnin_rate": 0.1}))
    assert main(["train", "reinforce", "--env", "CartPole-v1", "--config", str(wrong)]) == 2
    assert "Unknown reinforce config key(s) ['learnin_rate']" in capsys.readouterr().err


def test_missing_and_corrupt_checkpoints(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs("reinforce"), run)
    (run / "checkpoints" / "best.npz").unlink()
    assert main(["evaluate", str(run)]) == 2
    assert re.search(r"best\.npz does not exist; is .* a finished `pathwise train` run", capsys.readouterr().err)
    (run / "checkpoints" / "last.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    assert re.search(r"last\.npz is corrupt or truncated.*retrain", capsys.readouterr().err)
    (run / "checkpoints" / "last.npz").unlink()  # as if killed before its first checkpoint
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert re.search(r"holds a run but no checkpoints/last\.npz: it stopped before its first checkpoint.*--overwrite",
                     capsys.readouterr().err)
    # a checkpoint of another algorithm in the run directory
    shutil.copy(runs("qac") / "checkpoints" / "last.npz", run / "checkpoints" / "last.npz")
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    assert "written by algorithm 'qac', not 'reinforce'" in capsys.readouterr().err
