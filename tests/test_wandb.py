"""Weights & Biases logging (``--wandb-project`` / ``wandb_project=``): what a run logs, that a resume continues the
same W&B run, and clear refusals; one check against the real package in offline mode where it is installed."""

from __future__ import annotations

import json
import sys
import types

import pytest

from pathwise.cli import main
from pathwise.train import open_run, train

TINY = {"hidden": (8,), "num_envs": 2, "value_hidden": (8,), "value_steps": 1}


class FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module that records what pathwise asks of it (the real one starts a service)."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        module = self

        class Run:
            step = max((s for _, s in module.logged), default=-1) + 1

            def log(self, values, step):
                module.logged.append((values, step))

            def finish(self):
                module.finished += 1

        return Run()


@pytest.fixture
def fake_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return fake


def test_a_run_logs_its_scalars_and_a_resume_continues_the_same_wandb_run(tmp_path, fake_wandb):
    out = tmp_path / "run"
    trainer, _ = train("reinforce", "CartPole-v1", 120, overrides=TINY, out=out, eval_every=60, eval_episodes=1,
                       quiet=True, wandb_project="proj")
    record = json.loads((out / "config.json").read_text())
    assert record["wandb_project"] == "proj" and len(record["wandb_id"]) == 16
    (first,) = fake_wandb.inits
    assert first["project"] == "proj" and first["id"] == record["wandb_id"] and first["resume"] == "allow"
    assert first["config"]["algorithm"] == "reinforce" and first["config"]["config"]["hidden"] == [8]
    evals = [(v["eval/eval_return_mean"], s) for v, s in fake_wandb.logged if "eval/eval_return_mean" in v]
    assert evals == [(e["eval_return_mean"], e["env_steps"]) for e in trainer.evals]
    assert any("train/" in k for v, _ in fake_wandb.logged for k in v)
    steps = [s for _, s in fake_wandb.logged]
    assert steps == sorted(steps) and fake_wandb.finished == 1

    resumed = open_run(out, quiet=True)
    resumed.out = out
    resumed.train(240)
    assert [i["id"] for i in fake_wandb.inits] == [record["wandb_id"]] * 2  # the same W&B run, continued
    assert fake_wandb.finished == 2
    later = [s for _, s in fake_wandb.logged][len(steps):]
    assert later and min(later) > max(steps)  # W&B refuses a step below its last: none is sent


def test_wandb_needs_a_run_directory_a_name_and_the_package(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="wandb_project logs a run with a directory"):
        train("reinforce", "CartPole-v1", 20, overrides=TINY, quiet=True, wandb_project="proj")
    with pytest.raises(ValueError, match="must be a W&B project name"):
        train("reinforce", "CartPole-v1", 20, overrides=TINY, out=tmp_path / "a", quiet=True, wandb_project=" ")
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert main(["train", "reinforce", "--env", "CartPole-v1", "--out", str(tmp_path / "r"), "--wandb-project",
                 "proj", "--quiet"]) == 1  # a missing optional dependency: exit 1, as for every extra
    assert 'pip install "pathwise[wandb]"' in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_real_package_logs_offline_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    train("reinforce", "CartPole-v1", 60, overrides=TINY, out=out, eval_every=60, eval_episodes=1, quiet=True,
          wandb_project="proj")
    run_id = json.loads((out / "config.json").read_text())["wandb_id"]
    (log,) = (out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    assert log.stat().st_size > 0
