"""Your own problem, end to end (issue 15): a Gymnasium env class and a differentiable System of the user's (in
tests/own_problem_pkg.py) train through ``pw.make`` and ``pathwise train --env/--system package.module:name`` with
a run directory, evaluation and exact resume; what cannot be used is refused with the fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import own_problem_pkg as P
import pathwise as pw
from pathwise import problems, registry
from pathwise.cli import main
from runfiles import assert_same_run, rows

TESTS = Path(__file__).resolve().parent
REINFORCE = ["hidden=8", "num_envs=2", "value_hidden=8", "value_steps=1"]  # 2 episodes of 20 steps per iteration
BPTT = ["hidden=8", "horizon=10", "batch_size=4", "updates_per_iteration=2", "schedule=constant"]  # 80 per iteration
SMALL = dict(hidden=(8,), num_envs=2, value_hidden=(8,), value_steps=1)


def forget_own_problems():
    """What a new process lacks: this process's registrations of users' environments and systems."""
    for own in list(problems._SOURCES):
        gym.registry.pop(own, None)
    problems._SOURCES.clear()
    problems._OBJECTS.clear()
    registry._OWN.clear()


@pytest.fixture(autouse=True)
def fresh_registrations():
    forget_own_problems()
    yield
    forget_own_problems()


RUN_FILES = ("config.json", "metrics.csv", "eval.csv", "summary.json", "learning_curve.png", "checkpoints/last.npz",
             "checkpoints/best.npz")


def test_own_env_instance_and_system_as_env_train_through_make_with_a_run_directory(tmp_path):
    agent = pw.make("reinforce", env=P.make(), seed=0, use_preset=False, out=tmp_path / "run", eval_every=40,
                    eval_episodes=2, **SMALL)
    agent.learn(80)
    assert agent.env_id == "own/Drive" and agent.num_timesteps >= 80
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_id"] == "own/Drive" and np.isfinite(summary["final_return_mean"])
    assert [r["env_steps"] for r in rows(tmp_path / "run" / "eval.csv")] == ["40", "80"]
    assert "env_source" not in json.loads((tmp_path / "run" / "config.json").read_text())
    result = agent.evaluate(episodes=2)
    assert result["eval_length_mean"] == 20.0  # the instance's own TimeLimit
    action, _ = agent.predict(np.zeros(2, np.float32))
    assert np.asarray(action).shape == (1,)
    assert pw.load(tmp_path / "run", quiet=True).num_timesteps == agent.num_timesteps  # in this process: fine
    # a System is an environment too (through its Gymnasium wrapper), for a model-free learner
    other = pw.make("reinforce", env=P.PointMass(), seed=0, use_preset=False, eval_episodes=1, **SMALL)
    assert other.env_id == "own/PointMass" and registry.record(other.env_id).native
    assert np.isfinite(other.learn(40).evaluate(1)["eval_return_mean"])

    forget_own_problems()  # another process cannot rebuild an instance: a clear refusal, not a crash
    with pytest.raises(ValueError, match="given as a Python object .* importable string"):
        pw.load(tmp_path / "run")
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "120", "--quiet"]) == 2


def test_own_env_through_the_cli_resumes_in_a_new_process_like_an_uninterrupted_run(tmp_path, capsys):
    def train(out, steps):
        return main(["train", "reinforce", "--env", "own_problem_pkg:make", "--steps", str(steps), "--out", str(out),
                     "--quiet", "--eval-episodes", "2", "--eval-every", "40", "--no-preset", "--set", *REINFORCE])

    assert train(tmp_path / "half", 40) == 0
    assert "reinforce on own/own_problem_pkg.make (seed 0)" in capsys.readouterr().out
    info = json.loads((tmp_path / "half" / "config.json").read_text())
    assert info["env_id"] == "own/own_problem_pkg.make" and info["env_source"] == "own_problem_pkg:make"
    forget_own_problems()  # as in a new process: the run record's env_source rebuilds the environment
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "120", "--quiet"]) == 0
    assert train(tmp_path / "full", 120) == 0
    assert_same_run(tmp_path / "half", tmp_path / "full")
    for name in RUN_FILES:
        assert (tmp_path / "half" / name).is_file(), name
    forget_own_problems()
    assert main(["evaluate", str(tmp_path / "half"), "--episodes", "2"]) == 0
    assert "reinforce on own/own_problem_pkg.make: mean return" in capsys.readouterr().out


def test_own_system_through_make_and_the_cli_resumes_like_an_uninterrupted_run(tmp_path, capsys):
    agent = pw.make("bptt", system="own_problem_pkg:PointMass", seed=0, use_preset=False, out=tmp_path / "py",
                    eval_episodes=2, hidden=(8,), horizon=10, batch_size=4, updates_per_iteration=2,
                    schedule="constant")  # (examples/own_system.py passes an instance)
    agent.learn(80)
    assert agent.env_id == "own/own_problem_pkg.PointMass" and (tmp_path / "py" / "checkpoints" / "last.npz").is_file()
    assert agent.evaluate(2)["eval_length_mean"] == 20.0  # evaluated on the System's Gymnasium wrapper

    def train(out, steps):
        return main(["train", "bptt", "--system", "own_problem_pkg:PointMass", "--steps", str(steps), "--out",
                     str(out), "--quiet", "--eval-episodes", "2", "--eval-every", "80", "--no-preset", "--set", *BPTT])

    assert train(tmp_path / "half", 80) == 0
    assert json.loads((tmp_path / "half" / "config.json").read_text())["env_source"] == "own_problem_pkg:PointMass"
    forget_own_problems()
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "160", "--quiet"]) == 0
    assert train(tmp_path / "full", 160) == 0
    assert_same_run(tmp_path / "half", tmp_path / "full")
    summary = json.loads((tmp_path / "half" / "summary.json").read_text())
    assert summary["env_id"] == "own/own_problem_pkg.PointMass" and summary["env_steps"] == 160
    assert "simulated steps" in summary["learner"]["env_steps_are"]  # differentiated through, not sampled


def test_a_system_behind_gymnasium_is_still_a_system():
    wrapped = pw.systems.to_gymnasium(P.PointMass())
    assert registry.record(problems.env_id(wrapped)).native  # bptt can differentiate it
    gym.register(id="TestOwnPointMass-v0", entry_point=lambda: pw.systems.SystemEnv(P.PointMass()),
                 max_episode_steps=20)
    try:
        assert registry.record(problems.env_id("TestOwnPointMass-v0")).system is not None
    finally:
        gym.registry.pop("TestOwnPointMass-v0")
        registry._OWN.pop("TestOwnPointMass-v0", None)


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_own_envs_here.py").write_text("from own_problem_pkg import make\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert problems.env_id("my_own_envs_here:make") == "own/my_own_envs_here.make"
    assert problems.source("own/my_own_envs_here.make") == "my_own_envs_here:make"


def _discrete_from_one():
    env = P.make()
    env.action_space = gym.spaces.Discrete(3, start=1)
    return env


def _bad_first_obs():
    env = P.make()
    env.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    return env


@pytest.mark.parametrize("argv, message", [
    (["svg0", "--env", "own_problem_pkg:nope"], "module 'own_problem_pkg' .* has no attribute 'nope'"),
    (["svg0", "--env", "no_such_pkg.envs:make"], "cannot import 'no_such_pkg.envs' .* PYTHONPATH"),
    (["svg0", "--env", "own_problem_pkg:make_not_env"], "returned a dict, not a gymnasium.Env"),
    (["svg0", "--env", "own_problem_pkg:make_dict_obs"], "observation space is a Dict; .*FlattenObservation"),
    (["ddpg", "--env", "own_problem_pkg:make_unbounded"], "unbounded actions .* declare finite bounds"),
    (["bptt", "--env", "own_problem_pkg:make"], "needs a pathwise System, but .* has none .* --system"),
    (["bptt", "--system", "own_problem_pkg:make"], "--system own_problem_pkg:make is a TimeLimit, not a "
                                                   "differentiable pathwise System"),
    (["bptt", "--system", "CartPole-v1", "--env", "pendulum"], "pass one of them"),
    (["bptt", "--system", "HalfCheetah-v5"], "not a differentiable system"),
])
def test_what_cannot_be_used_is_refused_with_the_fix(argv, message, tmp_path, capsys):
    assert main(["train", *argv, "--steps", "10", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pathwise train: error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("env, message", [
    (_discrete_from_one, "Discrete action space starts at 1"),
    (_bad_first_obs, r"returned an observation of shape \(2,\)"),
    (lambda: 1 / 0, "calling it with no arguments raised ZeroDivisionError"),
    (42, "an environment must be a Gymnasium id"),
])
def test_bad_own_envs_in_python(env, message):
    with pytest.raises(ValueError, match=message):
        pw.make("reinforce", env=env)
    with pytest.raises(ValueError, match="exactly one of them"):
        pw.make("bptt", env="pendulum", system="pendulum")


@pytest.mark.slow
def test_resume_in_another_process_imports_from_its_current_directory(tmp_path):
    """A real second process, without the current directory on sys.path (as the `pathwise` script runs)."""
    argv = ["train", "reinforce", "--env", "own_problem_pkg:make", "--eval-episodes", "2", "--eval-every", "40",
            "--no-preset", "--quiet", "--set", *REINFORCE]
    assert main([*argv, "--steps", "40", "--out", str(tmp_path / "half")]) == 0
    env = {**os.environ, "PATHWISE_QUIET": "1", "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run([sys.executable, "-P", "-m", "pathwise.cli", "train", "--resume", str(tmp_path / "half"),
                           "--steps", "120", "--quiet"], cwd=TESTS, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert main([*argv, "--steps", "120", "--out", str(tmp_path / "full")]) == 0
    assert_same_run(tmp_path / "half", tmp_path / "full")
