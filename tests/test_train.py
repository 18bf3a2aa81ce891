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
from pathwise.train import NonFiniteError, Trainer, make_learner, resume, train

ENV = "CartPole-v1"
SMALL = {"num_envs": 2, "hidden": (16,), "value_hidden": (16,), "value_steps": 2}
STEPS, EVAL_EVERY = 320, 80  # the half run stops on an evaluation boundary, as a checkpoint does


def _rows(path, drop=("time", "steps_per_s")):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


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
    evals = _rows(out / "eval.csv")
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
    _, resumed = resume(half, STEPS, quiet=True)
    assert _rows(half / "metrics.csv") == _rows(out / "metrics.csv")
    assert _rows(half / "eval.csv") == _rows(out / "eval.csv")
    assert resumed["final_return_mean"] == summary["final_return_mean"]
    _, la = ckpt.read(out / "checkpoints" / "last.npz")
    _, lb = ckpt.read(half / "checkpoints" / "last.npz")
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


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
    assert pw.load(out, quiet=True).num_timesteps == trainer.learner.env_steps


class _PoisonAfter:
    """Wrap a learner so that every iteration after the first writes NaN into its parameters."""

    def __init__(self, learner, poison_from=1):
        self.inner, self.calls, self.poison_from = learner, 0, poison_from

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_iteration(self):
        metrics = self.inner.train_iteration()
        self.calls += 1
        if self.calls > self.poison_from:
            st = self.inner.get_state()
            self.inner.state = st._replace(policy=jax.tree.map(
                lambda x: x * jnp.nan if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating) else x,
                st.policy))
        return metrics

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, s):
        self.inner.set_state(s)

    @property
    def env_steps(self):
        return self.inner.env_steps

    @env_steps.setter
    def env_steps(self, v):
        self.inner.env_steps = v


def test_nonfinite_updates_are_skipped_counted_then_stop_with_advice(tmp_path):
    from pathwise.train import build_config
    from pathwise.algorithms import get

    cfg, _ = build_config(get("reinforce"), ENV, overrides=SMALL)
    learner = _PoisonAfter(make_learner("reinforce", ENV, cfg, 0))
    trainer = Trainer(learner, out=tmp_path, eval_every=10, eval_episodes=1, quiet=True)
    with pytest.raises(NonFiniteError, match=r"NaN parameters in 3 consecutive.*learning rate.*float64"):
        trainer.run(10_000)
    assert trainer.counters.nonfinite_iterations == 3 and trainer.counters.iterations == 1
    meta, leaves = ckpt.read(tmp_path / "checkpoints" / "last.npz")
    assert all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.floating))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(learner.get_state().policy)
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
    (["train", "reinforce", "--env", ENV, "--set", "lr=fast"], "Config key 'lr': cannot use 'fast'"),
    (["train", "reinforce", "--env", ENV, "--set", "learning_rate=1"], r"Unknown reinforce config key\(s\) \['learning_rate'\]"),
    (["train", "reinforce", "--env", ENV, "--set", "lr"], "--set expects KEY=VALUE"),
    (["evaluate", "no/such/run"], "no/such/run does not exist: pass a run directory"),
    (["train", "--resume", "no/such/run"], "not a pathwise run directory"),
    (["train", "reinforce", "--env", ENV, "--config", "missing.toml"], "--config missing.toml: no such file"),
])
def test_cli_bad_input_gets_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_corrupt_and_foreign_checkpoints(full_run, tmp_path, capsys):
    out, _, _ = full_run
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "checkpoints" / "best.npz").write_bytes(b"\x00garbage")
    assert main(["evaluate", str(bad)]) == 1
    assert "corrupt or truncated" in capsys.readouterr().err
    foreign = tmp_path / "foreign.npz"
    ckpt.save(foreign, {"w": jnp.zeros(3)}, {"algorithm": "reinforce", "env_id": ENV, "seed": 0,
                                             "config": ckpt.config_to_dict(make_learner(
                                                 "reinforce", ENV, pw.algorithms.get("reinforce").Config(**SMALL),
                                                 0).config)})
    with pytest.raises(ckpt.CheckpointError, match="incompatible"):
        pw.load(foreign, quiet=True)
