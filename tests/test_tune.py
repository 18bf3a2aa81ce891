"""`pathwise tune`: every searched name is a Config field and every sample a valid config; two workers started at
once share one SQLite study; the best configuration, written as a preset file, trains with --preset-file; a trial
below the median is pruned; bad input is one line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pathwise import algorithms, presets, registry
from pathwise import config as config_mod
from pathwise.cli import main
from pathwise.tune import SPACES, sample

#: A fast-compiling ddpg on Pendulum-v1 (as tests/test_cli.py's TINY): the structure is held fixed, the rest searched.
TINY_DDPG = ["hidden=8", "critic_hidden=8", "batch_size=8", "buffer_size=200", "learning_starts=20",
             "max_episode_steps=30"]


def test_every_algorithm_has_a_space_and_every_searched_name_is_a_config_field():
    assert set(SPACES) == set(algorithms.available())
    for algo, space in SPACES.items():
        fields = {f.name for f in dataclasses.fields(algorithms.get(algo).Config)}
        unknown = [n for n in space if n not in fields]
        assert not unknown, f"{algo}: searched names {unknown} are not fields of its Config"


def test_every_sample_builds_a_valid_config():
    optuna = pytest.importorskip("optuna", reason="pathwise tune needs the tune extra (optuna)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for algo, space in SPACES.items():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        algorithm = algorithms.get(algo)
        env = "CartPole-v1" if algo == "svg0-discrete" else "Pendulum-v1"
        preset = registry.record(env).preset(algo)[0]
        for _ in range(3):
            values = sample(study.ask(), space)
            config_mod.build(algorithm.Config, algo, preset, values)  # raises on an invalid combination


def _tune_argv(db, out) -> list[str]:
    return ["tune", "ddpg", "--env", "Pendulum-v1", "--trials", "1", "--steps", "60", "--evaluations", "2",
            "--eval-episodes", "1", "--storage", f"sqlite:///{db}", "--study-name", "tiny", "--out", str(out),
            "--quiet", "--set", *TINY_DDPG]


@pytest.mark.slow  # two fresh interpreters that each compile, then a run: ~25 s of CPU, a minute on a busy machine
def test_two_workers_share_one_sqlite_study_and_the_best_config_trains_from_its_preset(tmp_path, capsys):
    optuna = pytest.importorskip("optuna", reason="pathwise tune needs the tune extra (optuna)")
    db, out = tmp_path / "study.db", tmp_path / "tune"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "pathwise.cli", *_tune_argv(db, out)]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # started at once: both race to create the same new SQLite file and study
    for w in workers:
        stdout, stderr = w.communicate(timeout=300)
        assert w.returncode == 0, stderr[-3000:]
        assert "best configuration:" in stdout
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2, states
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 2  # two configurations, not one
    best = study.best_trial
    preset = out / "ddpg.toml"
    values, run = presets.load_file(preset, "Pendulum-v1")
    assert run == {"steps": 60, "eval_every": 30, "eval_episodes": 1}
    assert {k: values[k] for k in best.params} == best.params

    run_dir = tmp_path / "best"
    assert main(["train", "ddpg", "--env", "Pendulum-v1", "--preset-file", str(preset), "--out", str(run_dir),
                 "--quiet"]) == 0
    trained = json.loads((run_dir / "config.json").read_text())
    assert trained["config"] == best.user_attrs["config"]  # exactly the configuration the best trial trained
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 60  # the preset's budget
    assert "final return" in capsys.readouterr().out


def test_a_trial_below_the_median_is_pruned(tmp_path):
    optuna = pytest.importorskip("optuna", reason="pathwise tune needs the tune extra (optuna)")
    from pathwise import tune

    study = tune.open_study(f"sqlite:///{tmp_path / 'p.db'}", "pruned", steps=400)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    for _ in range(2):  # earlier trials that returned 0 at every evaluation; Pendulum-v1's returns are negative
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.0,
                                                  intermediate_values={200: 0.0, 400: 0.0}))
    algorithm = algorithms.get("ddpg")
    preset = config_mod.to_dict(config_mod.build(algorithm.Config, "ddpg", {}, config_mod.parse_set(TINY_DDPG)))
    # 400 steps = two 200-step episodes (one replay-loop iteration each), an evaluation after each
    study.optimize(tune._Objective(algorithm, "Pendulum-v1", preset, {}, 400, 0, 200, 1), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [200]  # stopped at the first evaluation, not trained to the end


@pytest.mark.parametrize("argv, message", [
    (["tune", "dqn"], "Unknown algorithm 'dqn'"),
    (["tune", "ddpg", "--trials", "0"], "--trials 0: must be a whole number >= 1"),
    (["tune", "bptt", "--env", "LunarLander-v3"], "needs a pathwise System"),
    (["tune", "ddpg", "--set", "hidden=-1"], "hidden=(-1,) must list one or more layer sizes"),
])
def test_bad_tune_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("storage, message", [
    ("not-a-url", "is not a database URL; use sqlite:///study.db"),
    ("sqlite:////nonexistent-folder/deeper/study.db", "cannot open the database"),
])
def test_a_bad_storage_url_is_one_line(storage, message, tmp_path, capsys):
    pytest.importorskip("optuna", reason="pathwise tune needs the tune extra (optuna)")
    assert main(["tune", "ddpg", "--storage", storage, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_preset_files_are_refused_with_the_fix(tmp_path, capsys):
    missing = tmp_path / "missing.toml"
    assert main(["train", "ddpg", "--env", "Pendulum-v1", "--preset-file", str(missing)]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(presets.dumps("CartPole-v1", {"gamma": 0.9}, {}))
    assert main(["train", "ddpg", "--env", "Pendulum-v1", "--preset-file", str(other)]) == 2
    assert "has no table for Pendulum-v1 (it has ['CartPole-v1'])" in capsys.readouterr().err
    assert main(["train", "ddpg", "--env", "Pendulum-v1", "--preset-file", str(other), "--no-preset"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_a_preset_written_for_the_gymnasium_id_serves_its_pathwise_twin(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(presets.dumps("Pendulum-v1", {"hidden": (8, 8), "gamma": 0.9}, {"steps": 10}))
    assert presets.load_file(path, "pathwise/Pendulum-v1", registry.record("pathwise/Pendulum-v1").twin) == (
        {"hidden": [8, 8], "gamma": 0.9}, {"steps": 10})
    with pytest.raises(ValueError, match="cannot be written"):
        presets.dumps("Pendulum-v1", {"angle_features": None}, {})
