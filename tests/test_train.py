"""The training driver, facade and CLI: run directory, determinism, exact resume, NaN protection, clear errors.

One small, fast learner (REINFORCE on CartPole-v1 with a tiny network) exercises
the machinery every algorithm shares.
"""

import csv
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise import checkpoint as ckpt
from pathwise.cli import main
from pathwise.train import NonFiniteError, Trainer, make_run, open_run, resume, train
from runfiles import rows

ENV = "CartPole-v1"
SMALL = {"num_envs": 2, "hidden": (16,), "value_hidden": (16,), "value_steps": 2}
STEPS, EVAL_EVERY = 320, 80  # the half run stops on an evaluation boundary, as a checkpoint does


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    trainer, summary = train("reinforce", ENV, STEPS, seed=3, overrides=SMALL, out=out, eval_every=EVAL_EVERY,
                             eval_episodes=2, quiet=True)
    return out, trainer, summary


def test_run_directory_has_everything(full_run):
    out, trainer, summary = full_run
    for name in ("config.json", "metrics.csv", "eval.csv", "learning_curve.png", "summary.json",
                 "checkpoints/last.npz", "checkpoints/best.npz"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    s = json.loads((out / "summary.json").read_text())
    assert s == json.loads(json.dumps(summary))
    assert s["env_steps"] >= STEPS and s["algorithm"] == "reinforce" and s["solved_threshold"] == 475.0
    evals = rows(out / "eval.csv")
    assert len(evals) >= STEPS // EVAL_EVERY
    assert float(evals[-1]["eval_return_mean"]) == s["final_return_mean"]
    assert max(float(e["eval_return_mean"]) for e in evals) == s["best_return_mean"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["num_envs"] == 2 and cfg["config"]["hidden"] == [16]


def test_resume_equals_uninterrupted_run(full_run, tmp_path):
    out, _, summary = full_run
    half = tmp_path / "half"
    train("reinforce", ENV, STEPS // 2, seed=3, overrides=SMALL, out=half, eval_every=EVAL_EVERY, eval_episodes=2,
          quiet=True)
    # what a writer killed mid-write leaves: half-written temporaries; resuming removes them, nothing else
    stale = [half / "checkpoints" / ".last.npz.k1ll3d.tmp", half / ".metrics.csv.x9.tmp"]
    for path in stale + [half / "notes.tmp"]:
        path.write_bytes(b"partial")
    _, resumed = resume(half, STEPS, quiet=True)
    assert not any(p.exists() for p in stale) and (half / "notes.tmp").exists()
    assert rows(half / "metrics.csv") == rows(out / "metrics.csv")
    assert rows(half / "eval.csv") == rows(out / "eval.csv")
    assert resumed["final_return_mean"] == summary["final_return_mean"]
    _, la = ckpt.read(out / "checkpoints" / "last.npz")
    _, lb = ckpt.read(half / "checkpoints" / "last.npz")
    assert sorted(la) == sorted(lb) and "algo/policy/net/layers/0/weight" in la
    for name in la:
        np.testing.assert_array_equal(la[name], lb[name])


def test_facade_same_seed_same_metrics_save_and_load(full_run, tmp_path):
    out, trainer, _ = full_run
    agent = pw.make("reinforce", env=ENV, seed=3, eval_every=EVAL_EVERY, eval_episodes=2, quiet=True, **SMALL)
    agent.learn(STEPS)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "steps_per_s")} for r in rows]  # noqa
    assert strip(agent._trainer.history) == strip(trainer.history)
    obs = np.zeros(4, np.float32)
    action, state = agent.predict(obs)
    assert state is None and action in (0, 1)
    batch, _ = agent.predict(np.zeros((3, 4), np.float32))
    assert batch.shape == (3,)
    with pytest.raises(ValueError, match=r"observation has shape \(5,\), expected \(4,\)"):
        agent.predict(np.zeros(5))
    path = agent.save(tmp_path / "agent")
    loaded = pw.load(path, quiet=True)
    assert loaded.num_timesteps == agent.num_timesteps
    for o in np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32):
        assert loaded.predict(o)[0] == agent.predict(o)[0]
    assert pw.load(out, quiet=True).num_timesteps == trainer.run.env_steps


