"""Seeds over several processes (`pathwise train ... --seeds N --num-processes P --process-id I --coordinator
HOST:PORT`): two local CPU processes train the seeds as one sharded program, each saves the seeds on its own
devices, and every saved run equals, bit for bit, the same seeds trained by one process with as many devices."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from pathwise.cli import main

TINY_BPTT = ["--no-preset", "--set", "hidden=8", "horizon=10", "batch_size=4", "updates_per_iteration=2",
             "schedule=constant"]


def _train(out, *extra) -> list[str]:
    return [sys.executable, "-m", "pathwise.cli", "train", "bptt", "--env", "pathwise/Pendulum-v1", "--steps", "160",
            "--seeds", "4", "--seed", "3", "--quiet", "--eval-episodes", "1", "--out", str(out), *extra, *TINY_BPTT]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # three fresh interpreters that each compile: ~40 s of CPU, over a minute on a busy 2-core machine
def test_two_processes_train_the_seeds_of_one_process_with_as_many_devices(tmp_path):
    group, alone = tmp_path / "group", tmp_path / "alone"
    coordinator = f"localhost:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    commands = [_train(group, "--host-devices", "1", "--num-processes", "2", "--process-id", str(i),
                       "--coordinator", coordinator) for i in (0, 1)]
    commands.append(_train(alone, "--host-devices", "2"))  # one process, the same 2 devices
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    # each process saved the seeds on its own device: process 0 seeds 3 and 4, process 1 seeds 5 and 6
    for i, seeds in ((0, (3, 4)), (1, (5, 6))):
        assert f"process {i} of 2 saved 2" in outputs[i][0]
        assert all(f"run directory: {group / f'seed_{s}'}" in outputs[i][0] for s in seeds)
    for seed in (3, 4, 5, 6):
        a = np.load(group / f"seed_{seed}" / "checkpoints" / "last.npz")
        b = np.load(alone / f"seed_{seed}" / "checkpoints" / "last.npz")
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if not name.startswith("__"):  # the arrays; the meta record also holds wall-clock times
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"seed {seed}: {name}")
        metrics = [np.genfromtxt(d / f"seed_{seed}" / "metrics.csv", delimiter=",", names=True) for d in (group, alone)]
        for column in metrics[0].dtype.names:
            if column not in ("time", "steps_per_s"):
                np.testing.assert_array_equal(metrics[0][column], metrics[1][column], err_msg=column)
        rows = [(group if k == 0 else alone) / f"seed_{seed}" / "eval.csv" for k in (0, 1)]
        returns = [np.genfromtxt(r, delimiter=",", names=True)["eval_return_mean"] for r in rows]
        np.testing.assert_array_equal(*returns)
    a3, a4 = (np.load(group / f"seed_{s}" / "checkpoints" / "last.npz") for s in (3, 4))
    assert any(not np.array_equal(a3[n], a4[n]) for n in a3.files if not n.startswith("__"))  # seeds differ


@pytest.mark.parametrize("extra, message", [
    (["--num-processes", "2"], "--coordinator None: give HOST:PORT of process 0"),
    (["--num-processes", "2", "--coordinator", "localhost"], "give HOST:PORT"),
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "localhost:1234"], "--process-id 2: must be in [0, 2)"),
    (["--num-processes", "0"], "--num-processes 0: must be >= 1"),
    (["--coordinator", "localhost:1234"], "without --num-processes"),
    (["--num-processes", "2", "--coordinator", "localhost:1234", "--seeds", "1"], "one seed cannot be shared"),
])
def test_bad_process_options_are_one_line(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    argv = ["train", "bptt", "--env", "pathwise/Pendulum-v1", "--seeds", "2", "--out", str(tmp_path / "r"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_algorithms_that_train_seeds_one_after_another_are_refused_in_a_group(tmp_path, capsys):
    argv = ["train", "ddpg", "--env", "Pendulum-v1", "--seeds", "2", "--num-processes", "2", "--coordinator",
            "localhost:1234", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "ddpg on Pendulum-v1 does not train that way" in capsys.readouterr().err
