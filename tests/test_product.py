"""The product surface as documented: the README's Python and command-line examples run, and an agent saved
with ``agent.save`` comes back from ``pw.load`` predicting bit-identical actions.

The README examples run with their training budgets and network sizes shrunk (the unmodified Python
example runs in the slow suite); everything else about them, calls, arguments and order, is as written.
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import pathwise as pw
from pathwise.cli import COMMANDS, main
from pathwise.config import parse_set

from test_cli import TINY

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def readme_commands() -> list[list[str]]:
    """Every ``pathwise ...`` line of the README's bash blocks, as argv (comments stripped)."""
    out = []
    for block in code_blocks(README, "bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("pathwise "):
                out.append(shlex.split(line)[1:])
    return out


@pytest.fixture
def tiny_budgets(monkeypatch):
    """Shrink what the README examples train: tiny networks (TINY) and at most 60 environment steps per learn."""
    real_make, real_learn = pw.make, pw.Agent.learn

    def make(algo, env, seed=0, **kwargs):
        kwargs.setdefault("eval_episodes", 1)
        return real_make(algo, env, seed, **{**parse_set(TINY[algo][2]), **kwargs})

    def learn(self, total_timesteps, **kwargs):
        return real_learn(self, min(int(total_timesteps), 60), **kwargs)

    monkeypatch.setattr(pw, "make", make)
    monkeypatch.setattr(pw.Agent, "learn", learn)


def test_readme_has_the_two_commands_and_a_ten_line_example():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    blocks = code_blocks(README, "python")
    assert blocks, "the README has a Python example"
    assert len([ln for ln in blocks[0].splitlines() if ln.strip()]) <= 12


def test_readme_python_examples_run(tiny_budgets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for block in code_blocks(README, "python"):
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "eval_return_mean" in printed
    assert (tmp_path / "pendulum.npz").is_file() and pw.load(tmp_path / "pendulum.npz").num_timesteps > 0


def test_guide_python_examples_run(tiny_budgets, tmp_path, monkeypatch):
    from pathwise import registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_USER", {})  # the guide registers a reward; forget it afterwards
    for block in code_blocks(GUIDE, "python"):
        exec(compile(block, str(GUIDE), "exec"), {"__name__": "guide"})


@pytest.mark.slow
def test_readme_python_example_runs_unmodified(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in code_blocks(README, "python"):
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def _shrink(argv: list[str], tmp_path: Path) -> list[str] | None:
    """The README command with a tiny budget."""
    argv = list(argv)

    def set_option(flag: str, value: str) -> None:
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv.extend([flag, value])

    cmd = argv[0]
    if "--help" in argv or "-h" in argv or cmd == "list":
        return argv
    if cmd == "train" and "--resume" in argv:
        if "--steps" in argv:
            set_option("--steps", "120")
        return argv + ["--quiet"]
    if cmd == "train":
        algo = argv[1]
        env, steps, sets = TINY[algo]
        set_option("--steps", str(steps))
        set_option("--eval-episodes", "1")
        if "--set" in argv:  # the README's own --set values come last and win
            i = argv.index("--set") + 1
            argv[i:i] = sets
            return argv + ["--quiet"]
        return argv + ["--quiet", "--set", *sets]
    if cmd == "evaluate":
        set_option("--episodes", "1")
        return argv
    if cmd == "estimators" and argv[1] == "gaussian":
        return argv + ["--out", str(tmp_path / "est"), "--sigmas", "0.001", "0.01", "--n-repeats", "20"]
    if cmd == "solve":
        set_option("--horizon", "30")
        set_option("--iterations", "10")
        set_option("--out", str(tmp_path / "solve"))
        return argv
    raise AssertionError(f"the README shows `pathwise {' '.join(argv)}`; teach this test its tiny budget")


def test_readme_cli_commands_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    assert {c[0] for c in commands} == set(COMMANDS), "the README shows every command"
    for argv in commands:
        small = _shrink(argv, tmp_path)
        rc = main(small)
        captured = capsys.readouterr()
        assert rc == 0, f"pathwise {' '.join(small)}\n{captured.err}"
    # what the README says the commands leave behind
    run = tmp_path / "runs" / "p"
    for name in ("config.json", "metrics.csv", "eval.csv", "learning_curve.png", "summary.json",
                 "checkpoints/best.npz", "checkpoints/last.npz"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    assert (tmp_path / "pendulum.gif").is_file()
    assert pw.load(run, quiet=True).num_timesteps >= 120  # --resume ... --steps continued the run
    assert (tmp_path / "solve" / "plot.png").is_file()
    assert {p.name for p in (tmp_path / "runs" / "b").iterdir() if p.is_dir()} == {"seed_0", "seed_1", "seed_2",
                                                                                    "seed_3"}
    import importlib.util

    if importlib.util.find_spec("rliable"):  # the plots extra: the seeds' aggregate curve beside them
        assert (tmp_path / "runs" / "b" / "aggregate_curve.png").is_file()


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_examples_run_quick(script, tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--quick"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip()


# --------------------------------------------------------------------------- save -> load -> predict

SAVE_LOAD = {"reinforce": "CartPole-v1", "svg0-discrete": "CartPole-v1", "ddpg": "Pendulum-v1",
             "bptt": "pathwise/Pendulum-v1", "svg-inf": "Pendulum-v1"}


@pytest.mark.parametrize("algo", list(SAVE_LOAD))
def test_save_load_predict_is_bit_identical(algo, tmp_path):
    import gymnasium as gym

    env_id, steps, sets = TINY[algo]
    assert env_id == SAVE_LOAD[algo]
    agent = pw.make(algo, env=env_id, seed=2, use_preset=False, eval_episodes=1, quiet=True, **parse_set(sets))
    agent.learn(steps)
    space = gym.make(env_id).observation_space
    space.seed(0)
    obs = np.stack([space.sample() for _ in range(16)]).astype(np.float32)
    before, _ = agent.predict(obs, deterministic=True)
    single = [agent.predict(o, deterministic=True)[0] for o in obs[:3]]
    path = agent.save(tmp_path / "agent")
    assert path.name == "agent.npz"
    loaded = pw.load(path, quiet=True)
    assert loaded.run.algorithm == agent.run.algorithm and loaded.config == agent.config
    assert loaded.num_timesteps == agent.num_timesteps and loaded.env_id == env_id
    after, _ = loaded.predict(obs, deterministic=True)
    assert np.asarray(after).dtype == np.asarray(before).dtype
    np.testing.assert_array_equal(after, before)
    for o, a in zip(obs[:3], single):
        np.testing.assert_array_equal(loaded.predict(o, deterministic=True)[0], a)
    if isinstance(gym.make(env_id).action_space, gym.spaces.Box):
        assert np.asarray(before).shape == (16, *gym.make(env_id).action_space.shape)
    else:
        assert np.asarray(before).shape == (16,) and set(np.unique(before)) <= {0, 1}
    bad = np.zeros(obs.shape[1] + 1, np.float32)
    with pytest.raises(ValueError, match=rf"observation has shape \({obs.shape[1] + 1},\), expected \({obs.shape[1]},\)"):
        loaded.predict(bad)