class _PoisonAfter:
    """Wrap a run so that every iteration after the first writes NaN into its policy's parameters."""

    def __init__(self, run, poison_from=1):
        self.inner, self.calls, self.poison_from = run, 0, poison_from
        self.inner_iteration = run.iteration
        run.iteration = self.iteration

    def iteration(self):
        metrics = self.inner_iteration()
        self.calls += 1
        if self.calls > self.poison_from:
            carry = self.inner.carry
            nan = lambda x: x * jnp.nan if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating) else x
            self.inner.carry = carry._replace(algo=carry.algo._replace(policy=jax.tree.map(nan, carry.algo.policy)))
        return metrics


def test_nonfinite_updates_are_skipped_counted_then_stop_with_advice(tmp_path):
    run, _ = make_run("reinforce", ENV, 0, overrides=SMALL)
    _PoisonAfter(run)
    trainer = Trainer(run, out=tmp_path, eval_every=10, eval_episodes=1, quiet=True)
    with pytest.raises(NonFiniteError, match=r"NaN parameters in 3 consecutive.*learning rates.*float64"):
        trainer.train(10_000)
    assert trainer.counters.nonfinite_iterations == 3 and trainer.counters.iterations == 1
    meta, arrays = ckpt.read(tmp_path / "checkpoints" / "last.npz")
    assert all(np.all(np.isfinite(x)) for x in arrays.values() if np.issubdtype(x.dtype, np.floating))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(run.carry.algo.policy)
               if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating))


