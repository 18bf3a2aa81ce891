"""One naming scheme for step sizes (0.3), and runs written by pathwise 0.2 still loading and resuming.

The scheme: ``lr`` where an algorithm has one optimizer; where it has several, the policy's is ``actor_lr`` and
each other is named by its network (``critic_lr``, ``value_lr``, ``model_lr``, ``alpha_lr``). An old name given
by a user is refused with the new one; an old name in a stored run record is read as the new one.

``tests/data/v0_2/`` holds two run directories written by pathwise 0.2.0 (``bptt`` with
``learning_rate=0.01``, ``reinforce`` with ``lr=0.01``; tiny configs, 80 and 60 steps).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import pathwise as pw
from pathwise import algorithms
from pathwise import config as cfg_mod
from pathwise.cli import main
from runfiles import rows

OLD_RUNS = Path(__file__).parent / "data" / "v0_2"
#: algorithm -> (its 0.2 name, its 0.3 name) of the rate stored in tests/data/v0_2/ALGO (0.01 in both)
STORED = {"bptt": ("learning_rate", "lr"), "reinforce": ("lr", "actor_lr")}
OTHER_NETWORKS = {"critic_lr", "value_lr", "model_lr", "alpha_lr"}


def _read_npz(path: Path) -> tuple[dict, dict]:
    with np.load(path) as data:
        return json.loads(bytes(data["__meta__"]).decode()), {k: data[k] for k in data.files if k != "__meta__"}


def _rename_by_hand(run: Path, old: str, new: str) -> None:
    """What the same run looks like when written with the 0.3 names: config.json and both checkpoints' records."""
    info = json.loads((run / "config.json").read_text())
    info["config"][new] = info["config"].pop(old)
    (run / "config.json").write_text(json.dumps(info))
    for npz in (run / "checkpoints").glob("*.npz"):
        meta, arrays = _read_npz(npz)
        meta["config"][new] = meta["config"].pop(old)
        np.savez(npz, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


@pytest.mark.parametrize("algo", ["bptt", "imitation", "reinforce", "qac", "ddpg", "svg0", "svg0-discrete", "mbrl",
                                  "svg-inf", "svg1", "svgk", "pets"])
def test_every_algorithm_names_its_step_sizes_by_one_scheme(algo):
    config = algorithms.get(algo).Config
    names = [f.name for f in dataclasses.fields(config)]
    rates = cfg_mod.rate_options(config)
    assert not [n for n in names if "learning_rate" in n]
    if algorithms.get(algo).info.planner:
        assert rates == ["model_lr"]  # a planner's one optimizer is its model's, named as in every model-based config
    elif len(rates) == 1:
        assert rates == ["lr"]
    else:
        assert rates[0] == "actor_lr" and set(rates[1:]) <= OTHER_NETWORKS, rates
    for old, new in config.RENAMED.items():
        assert old not in names and new in names


def test_a_record_written_before_an_option_existed_reads_with_the_value_it_ran_with():
    """``upgrade`` fills an option added since (``ADDED``, merged over the config's bases) with the value that
    reproduces the recorded run; a value the record holds is kept, and every ADDED name is a field."""
    from pathwise.algorithms import qac, reinforce, svgk

    old = {k: v for k, v in dataclasses.asdict(svgk.Config()).items() if k != "value_bound"}
    assert cfg_mod.from_dict(svgk.Config, cfg_mod.upgrade(svgk.Config, old), complete=True).value_bound is False
    assert cfg_mod.upgrade(svgk.Config, {**old, "value_bound": True})["value_bound"] is True
    assert cfg_mod.added(reinforce.Config) == {"actor_lr_decay_steps": 0, "actor_lr_final_fraction": 1.0,  # bases'
                                               "epochs": 1, "clip_ratio": 0.0, "reward_scale": 1.0}  # and its own
    assert cfg_mod.added(qac.Config) == {"actor_lr_decay_steps": 0, "actor_lr_final_fraction": 1.0, "epochs": 1,
                                         "clip_ratio": 0.0, "normalize_advantages": False, "reward_scale": 1.0}
    assert cfg_mod.added(algorithms.get("ddpg").Config) == {"actor_lr_decay_steps": 0, "actor_lr_final_fraction": 1.0,
                                                            "act_with_target": False, "angle_features": (),
                                                            "mirror": (), "joint_limits": (), "model_fit_every": 0,
                                                            "noise_color": 0.0}
    # a model-based run from before angle features had networks on the raw observation, whatever its env's record
    old_svgk = {k: v for k, v in dataclasses.asdict(svgk.Config()).items() if k != "angle_features"}
    assert cfg_mod.from_dict(svgk.Config, cfg_mod.upgrade(svgk.Config, old_svgk), complete=True).angle_features == ()
    for algo in algorithms.ALGORITHMS:
        config = algorithms.get(algo).Config
        assert set(cfg_mod.added(config)) <= {f.name for f in dataclasses.fields(config)}, algo


def test_every_algorithm_is_in_the_scheme_test():
    assert set(algorithms.ALGORITHMS) == {"bptt", "imitation", "reinforce", "qac", "ddpg", "svg0", "svg0-discrete",
                                          "mbrl", "svg-inf", "svg1", "svgk", "pets"}


@pytest.mark.parametrize("algo", [pytest.param("bptt", marks=pytest.mark.slow), "reinforce"])  # ~10 s each
def test_a_run_written_by_0_2_resumes_under_the_new_names(algo, tmp_path):
    old, new = STORED[algo]
    stored = OLD_RUNS / algo
    assert json.loads((stored / "config.json").read_text())["config"][old] == 0.01  # the fixture is 0.2's
    as_written, by_hand = tmp_path / "as_written", tmp_path / "by_hand"
    shutil.copytree(stored, as_written)
    shutil.copytree(stored, by_hand)
    _rename_by_hand(by_hand, old, new)
    steps = json.loads((stored / "config.json").read_text())["steps"] * 2
    for run in (as_written, by_hand):
        assert main(["train", "--resume", str(run), "--steps", str(steps), "--quiet"]) == 0
    resumed = rows(as_written / "metrics.csv")
    assert resumed[:len(rows(stored / "metrics.csv"))] == rows(stored / "metrics.csv")
    assert len(resumed) > len(rows(stored / "metrics.csv"))
    assert resumed == rows(by_hand / "metrics.csv")  # the old record reads exactly as its renamed twin
    assert rows(as_written / "eval.csv") == rows(by_hand / "eval.csv")
    config = json.loads((as_written / "config.json").read_text())["config"]
    assert config[new] == 0.01 and old not in config


@pytest.mark.parametrize("algo", sorted(STORED))
def test_a_checkpoint_written_by_0_2_loads(algo, tmp_path, capsys):
    old, new = STORED[algo]
    agent = pw.load(OLD_RUNS / algo / "checkpoints" / "last.npz", quiet=True)
    assert getattr(agent.run.config, new) == 0.01
    _, arrays = _read_npz(OLD_RUNS / algo / "checkpoints" / "last.npz")
    weight = next(k for k in sorted(arrays) if k.startswith("algo/") and arrays[k].ndim == 2)
    from pathwise.checkpoint import named_leaves

    np.testing.assert_array_equal(np.asarray(named_leaves(agent.run.carry)[weight]), arrays[weight])
    run = tmp_path / "run"
    shutil.copytree(OLD_RUNS / algo, run)
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert f"{algo} on " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "bptt", "--env", "pendulum", "--set", "learning_rate=1e-3"],
     "`learning_rate` was renamed `lr` in 0.3 (use --set lr=...)"),
    (["train", "bptt", "--env", "pendulum", "--learning-rate", "1e-3"],
     "`--learning-rate` was renamed `--lr` in 0.3 (use --lr ...)"),
    (["train", "mbrl", "--env", "Pendulum-v1", "--set", "learning_rate=1e-3"],
     "`learning_rate` was renamed `actor_lr` in 0.3 (use --set actor_lr=...)"),
    (["train", "qac", "--env", "CartPole-v1", "--set", "lr=1e-3"],
     "`lr` was renamed `actor_lr` in 0.3 (use --set actor_lr=...)"),
    (["train", "ddpg", "--env", "Pendulum-v1", "--set", "lr=1e-3"],
     "there is no `lr`; the algorithm has one optimizer per network, each with its own step size: actor_lr, "
     "model_lr, critic_lr (use --set actor_lr=...)"),  # model_lr: the model of its optional branched rollouts
    (["train", "svg1", "--env", "Pendulum-v1", "--lr", "1e-3"],
     "there is no `--lr`; the algorithm has one optimizer per network, each with its own step size: --actor-lr, "
     "--model-lr, --critic-lr (use --actor-lr ...)"),
    (["train", "bptt", "--env", "pendulum", "--set", "critic_lr=1e-3"],
     "there is no `critic_lr`; the algorithm has one optimizer: its step size is lr (use --set lr=...)"),
])
def test_an_old_or_ambiguous_name_on_the_command_line_names_the_new_one(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_old_name_in_a_config_file_names_the_new_one(tmp_path, capsys):
    file = tmp_path / "c.toml"
    file.write_text("learning_rate = 0.1\n")
    assert main(["train", "svg-inf", "--env", "Pendulum-v1", "--config", str(file)]) == 2
    assert f"`learning_rate` was renamed `actor_lr` in 0.3 (use actor_lr = ... in {file})" in capsys.readouterr().err


def test_an_old_name_in_pw_make_names_the_new_one():
    with pytest.raises(ValueError, match=r"`learning_rate` was renamed `lr` in 0\.3 \(use lr=\.\.\.\)"):
        pw.make("bptt", env="pendulum", learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"`lr` was renamed `actor_lr` in 0\.3 \(use config=\{'actor_lr': \.\.\.\}\)"):
        pw.make("reinforce", env="CartPole-v1", config={"lr": 1e-3})
    names = r"actor_lr, model_lr, critic_lr, alpha_lr \(use actor_lr=\.\.\.\)"
    with pytest.raises(ValueError, match=r"there is no `lr`.*" + names):
        pw.make("svg0-discrete", env="CartPole-v1", lr=1e-3)


def test_help_and_list_show_the_new_names(capsys):
    assert main(["train", "mbrl", "--env", "Pendulum-v1", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--actor-lr" in text and "--learning-rate" not in text
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "Step sizes: lr." in text and "Step sizes: actor_lr, value_lr." in text and "learning_rate" not in text
