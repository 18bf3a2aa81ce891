"""The ``pathwise train`` run options end to end with tiny budgets (in-process, via ``pathwise.cli.main``): the
precedence of preset, ``--config`` and ``--set``; ``--seeds`` as one vmapped program (bptt, svgk on a System); the
stop after non-finite iterations; and one subprocess run killed with SIGKILL mid-way and resumed to the same final
metrics as an uninterrupted run. Split from tests/test_cli.py so that the two halves run on different test workers.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

from cli_tiny import train_argv
from pathwise import checkpoint as ckpt
from pathwise import presets
from pathwise.cli import main
from runfiles import assert_same_run, rows


def test_preset_is_applied_and_overridden_by_config_then_set(tmp_path, capsys):
    """defaults < preset < --config FILE < --set / flags, as documented."""
    preset, _ = presets.load("bptt", "Pendulum-v1")
    assert preset, "bptt ships a Pendulum-v1 preset"
    cfg_file = tmp_path / "tiny.toml"
    cfg_file.write_text('hidden = [8]\nhorizon = 10\nbatch_size = 4\nupdates_per_iteration = 2\n'
                        'lr = 0.5\n')
    out = tmp_path / "run"
    rc = main(["train", "bptt", "--env", "pendulum", "--steps", "40", "--out", str(out), "--quiet",
               "--eval-episodes", "1", "--config", str(cfg_file), "--set", "lr=0.01"])
    assert rc == 0
    info = json.loads((out / "config.json").read_text())
    assert info["env_id"] == "pathwise/Pendulum-v1"  # the short name resolves to the system's id
    config = info["config"]
    assert config["lr"] == 0.01  # --set beats --config
    assert config["hidden"] == [8] and config["horizon"] == 10  # --config beats the preset
    assert config["schedule_updates"] == preset["schedule_updates"]  # the preset (twin id) fills the rest
    # flags and --set are the same options
    out2 = tmp_path / "run2"
    assert main(["train", "bptt", "--env", "pendulum", "--steps", "40", "--out", str(out2), "--quiet",
                 "--eval-episodes", "1", "--config", str(cfg_file), "--lr", "0.01"]) == 0
    assert json.loads((out2 / "config.json").read_text())["config"] == config


def test_bptt_seeds_trains_each_seed_into_its_own_run_directory(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(train_argv("bptt", out, seed=4, extra=["--seeds", "2"])) == 0
    printed = capsys.readouterr().out
    assert "as one vmapped program" in printed and "2 seeds: final return" in printed
    params = []
    for seed in (4, 5):
        s = json.loads((out / f"seed_{seed}" / "summary.json").read_text())
        assert s["seed"] == seed and s["env_steps"] >= 80
        params.append(ckpt.read(out / f"seed_{seed}" / "checkpoints" / "last.npz")[1])
    assert sorted(params[0]) == sorted(params[1])
    assert any(not np.array_equal(params[0][k], params[1][k]) for k in params[0] if params[0][k].dtype.kind == "f")


def test_svgk_seeds_on_a_system_train_as_one_program(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(train_argv("svgk", out, seed=2, extra=["--seeds", "2"])) == 0
    printed = capsys.readouterr().out
    assert "2 seeds of svgk as one vmapped program" in printed
    for seed in (2, 3):
        s = json.loads((out / f"seed_{seed}" / "summary.json").read_text())
        assert s["seed"] == seed and s["env_steps"] == 64  # 2 iterations of 2 updates of 4 simulations x 4 steps
        assert len(rows(out / f"seed_{seed}" / "metrics.csv")) == 2


def test_nonfinite_training_stops_with_a_clear_message(tmp_path, capsys, monkeypatch):
    from pathwise.loops.on_policy import OnPolicyLoop

    original = OnPolicyLoop.iteration
    calls = []

    def diverging(self, carry):  # the first iteration is fine, every later one reports a NaN loss
        carry, metrics = original(self, carry)
        calls.append(int(carry.env_steps))
        return carry, ({**metrics, "loss": float("nan")} if len(calls) > 1 else metrics)

    monkeypatch.setattr(OnPolicyLoop, "iteration", diverging)
    out = tmp_path / "nan"
    assert main(train_argv("reinforce", out, steps=400, extra=["--eval-every", "10"])) == 1
    err = capsys.readouterr().err
    assert re.search(r"non-finite \['loss'\] in 3 consecutive iterations.*nothing NaN was saved.*learning rates.*"
                     r"float64", err), err
    assert len(calls) == 4  # one good iteration, then three skipped retries
    meta, arrays = ckpt.read(out / "checkpoints" / "last.npz")  # the good iteration's checkpoint
    assert meta["counters"]["env_steps"] == calls[0] and meta["counters"]["iterations"] == 1
    assert all(np.all(np.isfinite(x)) for x in arrays.values() if np.issubdtype(x.dtype, np.floating))


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    algo, steps, every = "ddpg", 300, 30  # a replay buffer, target networks and exploration noise to restore
    killed, full = tmp_path / "killed", tmp_path / "full"
    env = {**os.environ, "PATHWISE_QUIET": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would block the child
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pathwise.cli",
                                 *train_argv(algo, killed, steps=steps, extra=["--eval-every", str(every)])],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    last = killed / "checkpoints" / "last.npz"
    deadline = time.monotonic() + 600  # generous: the shared test machine can be heavily loaded
    try:
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last.exists(), log.read_text() if proc.poll() is not None else "no checkpoint in 600 s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    import pathwise as pw

    agent = pw.load(last, quiet=True)  # the last checkpoint is whole and loads
    stopped_at = agent.num_timesteps
    assert every <= stopped_at < steps, "the kill did not land mid-run"
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert main(train_argv(algo, full, steps=steps, extra=["--eval-every", str(every)])) == 0
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((full / "summary.json").read_text())
    for key in ("env_steps", "iterations", "final_return_mean", "final_return_std", "best_return_mean",
                "best_env_steps", "nonfinite_iterations"):
        assert a[key] == b[key], key
    assert_same_run(killed, full)