def test_cli_train_evaluate_list_and_help(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "reinforce", "--env", ENV, "--steps", "60", "--out", str(out), "--eval-every", "60",
               "--eval-episodes", "1", "--quiet", "--set", "num_envs=2", "hidden=16", "--value-steps", "2"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["num_envs"] == 2 and cfg["hidden"] == [16] and cfg["value_steps"] == 2
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "reinforce" in capsys.readouterr().out
    assert main(["train", "reinforce", "--env", ENV, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Episodes per update" in text and "--steps" in text and "--set" in text


@pytest.mark.parametrize("argv, message", [
    (["train", "reinforce", "--env", "CartPol-v1"], "Unknown environment id 'CartPol-v1'. Did you mean CartPole-v1"),
    (["train", "reinforcee", "--env", ENV], "Unknown algorithm 'reinforcee'"),
    (["train", "reinforce", "--env", ENV, "--set", "actor_lr=fast"], "Config key 'actor_lr': cannot use 'fast'"),
    (["train", "reinforce", "--env", ENV, "--set", "learnin_rate=1"], r"Unknown reinforce config key\(s\) \['learnin_rate'\]"),
    (["train", "reinforce", "--env", ENV, "--set", "lr"], "--set expects KEY=VALUE"),
    (["train", "reinforce", "--env", ENV, "--set", "num_envs=0"], "Invalid reinforce config: num_envs=0 must be >= 1"),
    (["train", "reinforce", "--env", ENV, "--seeds", "0"], "--seeds 0: train at least one seed"),
    (["train", "reinforce", "--env", ENV, "--steps", "-5"], "--steps -5: the budget must be a positive"),
    (["evaluate", "no/such/run"], "no/such/run does not exist: pass a run directory"),
    (["train", "--resume", "no/such/run"], "not a pathwise run directory"),
    (["train", "reinforce", "--env", ENV, "--config", "missing.toml"], "--config missing.toml: no such file"),
])
def test_cli_bad_input_gets_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_corrupt_and_foreign_checkpoints(full_run, tmp_path, capsys):
    out, trainer, _ = full_run
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "checkpoints" / "best.npz").write_bytes(b"\x00garbage")
    assert main(["evaluate", str(bad)]) == 1
    assert "corrupt or truncated" in capsys.readouterr().err
    foreign = tmp_path / "foreign.npz"
    ckpt.save(foreign, {"w": jnp.zeros(3)}, trainer.meta())
    with pytest.raises(ckpt.CheckpointError, match="incompatible"):
        pw.load(foreign, quiet=True)


def test_an_existing_run_is_refused_unless_overwrite_and_reading_a_run_writes_nothing(full_run, tmp_path, capsys):
    import shutil

    out, _, summary = full_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match=r"already holds a run; continue it with `pathwise train --resume"):
        train("reinforce", ENV, 60, overrides=SMALL, out=out, quiet=True)
    argv = ["train", "reinforce", "--env", ENV, "--steps", "60", "--out", str(out), "--quiet", "--set", "num_envs=2",
            "hidden=16"]
    assert main(argv) == 2 and "--overwrite to replace it" in capsys.readouterr().err
    assert pw.load(out, quiet=True).num_timesteps == summary["env_steps"]  # opening a run reads only
    assert main(["evaluate", str(out), "--episodes", "1"]) == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing was written or lost
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    _, replaced = train("reinforce", ENV, 60, overrides=SMALL, out=copy, quiet=True, eval_episodes=1, overwrite=True)
    assert replaced["env_steps"] < summary["env_steps"]
    assert json.loads((copy / "summary.json").read_text())["env_steps"] == replaced["env_steps"]


def test_predict_refuses_non_finite_observations_and_learn_refuses_fractions(full_run):
    agent = pw.load(full_run[0], quiet=True)
    with pytest.raises(ValueError, match="contains NaN or inf"):
        agent.predict(np.array([0.0, np.nan, 0.0, 0.0], np.float32))
    with pytest.raises(ValueError, match="positive whole number, got 0.5"):
        agent.learn(0.5)


def test_a_run_killed_before_its_first_checkpoint_says_so(full_run, tmp_path):
    out, _, _ = full_run
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint.*--overwrite"):
        resume(tmp_path, quiet=True)
    with pytest.raises(FileNotFoundError, match="no checkpoints/best.npz"):
        open_run(tmp_path, which="best")


def test_summary_reports_stability_and_checkpoints_without_episode_returns_still_load(full_run, tmp_path):
    import shutil

    from pathwise.train import EPISODE_RETURNS, STABILITY_KEYS

    out, trainer, _ = full_run
    s = json.loads((out / "summary.json").read_text())
    assert set(STABILITY_KEYS) <= set(s) and s["failure_below"] == 195.0 and s["steps_to_solve"] is None
    final = trainer.evals[-1][EPISODE_RETURNS]  # every evaluation keeps its episodes' returns (2 here)
    assert len(final) == 2 and s["failed_episode_fraction"] == float(np.mean(np.array(final) < 195.0))
    assert s["ends_solved"] is (s["final_return_mean"] >= 475.0) and s["stably_solved_at"] is None
    with open(out / "eval.csv") as f:
        header = next(csv.reader(f))
    assert "eval_failed_episodes" in header and EPISODE_RETURNS not in header  # eval.csv: summary columns only
    assert ckpt.read(out / "checkpoints" / "last.npz")[0]["evals"][-1][EPISODE_RETURNS] == final
    # a checkpoint written before per-episode returns were kept loads; what needs them is None
    old = tmp_path / "old"
    shutil.copytree(out, old)
    t = open_run(old)
    t.evals = [{k: v for k, v in e.items() if k != EPISODE_RETURNS} for e in t.evals]
    t.save("last")
    reopened = open_run(old)
    assert reopened.summary()["failed_episode_fraction"] is None
    assert reopened.summary()["ends_solved"] is s["ends_solved"]
    # a run that solves, falls and holds again: summary and figure show it
    reopened.evals = [{"env_steps": 80 * (i + 1), "time": 0.0, "eval_return_mean": m, "eval_return_std": 20.0,
                       EPISODE_RETURNS: [m, m]} for i, m in enumerate([100.0, 480.0, 150.0, 490.0, 500.0])]
    reopened.write_logs()
    s = json.loads((old / "summary.json").read_text())
    assert (s["stably_solved_at"], s["worst_return_after_solved"], s["ends_solved"]) == (320, 150.0, True)
    assert s["solved_fraction_after_first"] == 0.75 and s["failed_episode_fraction"] == 0.0
    assert (old / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
