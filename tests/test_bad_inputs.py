"""A table of bad inputs and faults (issue 13): each is refused early with a clear message, or behaves correctly.

Every case names what it expects: a return code and a regex of the message for the command line (``main(argv)``
in-process), an exception type and a regex for the Python API and for checkpoints (random bytes, truncated,
tampered metadata, NaN parameters, wrong dtypes). The kinds the issue lists are all here: what used to be
*silently wrong* (an input accepted and turned into something else), *unclear* (a traceback, or a message about
something else) and *crashes*. Messages say what was wrong, the value, and the fix. A refused command writes
nothing: every ``train`` case with ``--out`` checks that the directory was not created.
"""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise import checkpoint as ckpt
from pathwise import config as cfg_mod
from pathwise import control, registry
from pathwise.cli import main

#: A tiny REINFORCE run on CartPole: fast to build, fast to train.
TINY = ["--quiet", "--eval-episodes", "1", "--no-preset", "--set", "hidden=8", "num_envs=2", "value_hidden=8",
        "value_steps=1"]
TINY_KW = dict(hidden=(8,), num_envs=2, value_hidden=(8,), value_steps=1)
REINFORCE = ["train", "reinforce", "--env", "CartPole-v1", "--steps", "60"]
DDPG = ["train", "ddpg", "--env", "Pendulum-v1", "--steps", "60", "--no-preset", "--quiet"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A finished tiny run directory, an untrained agent and its saved checkpoint, shared by every case."""
    root = tmp_path_factory.mktemp("bad_inputs")
    run = root / "run"
    assert main([*REINFORCE, "--out", str(run), *TINY]) == 0
    agent = pw.make("reinforce", env="CartPole-v1", seed=0, **TINY_KW)
    good = agent.save(root / "good.npz")
    (root / "a_file").write_text("not a folder")
    return {"root": root, "run": run, "agent": agent, "good": good}


def _fill(argv: list[str], ctx: dict, tmp) -> list[str]:
    return [a.format(run=ctx["run"], tmp=tmp, file=ctx["root"] / "a_file") for a in argv]


# --------------------------------------------------------------------------- the command line

#: (id, argv, return code, regex of stderr). ``{tmp}`` is a fresh folder, ``{run}`` the finished run,
#: ``{file}`` an existing plain file. A train case's ``--out {tmp}/out`` must not exist afterwards.
CLI_CASES = [
    # commands
    ("unknown-command", ["frobnicate"], 2, r"unknown command 'frobnicate'\. Commands: train"),
    ("list-extra-args", ["list", "extra"], 2, r"list takes no arguments, got 'extra'; run `pathwise list`"),
    ("unknown-algorithm", ["train", "ppo", "--env", "CartPole-v1"], 2, r"Unknown algorithm 'ppo'\. Available: bptt"),
    ("empty-algorithm", ["train", "", "--env", "CartPole-v1"], 2, r"Unknown algorithm ''\. Available"),
    # --env
    ("env-typo", ["train", "reinforce", "--env", "CartPol-v1"], 2, r"Unknown environment id 'CartPol-v1'\. Did you "
                                                                   r"mean CartPole-v1"),
    ("env-empty", ["train", "reinforce", "--env", ""], 2, r"Unknown environment id ''.*pathwise list"),
    ("env-unknown-system", ["train", "bptt", "--env", "pathwise/Nope-v0"], 2, r"Unknown environment id "
                                                                               r"'pathwise/Nope-v0'"),
    ("env-discrete-for-ddpg", ["train", "ddpg", "--env", "CartPole-v1"], 2, r"ddpg needs continuous \(Box\) "
                                                                             r"actions.*svg0-discrete"),
    ("env-continuous-for-qac", ["train", "qac", "--env", "Pendulum-v1"], 2, r"qac needs discrete actions"),
    ("env-no-system-for-bptt", ["train", "bptt", "--env", "CartPole-v1", "--set", "horizon=5"], 2,
     r"bptt .*needs a pathwise System|bptt.*CartPole"),
    # --steps
    ("steps-negative", [*REINFORCE, "--steps", "-5", "--out", "{tmp}/out", *TINY], 2,
     r"--steps -5: the budget must be a positive number of environment steps"),
    ("steps-zero", [*REINFORCE, "--steps", "0", "--out", "{tmp}/out", *TINY], 2, r"--steps 0: the budget must be"),
    ("steps-text", [*REINFORCE, "--steps", "many", "--out", "{tmp}/out", *TINY], 2, r"--steps"),
    ("steps-fraction", [*REINFORCE, "--steps", "1.5", "--out", "{tmp}/out", *TINY], 2, r"--steps"),
    # --seed / --seeds
    ("seed-huge", [*REINFORCE, "--seed", "99999999999999999999", "--out", "{tmp}/out", *TINY], 2,
     r"--seed 99999999999999999999: seeds must be whole numbers in \[0, 2\*\*31 - 10000\).*e\.g\. --seed 0"),
    ("seed-negative", [*REINFORCE, "--seed", "-11", "--out", "{tmp}/out", *TINY], 2, r"--seed -11: seeds must be"),
    ("seed-at-limit", [*REINFORCE, "--seed", str(2**31 - 10_000), "--out", "{tmp}/out", *TINY], 2, r"--seed \d+: "),
    ("seed-text", [*REINFORCE, "--seed", "abc", "--out", "{tmp}/out", *TINY], 2, r"--seed"),
    ("seed-fraction", [*REINFORCE, "--seed", "1.5", "--out", "{tmp}/out", *TINY], 2, r"--seed"),
    ("seeds-zero", [*REINFORCE, "--seeds", "0", "--out", "{tmp}/out", *TINY], 2, r"--seeds 0: train at least one"),
    ("seeds-negative", [*REINFORCE, "--seeds", "-2", "--out", "{tmp}/out", *TINY], 2, r"--seeds -2: train at least"),
    ("seeds-past-seed-range", [*REINFORCE, "--seed", str(2**31 - 10_002), "--seeds", "4", "--out", "{tmp}/out",
                               *TINY], 2, r"--seed \d+: seeds must be whole numbers"),
    # evaluation options: 0 is not 'the default'
    ("eval-every-zero", [*REINFORCE, "--eval-every", "0", "--out", "{tmp}/out", *TINY], 2,
     r"--eval-every 0: must be >= 1 \(omit it for the default\)"),
    ("eval-every-negative", [*REINFORCE, "--eval-every", "-10", "--out", "{tmp}/out", *TINY], 2, r"--eval-every -10"),
    ("eval-episodes-zero", [*REINFORCE, "--out", "{tmp}/out", *TINY, "--eval-episodes", "0"], 2,
     r"--eval-episodes 0: must be >= 1"),
    ("eval-episodes-negative", [*REINFORCE, "--out", "{tmp}/out", *TINY, "--eval-episodes", "-3"], 2,
     r"--eval-episodes -3: must be >= 1"),
    ("host-devices-zero", [*REINFORCE, "--host-devices", "0", "--out", "{tmp}/out", *TINY], 2,
     r"--host-devices 0: must be >= 1"),
    # --set
    ("set-hidden-zero", [*REINFORCE, "--out", "{tmp}/out", *TINY, "hidden=0"], 2,
     r"hidden=\(0,\) must list one or more layer sizes >= 1"),
    ("set-hidden-negative", [*REINFORCE, "--out", "{tmp}/out", *TINY, "hidden=-5,64"], 2,
     r"hidden=\(-5, 64\) must list one or more layer sizes >= 1"),
    ("set-hidden-empty", [*REINFORCE, "--out", "{tmp}/out", *TINY, "hidden="], 2, r"hidden=\(\) must list one or "
                                                                                  r"more"),
    ("set-hidden-word", [*REINFORCE, "--out", "{tmp}/out", *TINY, "hidden=big"], 2, r"Config key 'hidden': cannot "
                                                                                    r"use 'big'"),
    ("set-hidden-fraction", [*REINFORCE, "--out", "{tmp}/out", *TINY, "hidden=8.5"], 2,
     r"Config key 'hidden': cannot use '8\.5' \(must be an integer\)"),
    ("set-value-hidden-zero", [*REINFORCE, "--out", "{tmp}/out", *TINY, "value_hidden=0"], 2,
     r"value_hidden=\(0,\) must list"),
    ("set-int-fraction", [*REINFORCE, "--out", "{tmp}/out", *TINY, "num_envs=2.5"], 2,
     r"Config key 'num_envs': cannot use '2\.5' \(must be an integer\)"),
    ("set-int-exponent-fraction", [*DDPG, "--out", "{tmp}/out", "--set", "batch_size=2.5e0"], 2,
     r"Config key 'batch_size': cannot use '2\.5e0' \(must be an integer\)"),
    ("set-int-overflow", [*DDPG, "--out", "{tmp}/out", "--set", "batch_size=1e400"], 2,
     r"Config key 'batch_size': cannot use '1e400' \(must be a finite whole number\)"),
    ("set-int-zero", [*DDPG, "--out", "{tmp}/out", "--set", "batch_size=0"], 2, r"batch_size=0 must be >= 1"),
    ("set-int-word", [*REINFORCE, "--out", "{tmp}/out", *TINY, "num_envs=two"], 2, r"Config key 'num_envs': cannot "
                                                                                   r"use 'two'"),
    ("set-float-inf", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=inf"], 2, r"Config key 'actor_lr': cannot use 'inf' "
                                                                              r"\(must be a finite number\)"),
    ("set-float-minus-inf", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=-inf"], 2, r"'actor_lr': cannot use '-inf'"),
    ("set-float-nan", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=nan"], 2, r"'actor_lr': cannot use 'nan' \(must be a "
                                                                              r"finite number\)"),
    ("set-float-overflow", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=1e400"], 2, r"'actor_lr': cannot use '1e400'"),
    ("set-float-negative", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=-1"], 2, r"actor_lr=-1\.0 must be > 0"),
    ("set-float-zero", [*REINFORCE, "--out", "{tmp}/out", *TINY, "value_lr=0"], 2, r"value_lr=0\.0 must be > 0"),
    ("set-float-word", [*REINFORCE, "--out", "{tmp}/out", *TINY, "actor_lr=fast"], 2, r"'actor_lr': cannot use 'fast'"),
    ("set-log-std-inf", [*REINFORCE, "--out", "{tmp}/out", *TINY, "log_std_init=inf"], 2, r"'log_std_init': "
                                                                                           r"cannot use 'inf'"),
    ("set-gamma-above-one", [*REINFORCE, "--out", "{tmp}/out", *TINY, "gamma=2"], 2, r"gamma=2\.0 must be in "
                                                                                     r"\(0, 1\]"),
    ("set-gamma-zero", [*REINFORCE, "--out", "{tmp}/out", *TINY, "gamma=0"], 2, r"gamma=0\.0 must be in \(0, 1\]"),
    ("set-tau-above-one", [*DDPG, "--out", "{tmp}/out", "--set", "tau=2"], 2, r"tau=2\.0 must be in \(0, 1\]"),
    ("set-actor-lr-inf", [*DDPG, "--out", "{tmp}/out", "--set", "actor_lr=inf"], 2, r"'actor_lr': cannot use 'inf'"),
    ("set-entropy-negative", [*REINFORCE, "--out", "{tmp}/out", *TINY, "entropy_coef=-1"], 2,
     r"entropy_coef=-1\.0 must be >= 0"),
    ("set-literal", [*REINFORCE, "--out", "{tmp}/out", *TINY, "baseline=magic"], 2,
     r"'baseline': cannot use 'magic' \(must be one of"),
    ("set-bool-word", [*REINFORCE, "--out", "{tmp}/out", *TINY, "normalize_advantages=maybe"], 2,
     r"'normalize_advantages': cannot use 'maybe' \(must be true or false\)"),
    ("set-float64-number", [*REINFORCE, "--out", "{tmp}/out", *TINY, "float64=2"], 2,
     r"'float64': cannot use '2' \(must be true or false\)"),
    ("set-unknown-key", [*REINFORCE, "--out", "{tmp}/out", *TINY, "lrr=1"], 2,
     r"Unknown reinforce config key\(s\) \['lrr'\].*Valid keys:.*\bactor_lr\b"),
    ("set-key-of-another-algorithm", [*REINFORCE, "--out", "{tmp}/out", *TINY, "batch_size=8"], 2,
     r"Unknown reinforce config key\(s\) \['batch_size'\]"),
    ("set-no-equals", [*REINFORCE, "--out", "{tmp}/out", *TINY, "lr"], 2, r"--set expects KEY=VALUE, got 'lr'"),
    ("set-empty-key", [*REINFORCE, "--out", "{tmp}/out", *TINY, "=5"], 2, r"Unknown reinforce config key\(s\) \[''\]"),
    ("flag-unknown-option", [*REINFORCE, "--out", "{tmp}/out", *TINY, "--hiden", "3"], 2, r"hiden"),
    ("flag-bad-value", [*REINFORCE, "--out", "{tmp}/out", "--actor-lr", "fast", *TINY], 2, r"--actor-lr"),
    # --config
    ("config-missing", [*REINFORCE, "--config", "{tmp}/no_such.toml", "--out", "{tmp}/out", *TINY], 2,
     r"--config .*no_such\.toml: no such file"),
    ("config-is-folder", [*REINFORCE, "--config", "{tmp}", "--out", "{tmp}/out", *TINY], 2, r"--config .*: no such "
                                                                                            r"file"),
    # --out
    ("out-is-a-file", [*REINFORCE, "--out", "{file}", *TINY], 1, r"--out .*a_file is a file, not a folder; choose a "
                                                                 r"folder path"),
    ("out-under-a-file", [*REINFORCE, "--out", "{file}/run", *TINY], 1, r"--out .*a_file/run: .*a_file is a file, so "
                                                                        r"nothing can be written under it"),
    ("out-existing-run", [*REINFORCE, "--out", "{run}", *TINY], 2, r"already holds a run; continue it with `pathwise "
                                                                   r"train --resume .*--overwrite"),
    # evaluate
    ("evaluate-missing", ["evaluate", "{tmp}/no/such/run"], 2, r"does not exist: pass a run directory"),
    ("evaluate-episodes-zero", ["evaluate", "{run}", "--episodes", "0"], 2, r"--episodes 0: evaluate at least one "
                                                                            r"episode"),
    ("evaluate-episodes-negative", ["evaluate", "{run}", "--episodes", "-2"], 2, r"--episodes -2: evaluate at least"),
    ("evaluate-seed-negative", ["evaluate", "{run}", "--seed", "-1"], 2, r"--seed -1: the first episode's seed must "
                                                                         r"be"),
    ("evaluate-render-suffix", ["evaluate", "{run}", "--render", "{tmp}/x.txt"], 2, r"--render .*x\.txt: use a \.gif, "
                                                                                    r"\.mp4 or \.png"),
    ("evaluate-render-under-file", ["evaluate", "{run}", "--render", "{file}/x.gif"], 1,
     r"--render .*a_file/x\.gif: .*a_file is a file, so nothing can be written under it"),
    ("evaluate-render-is-folder", ["evaluate", "{run}", "--render", "{tmp}/d.gif"], 1, r"--render .*d\.gif is a "
                                                                                       r"folder"),
    ("evaluate-checkpoint-choice", ["evaluate", "{run}", "--checkpoint", "first"], 2, r"--checkpoint"),
    ("evaluate-folder-not-a-run", ["evaluate", "{tmp}"], 2, r"is not a pathwise run directory \(no config\.json\)"),
    ("evaluate-text-file", ["evaluate", "{file}"], 1, r"a_file is corrupt or truncated, or not a pathwise checkpoint "
                                                      r"at all: it is not an \.npz \(zip\) archive"),
    # resume
    ("resume-missing", ["train", "--resume", "{tmp}/no/such/run"], 2, r"is not a pathwise run directory"),
    ("resume-steps-negative", ["train", "--resume", "{run}", "--steps", "-5"], 2, r"steps must be positive, got -5"),
    ("resume-steps-zero", ["train", "--resume", "{run}", "--steps", "0"], 2, r"steps must be positive, got 0"),
    ("resume-steps-text", ["train", "--resume", "{run}", "--steps", "x"], 2, r"--steps"),
    ("resume-extra-option", ["train", "--resume", "{run}", "--seed", "3"], 2, r"--seed"),
    # solve
    ("solve-unknown-method", ["solve", "ilqrr"], 2, r"unknown method 'ilqrr'.*Did you mean 'ilqr'"),
    ("solve-lqr-nonlinear", ["solve", "lqr", "--system", "pendulum"], 2, r"Pendulum is not a LinearSystem; LQR needs "
                                                                         r"linear dynamics"),
    ("solve-horizon-negative", ["solve", "ilqr", "--horizon", "-5"], 2, r"--horizon -5: the horizon is a number of "
                                                                        r"steps >= 1"),
    ("solve-horizon-zero", ["solve", "lqr", "--horizon", "0"], 2, r"--horizon 0"),
    ("solve-horizon-fraction", ["solve", "ilqr", "--horizon", "10.5"], 2, r"--horizon"),
    ("solve-iterations-zero", ["solve", "ilqr", "--iterations", "0"], 2, r"--iterations 0: must be >= 1"),
    ("solve-mpc-horizon-zero", ["solve", "mpc", "--mpc-horizon", "0"], 2, r"--mpc-horizon 0: must be >= 1"),
    ("solve-steps-negative", ["solve", "mpc", "--steps", "-1"], 2, r"--steps -1: must be >= 0"),
    ("solve-episodes-negative", ["solve", "mpc", "--episodes", "-1"], 2, r"--episodes -1: must be >= 0"),
    ("solve-unknown-system", ["solve", "ilqr", "--system", "pendulm"], 2, r"Unknown system 'pendulm'"),
    ("solve-x0-length", ["solve", "ilqr", "--system", "pendulum", "--x0", "1", "2", "3", "--horizon", "5"], 2,
     r"--x0 needs 2 numbers for Pendulum, got 3"),
    ("solve-optimizer", ["solve", "shooting", "--optimizer", "sgd"], 2, r"--optimizer"),
    ("solve-learning-rate-negative", ["solve", "shooting", "--optimizer", "adam", "--learning-rate", "-1",
                                      "--horizon", "5", "--iterations", "2"], 2,
     r"learning_rate must be a finite number > 0.*got -1\.0"),
    # estimators
    ("estimators-unknown-study", ["estimators", "gauss"], 2, r"gauss"),
]


@pytest.mark.parametrize("argv, rc, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_input_clearly(argv, rc, message, ctx, tmp_path, capsys):
    (tmp_path / "d.gif").mkdir()
    argv = _fill(argv, ctx, tmp_path)
    before = sorted(p.name for p in ctx["run"].rglob("*"))
    config_before = (ctx["run"] / "config.json").read_bytes()
    assert main(argv) == rc
    captured = capsys.readouterr()
    assert re.search(message, captured.err), captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out").exists(), "a refused command created its run directory"
    assert sorted(p.name for p in ctx["run"].rglob("*")) == before  # nothing written into the finished run
    assert (ctx["run"] / "config.json").read_bytes() == config_before


# --------------------------------------------------------------------------- config files

#: (id, file name, contents, regex): a --config file whose contents are refused, naming the file.
CONFIG_FILES = [
    ("json-list", "c.json", "[1, 2]", r"--config .*c\.json must hold a table of KEY = VALUE pairs, not a list"),
    ("json-string", "c.json", '"lr"', r"--config .*c\.json must hold a table.*not a str"),
    ("json-null", "c.json", "null", r"--config .*c\.json must hold a table.*not a NoneType"),
    ("json-number", "c.json", "3", r"--config .*c\.json must hold a table.*not a int"),
    ("json-malformed", "c.json", "{bad", r"--config .*c\.json is not valid JSON \(Expecting property name"),
    ("json-truncated", "c.json", '{"lr": 0.1', r"--config .*c\.json is not valid JSON"),
    ("json-empty", "c.json", "", r"--config .*c\.json is not valid JSON"),
    ("json-unknown-key", "c.json", '{"learning_rate": 0.1}', r"there is no `learning_rate`; the algorithm has one optimizer per network.*actor_lr, value_lr \(use actor_lr = \.\.\. in .*c\.json\)"),
    ("json-wrong-type", "c.json", '{"hidden": "x"}', r"Config key 'hidden': cannot use 'x'"),
    ("json-hidden-number", "c.json", '{"hidden": 8}', r"Config key 'hidden': cannot use 8 \(must be a list of values"),
    ("json-float-for-int", "c.json", '{"num_envs": 2.5}', r"Config key 'num_envs': cannot use 2\.5 \(must be an "
                                                          r"integer\)"),
    ("json-bool-for-int", "c.json", '{"num_envs": true}', r"Config key 'num_envs': cannot use True"),
    ("json-bool-for-float", "c.json", '{"actor_lr": true}', r"Config key 'actor_lr': cannot use True \(must be a number, not a "
                                                      r"boolean\)"),
    ("json-nan", "c.json", '{"actor_lr": NaN}', r"Config key 'actor_lr': cannot use nan \(must be a finite number\)"),
    ("json-infinity", "c.json", '{"actor_lr": Infinity}', r"Config key 'actor_lr': cannot use inf"),
    ("json-nested", "c.json", '{"actor_lr": {"value": 1}}', r"Config key 'actor_lr': cannot use \{'value': 1\}"),
    ("json-hidden-nested", "c.json", '{"hidden": [[8]]}', r"Config key 'hidden': cannot use \[\[8\]\]"),
    ("json-invalid-value", "c.json", '{"gamma": 1.5}', r"gamma=1\.5 must be in \(0, 1\]"),
    ("toml-malformed", "c.toml", "hidden = [8\n", r"--config .*c\.toml is not valid TOML.*use KEY = VALUE lines"),
    ("toml-no-value", "c.toml", "lr =\n", r"--config .*c\.toml is not valid TOML"),
    ("toml-unknown-key", "c.toml", "lrr = 1\n", r"Unknown reinforce config key\(s\) \['lrr'\]"),
    ("toml-table", "c.toml", "[reinforce]\nlr = 1\n", r"Unknown reinforce config key\(s\) \['reinforce'\]"),
    ("toml-binary", "c.toml", "\x00\x01\x02", r"--config .*c\.toml is not valid TOML"),
]


@pytest.mark.parametrize("name, text, message", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES])
def test_config_files_are_refused_naming_the_file(name, text, message, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(text)
    assert main([*REINFORCE, "--config", str(path), "--out", str(tmp_path / "out"), *TINY]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the Python API

def _register_and_make(env_id: str, **fields):
    registry.unregister(env_id)
    try:
        registry.register(env_id, **fields)
        return pw.make("mbrl", env=env_id, hidden=(8,), model_hidden=(8,))
    finally:
        registry.unregister(env_id)


def _pendulum_twin():
    """A Gymnasium id pathwise knows nothing about, with Pendulum's spaces."""
    import gymnasium as gym

    if "BadInputsPendulum-v0" not in gym.registry:
        gym.register("BadInputsPendulum-v0", entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
                     max_episode_steps=200)
    return "BadInputsPendulum-v0"


P = pw.systems.Pendulum()
X0 = jnp.array([jnp.pi, 0.0])
EYE2, B21, EYE1 = jnp.eye(2), jnp.ones((2, 1)), jnp.eye(1)

#: (id, call(ctx, tmp), exception type, regex of the message).
API_CASES = [
    # pw.make
    ("make-env-none", lambda c, t: pw.make("reinforce", env=None), ValueError, r"pass the environment as env= \(a "
                                                                               r"Gymnasium id.*got env=None"),
    ("make-env-number", lambda c, t: pw.make("reinforce", env=5), ValueError, r"env=5: an environment must be a "
                                                                             r"Gymnasium id such as 'Pendulum-v1'"),
    ("make-env-typo", lambda c, t: pw.make("reinforce", env="CartPol-v1"), ValueError, r"Did you mean CartPole-v1"),
    ("make-algo-none", lambda c, t: pw.make(None, env="CartPole-v1"), ValueError, r"Unknown algorithm None\. "
                                                                                  r"Available"),
    ("make-algo-unknown", lambda c, t: pw.make("ppo", env="CartPole-v1"), ValueError, r"Unknown algorithm 'ppo'"),
    ("make-seed-negative", lambda c, t: pw.make("reinforce", env="CartPole-v1", seed=-1), ValueError,
     r"seed=-1 must be a whole number in \[0, 2\*\*31 - 10000\)"),
    ("make-seed-fraction", lambda c, t: pw.make("reinforce", env="CartPole-v1", seed=1.5), ValueError,
     r"seed=1\.5 must be a whole number"),
    ("make-seed-text", lambda c, t: pw.make("reinforce", env="CartPole-v1", seed="x"), ValueError,
     r"seed='x' must be a whole number"),
    ("make-seed-huge", lambda c, t: pw.make("reinforce", env="CartPole-v1", seed=10**20), ValueError,
     r"seed=100000000000000000000 must be"),
    ("make-unknown-key", lambda c, t: pw.make("reinforce", env="CartPole-v1", lrr=1), ValueError,
     r"Unknown reinforce config key\(s\) \['lrr'\]"),
    ("make-hidden-int", lambda c, t: pw.make("reinforce", env="CartPole-v1", hidden=0), ValueError,
     r"Config key 'hidden': cannot use 0 \(must be a list of values such as 64,64"),
    ("make-hidden-fraction", lambda c, t: pw.make("reinforce", env="CartPole-v1", hidden=(8.5,)), ValueError,
     r"Config key 'hidden': cannot use \(8\.5,\) \(must be an integer\)"),
    ("make-lr-text", lambda c, t: pw.make("reinforce", env="CartPole-v1", actor_lr="fast"), ValueError,
     r"Config key 'actor_lr': cannot use 'fast'"),
    ("make-lr-nan", lambda c, t: pw.make("reinforce", env="CartPole-v1", actor_lr=float("nan")), ValueError,
     r"Config key 'actor_lr': cannot use nan \(must be a finite number\)"),
    ("make-eval-every-zero", lambda c, t: pw.make("reinforce", env="CartPole-v1", eval_every=0), ValueError,
     r"eval_every=0 must be a whole number >= 1; e\.g\. eval_every=1000"),
    ("make-eval-every-fraction", lambda c, t: pw.make("reinforce", env="CartPole-v1", eval_every=1.5), ValueError,
     r"eval_every=1\.5 must be a whole number >= 1"),
    ("make-eval-episodes-negative", lambda c, t: pw.make("reinforce", env="CartPole-v1", eval_episodes=-1),
     ValueError, r"eval_episodes=-1 must be a whole number >= 1"),
    ("make-config-list", lambda c, t: pw.make("reinforce", env="CartPole-v1", config=[1]), TypeError,
     r"config must be a reinforce Config, a dict or None, got list"),
    ("make-out-is-file", lambda c, t: pw.make("reinforce", env="CartPole-v1", out=c["root"] / "a_file"), OSError,
     r"out .*a_file is a file, not a folder"),
    ("make-out-existing-run", lambda c, t: pw.make("reinforce", env="CartPole-v1", out=c["run"]), FileExistsError,
     r"already holds a run; continue it"),
    # agent.learn / predict / evaluate / save
    ("learn-fraction", lambda c, t: c["agent"].learn(0.5), ValueError,
     r"learn: total_timesteps must be a positive whole number, got 0\.5: the environment steps to train for; "
     r"e\.g\. agent\.learn\(2_000\)"),
    ("learn-zero", lambda c, t: c["agent"].learn(0), ValueError, r"total_timesteps must be a positive whole number, "
                                                                 r"got 0:"),
    ("learn-negative", lambda c, t: c["agent"].learn(-3), ValueError, r"total_timesteps .* got -3"),
    ("learn-none", lambda c, t: c["agent"].learn(None), ValueError, r"total_timesteps .* got None"),
    ("learn-nan", lambda c, t: c["agent"].learn(float("nan")), ValueError, r"total_timesteps .* got nan"),
    ("learn-inf", lambda c, t: c["agent"].learn(float("inf")), ValueError, r"total_timesteps .* got inf"),
    ("learn-text", lambda c, t: c["agent"].learn("100"), ValueError, r"total_timesteps .* got '100'"),
    ("learn-bool", lambda c, t: c["agent"].learn(True), ValueError, r"total_timesteps .* got True"),
    ("predict-nan", lambda c, t: c["agent"].predict([np.nan] * 4), ValueError, r"predict: the observation contains "
                                                                               r"NaN or inf.*pass a finite"),
    ("predict-inf", lambda c, t: c["agent"].predict([np.inf, 0, 0, 0]), ValueError, r"contains NaN or inf"),
    ("predict-nan-in-batch", lambda c, t: c["agent"].predict([[0, 0, 0, 0], [0, np.nan, 0, 0]]), ValueError,
     r"contains NaN or inf"),
    ("predict-short", lambda c, t: c["agent"].predict([1, 2, 3]), ValueError, r"observation has shape \(3,\), "
                                                                              r"expected \(4,\)"),
    ("predict-3d", lambda c, t: c["agent"].predict(np.zeros((2, 2, 4))), ValueError, r"shape \(2, 2, 4\)"),
    ("predict-none", lambda c, t: c["agent"].predict(None), ValueError, r"observation has shape \(\)"),
    ("predict-text", lambda c, t: c["agent"].predict("abc"), ValueError, r"predict: the observation must be numbers "
                                                                         r"of shape \(4,\).*'abc'"),
    ("predict-dict", lambda c, t: c["agent"].predict({"a": 1}), ValueError, r"predict: the observation must be "
                                                                            r"numbers"),
    ("predict-ragged", lambda c, t: c["agent"].predict([[1, 2, 3, 4], [1, 2]]), ValueError, r"predict: the "
                                                                                           r"observation must be"),
    ("predict-deterministic-text", lambda c, t: c["agent"].predict([0, 0, 0, 0], deterministic="no"), ValueError,
     r"deterministic must be True or False, got 'no'"),
    ("evaluate-zero", lambda c, t: c["agent"].evaluate(0), ValueError, r"episodes=0 must be a whole number >= 1"),
    ("evaluate-negative", lambda c, t: c["agent"].evaluate(-1), ValueError, r"episodes=-1 must be"),
    ("evaluate-fraction", lambda c, t: c["agent"].evaluate(1.5), ValueError, r"episodes=1\.5 must be a whole number"),
    ("save-under-a-file", lambda c, t: c["agent"].save(c["root"] / "a_file" / "x.npz"), OSError,
     r"save: .*a_file/x\.npz: .*a_file is a file, so nothing can be written under it"),
    ("save-onto-a-folder", lambda c, t: (t / "x.npz").mkdir() or c["agent"].save(t / "x.npz"), OSError, r"is a folder; give a file name"),
    # pw.load
    ("load-missing", lambda c, t: pw.load(t / "nope.npz"), ckpt.CheckpointError, r"nope\.npz does not exist"),
    ("load-folder-not-a-run", lambda c, t: pw.load(t), FileNotFoundError, r"is not a pathwise run directory"),
    ("load-text-file", lambda c, t: pw.load(c["root"] / "a_file"), ckpt.CheckpointError,
     r"a_file is corrupt or truncated, or not a pathwise checkpoint at all: it is not an \.npz"),
    # systems
    ("system-reset-int", lambda c, t: P.reset(0), ValueError, r"Pendulum\.reset: key must be a JAX PRNG key such as "
                                                              r"jax\.random\.key\(0\), got 0"),
    ("system-reset-none", lambda c, t: P.reset(None), ValueError, r"reset: key must be a JAX PRNG key"),
    ("system-reset-float-array", lambda c, t: P.reset(jnp.zeros(2)), ValueError, r"reset: key must be a JAX PRNG"),
    ("system-step-state-shape", lambda c, t: P.step(jnp.zeros(3), jnp.zeros(1)), ValueError,
     r"Pendulum: state must have shape \(2,\), got \(3,\)"),
    ("system-step-action-shape", lambda c, t: P.step(jnp.zeros(2), jnp.zeros(2)), ValueError,
     r"action must have shape \(1,\), got \(2,\)"),
    ("system-step-scalar-action", lambda c, t: P.step(jnp.zeros(2), 0.5), ValueError, r"Wrap a scalar as "
                                                                                      r"jnp\.array\(\[a\]\)"),
    ("system-step-noise-shape", lambda c, t: P.step(jnp.zeros(2), jnp.zeros(1), jnp.zeros(3)), ValueError,
     r"noise must have the state's shape \(2,\)"),
    ("system-param-text", lambda c, t: pw.systems.Pendulum(g="x"), ValueError, r"parameter g='x' must be a finite "
                                                                               r"number; e\.g\. Pendulum\(g=10\.0\)"),
    ("system-param-nan", lambda c, t: pw.systems.Pendulum(g=float("nan")), ValueError, r"parameter g=nan must be a "
                                                                                       r"finite number"),
    ("system-mass-zero", lambda c, t: pw.systems.Pendulum(m=0.0), ValueError, r"m=0\.0 must be > 0"),
    ("system-length-negative", lambda c, t: pw.systems.Pendulum(l=-1.0), ValueError, r"l=-1\.0 must be > 0"),
    ("system-noise-negative", lambda c, t: pw.systems.Pendulum(noise_std=-1.0), ValueError,
     r"noise_std=-1\.0 must be >= 0"),
    ("systems-make-none", lambda c, t: pw.systems.make(None), ValueError, r"name must be a system id or short name"),
    ("systems-make-typo", lambda c, t: pw.systems.make("pendulm"), ValueError, r"Unknown system 'pendulm'"),
    ("systems-make-unknown-parameter", lambda c, t: pw.systems.make("pendulum", gg=1.0), ValueError,
     r"systems\.make\('pendulum', \.\.\.\):.*'gg'.*pass only the system's own parameters"),
    ("linear-a-vector", lambda c, t: pw.systems.LinearSystem(jnp.zeros(2), B21), ValueError,
     r"A must be a square \(n, n\) matrix, got shape \(2,\)"),
    ("linear-b-shape", lambda c, t: pw.systems.LinearSystem(EYE2, jnp.ones((3, 1))), ValueError,
     r"B must have shape \(n, m\) with n = 2"),
    ("linear-a-nan", lambda c, t: pw.systems.LinearSystem(jnp.array([[jnp.nan]]), EYE1), ValueError,
     r"LinearSystem: A contains NaN or inf"),
    ("linear-horizon-zero", lambda c, t: pw.systems.LinearSystem(EYE1, EYE1, horizon=0), ValueError,
     r"horizon=0 must be a whole number of steps >= 1"),
    ("linear-horizon-fraction", lambda c, t: pw.systems.LinearSystem(EYE1, EYE1, horizon=2.5), ValueError,
     r"horizon=2\.5 must be a whole number"),
    ("linear-init-scale-negative", lambda c, t: pw.systems.LinearSystem(EYE1, EYE1, init_scale=-1.0), ValueError,
     r"init_scale=-1\.0 must be >= 0"),
    ("to-gymnasium-not-a-system", lambda c, t: pw.systems.to_gymnasium(5), TypeError, r"to_gymnasium expects a "
                                                                                      r"pathwise System, got int"),
    # control
    ("ilqr-horizon-fraction", lambda c, t: control.ilqr(P, X0, 10.5), ValueError,
     r"ilqr: the horizon must be a whole number of steps >= 1 \(or actions0 an array of shape \(T, m\)\), got 10\.5"),
    ("ilqr-horizon-zero", lambda c, t: control.ilqr(P, X0, 0), ValueError, r"ilqr: the horizon must be >= 1, got 0"),
    ("ilqr-horizon-bool", lambda c, t: control.ilqr(P, X0, True), ValueError, r"ilqr: the horizon must be a whole "
                                                                              r"number"),
    ("ilqr-x0-shape", lambda c, t: control.ilqr(P, jnp.zeros(3), 10), ValueError, r"x0 must be a Pendulum state of "
                                                                                  r"shape \(2,\)"),
    ("ilqr-x0-nan", lambda c, t: control.ilqr(P, jnp.array([jnp.nan, 0.0]), 10), ValueError, r"x0 contains NaN"),
    ("ilqr-actions-shape", lambda c, t: control.ilqr(P, X0, jnp.zeros((10, 2))), ValueError,
     r"actions0 must have shape \(T, 1\) for Pendulum"),
    ("ilqr-actions-nan", lambda c, t: control.ilqr(P, X0, jnp.full((10, 1), jnp.nan)), ValueError,
     r"actions0 contains NaN"),
    ("ilqr-not-a-system", lambda c, t: control.ilqr(5, X0, 10), TypeError, r"Expected a pathwise System or a "
                                                                           r"Problem"),
    ("ilqr-max-iterations-zero", lambda c, t: control.ilqr(P, X0, 10, max_iterations=0), ValueError,
     r"max_iterations must be >= 1"),
    ("ilqr-alphas", lambda c, t: control.ilqr(P, X0, 10, alphas=(2.0,)), ValueError, r"alphas must be in \(0, 1\]"),
    ("shooting-horizon-fraction", lambda c, t: control.shooting(P, X0, 10.5), ValueError,
     r"shooting: the horizon must be a whole number"),
    ("shooting-learning-rate-negative", lambda c, t: control.shooting(P, X0, 5, optimizer="adam", learning_rate=-1.0),
     ValueError, r"shooting: learning_rate must be a finite number > 0 .*got -1\.0"),
    ("shooting-learning-rate-nan", lambda c, t: control.shooting(P, X0, 5, optimizer="adam",
                                                                 learning_rate=float("nan")),
     ValueError, r"learning_rate must be a finite number > 0"),
    ("shooting-optimizer", lambda c, t: control.shooting(P, X0, 5, optimizer="sgd"), ValueError,
     r"optimizer must be 'adam', 'lbfgs' or an optax GradientTransformation, got 'sgd'"),
    ("shooting-x0-nan", lambda c, t: control.shooting(P, X0 * jnp.nan, 5), ValueError, r"x0 contains NaN"),
    ("lqr-q-indefinite", lambda c, t: control.lqr(EYE2, B21, -EYE2, EYE1), ValueError,
     r"Q must be positive semidefinite"),
    ("lqr-q-asymmetric", lambda c, t: control.lqr(EYE2, B21, jnp.array([[1.0, 1.0], [0.0, 1.0]]), EYE1), ValueError,
     r"Q must be symmetric"),
    ("lqr-a-nan", lambda c, t: control.lqr(EYE2 * jnp.nan, B21, EYE2, EYE1), ValueError, r"A contains NaN or inf"),
    ("lqr-r-zero", lambda c, t: control.lqr(EYE2, B21, EYE2, 0 * EYE1), ValueError, r"R must be positive definite"),
    ("lqr-singular-finite", lambda c, t: control.lqr(EYE2, B21, EYE2, 0 * EYE1, horizon=5, Qf=0 * EYE2), ValueError,
     r"the gains are not finite: Q_uu = R \+ B'P B is singular"),
    ("lqr-horizon-fraction", lambda c, t: control.lqr(EYE2, B21, EYE2, EYE1, horizon=2.5), ValueError,
     r"lqr: horizon must be a whole number of steps >= 1.*got 2\.5"),
    ("lqr-horizon-zero", lambda c, t: control.lqr(EYE2, B21, EYE2, EYE1, horizon=0), ValueError,
     r"horizon must be >= 1, got 0"),
    ("lqr-text-matrix", lambda c, t: control.lqr("A", B21, EYE2, EYE1), ValueError, r"lqr: A must be a numeric "
                                                                                    r"matrix"),
    ("lqr-shape-mismatch", lambda c, t: control.lqr(EYE2, jnp.ones((3, 1)), EYE2, EYE1), ValueError,
     r"B must have shape \(n, m\) = \(2, m\)"),
    ("lqr-qf-without-horizon", lambda c, t: control.lqr(EYE2, B21, EYE2, EYE1, Qf=EYE2), ValueError,
     r"Qf, affine terms and x0 need a finite horizon"),
    ("mpc-horizon-zero", lambda c, t: control.MPC(P, horizon=0), ValueError, r"MPC: horizon must be >= 1"),
    ("mpc-horizon-fraction", lambda c, t: control.MPC(P, horizon=2.5), ValueError, r"MPC: horizon must be a whole "
                                                                                   r"number >= 1, got 2\.5"),
    ("mpc-iterations-negative", lambda c, t: control.MPC(P, horizon=5, iterations=-1), ValueError,
     r"iterations and init_iterations must be >= 1"),
    ("mpc-solver", lambda c, t: control.MPC(P, horizon=5, solver="newton"), ValueError, r"unknown solver 'newton'"),
    # registered user functions, checked once on a sample transition
    ("reward-vector", lambda c, t: _register_and_make(_pendulum_twin(), reward=lambda o, a, n: jnp.zeros(2)),
     ValueError, r"The reward function of 'BadInputsPendulum-v0' returns shape \(2,\) on one transition; it must be "
                 r"fn\(obs, action, next_obs\) -> scalar.*overwrite=True"),
    ("reward-calls-float", lambda c, t: _register_and_make(_pendulum_twin(), reward=lambda o, a, n: float(o[0])),
     ValueError, r"The reward function of 'BadInputsPendulum-v0' fails on a sample transition.*no float\(\)"),
    ("reward-wrong-arity", lambda c, t: _register_and_make(_pendulum_twin(), reward=lambda o, a: -jnp.sum(o)),
     ValueError, r"reward function .* fails on a sample transition.*TypeError"),
    ("reward-text", lambda c, t: _register_and_make(_pendulum_twin(), reward=lambda o, a, n: "high"),
     ValueError, r"The reward function of 'BadInputsPendulum-v0'"),
    ("terminated-vector", lambda c, t: _register_and_make(_pendulum_twin(), reward=lambda o, a, n: -jnp.sum(o ** 2),
                                                          terminated=lambda o: o > 1.0),
     ValueError, r"The terminated function of 'BadInputsPendulum-v0' returns shape \(3,\)"),
    ("reward-not-callable", lambda c, t: pw.rewards.register("X-v0", 3.0), ValueError, r"must be callable"),
    ("register-unknown-field", lambda c, t: registry.register("X-v0", rewards=len), ValueError,
     r"unknown field\(s\) \['rewards'\]"),
    ("register-taken", lambda c, t: registry.register("Pendulum-v1", reward=len), ValueError,
     r"'Pendulum-v1' already has a known reward; pass overwrite=True"),
    # configs built in code
    ("config-from-dict-list", lambda c, t: cfg_mod.from_dict(pw.algorithms.get("ddpg").Config, [1]), ValueError,
     r"config must be a table of KEY = VALUE pairs, got list"),
    ("config-record-missing-key", lambda c, t: cfg_mod.from_dict(pw.algorithms.get("ddpg").Config, {"tau": 0.1},
                                                                 source="run config", complete=True),
     ValueError, r"run config lacks the key\(s\) \[.*'actor_lr'.*\]: it is damaged"),
]


@pytest.mark.parametrize("call, exc_type, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses_bad_input_clearly(call, exc_type, message, ctx, tmp_path):
    with pytest.raises(exc_type) as info:
        call(ctx, tmp_path)
    assert re.search(message, str(info.value)), str(info.value)


# --------------------------------------------------------------------------- checkpoints

def _read_npz(path):
    with np.load(path) as data:
        return json.loads(bytes(data["__meta__"]).decode()), {k: data[k] for k in data.files if k != "__meta__"}


def _write_npz(path, meta, arrays, raw_meta=None):
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), np.uint8) if raw_meta is None else raw_meta
    np.savez(path, __meta__=meta_bytes, **arrays)


def _first_weight(arrays):
    return next(k for k, v in arrays.items() if k.startswith("algo/") and v.ndim == 2)


def _edit_arrays(fn):
    def edit(meta, arrays):
        fn(arrays, _first_weight(arrays))
        return meta, arrays

    return edit


def _edit_meta(fn):
    def edit(meta, arrays):
        fn(meta)
        return meta, arrays

    return edit


def _set(key, value):
    return _edit_meta(lambda m: m.__setitem__(key, value))


def _nan(a, k):
    a[k] = a[k].copy()
    a[k].flat[0] = np.nan


#: (id, edit(meta, arrays) -> (meta, arrays), regex): a tampered checkpoint, refused naming the file and the field.
TAMPERED = [
    ("nan-parameter", _edit_arrays(_nan), r"holds NaN in algo/.*pathwise never saves NaN parameters"),
    ("int-parameter", _edit_arrays(lambda a, k: a.__setitem__(k, a[k].astype(np.int32))),
     r"algo/.* has dtype int32, expected float32"),
    ("float64-parameter", _edit_arrays(lambda a, k: a.__setitem__(k, a[k].astype(np.float64))),
     r"has dtype float64, expected float32"),
    ("wrong-shape", _edit_arrays(lambda a, k: a.__setitem__(k, a[k][:, :1])), r"has shape \(8, 1\), expected "
                                                                              r"\(8, 4\)"),
    ("missing-array", _edit_arrays(lambda a, k: a.pop(k)), r"incompatible with algorithm 'reinforce'.*lacks"),
    ("extra-array", _edit_arrays(lambda a, k: a.__setitem__("algo/extra", np.zeros(3))), r"has unexpected "
                                                                                         r"\['algo/extra'\]"),
    ("algorithm-none", _set("algorithm", None), r"was written by algorithm None, not 'reinforce'|Unknown algorithm"),
    ("algorithm-unknown", _set("algorithm", "ppo"), r"\.npz holds a run record pathwise cannot use: Unknown "
                                                    r"algorithm 'ppo'"),
    ("env-unknown", _set("env_id", "Nope-v0"), r"\.npz holds a run record pathwise cannot use: Unknown environment "
                                               r"id 'Nope-v0'"),
    ("env-number", _set("env_id", 3), r"\.npz holds a run record pathwise cannot use: env_id must be a string"),
    ("seed-text", _set("seed", "x"), r"\.npz holds a run record pathwise cannot use: seed='x' must be a whole number"),
    ("seed-negative", _set("seed", -4), r"seed=-4 must be a whole number"),
    ("config-list", _set("config", [1]), r"its config must be a table of KEY = VALUE pairs, got list"),
    ("config-missing-key", _edit_meta(lambda m: m["config"].pop("actor_lr")), r"its config lacks the key\(s\) \['actor_lr'\]"),
    ("config-unknown-key", _edit_meta(lambda m: m["config"].__setitem__("lrr", 1)), r"Unknown its config key\(s\) "
                                                                                    r"\['lrr'\]"),
    ("config-bad-value", _edit_meta(lambda m: m["config"].__setitem__("gamma", 7)), r"gamma=7\.0 must be in"),
    ("config-other-network", _edit_meta(lambda m: m["config"].__setitem__("hidden", [16])),
     r"has shape \(8, 4\), expected \(16, 4\) for this algorithm and config"),
    ("counters-missing", _edit_meta(lambda m: m.pop("counters")), r"counters=None is not a table"),
    ("counters-number", _set("counters", 5), r"counters=5 is not a table"),
    ("counters-unknown", _edit_meta(lambda m: m["counters"].__setitem__("x", 1)), r"its counters lack or add "
                                                                                  r"\['x'\]"),
    ("counters-text", _edit_meta(lambda m: m["counters"].__setitem__("env_steps", "many")),
     r"counter env_steps='many' is not a number"),
    ("counters-negative", _edit_meta(lambda m: m["counters"].__setitem__("env_steps", -5)), r"negative counters"),
    ("history-text", _set("history", "x"), r"history='x' is not a list of rows"),
    ("evals-number", _set("evals", 3), r"evals=3 is not a list of rows"),
    ("eval-every-zero", _set("eval_every", 0), r"eval_every=0 must be a whole number >= 1"),
    ("eval-every-text", _set("eval_every", "x"), r"eval_every='x' must be a whole number >= 1"),
    ("eval-seed-negative", _set("eval_seed", -1), r"eval_seed=-1 must be a whole number"),
    ("key-impl-unknown", _edit_meta(lambda m: m.__setitem__("key_leaves", {k: "nope" for k in m["key_leaves"]})),
     r"the PRNG key .* has implementation 'nope', which JAX cannot rebuild"),
    ("key-leaves-list", _set("key_leaves", [1]), r"key_leaves is '\[1\]', not a table of names to strs"),
    ("buffers-text", _set("buffers", "x"), r"buffers is 'x', not a table of names to ints"),
    ("format-version-3", _set("format_version", 3), r"has format version 3; this pathwise reads version 2"),
    ("format-version-1", _set("format_version", 1), r"format version 1 \(written by pathwise 0\.1"),
    ("format-version-missing", _edit_meta(lambda m: m.pop("format_version")), r"has format version None"),
    ("key-leaves-missing", _edit_meta(lambda m: m.pop("key_leaves")), r"key is a PRNG key in this algorithm but its "
                                                                      r"meta record's key_leaves says nothing"),
    ("key-leaf-on-an-array", _edit_meta(lambda m: m["key_leaves"].__setitem__("env_steps", "threefry2x32")),
     r"env_steps is an array in this algorithm but its meta record's key_leaves says 'threefry2x32'"),
]


@pytest.mark.parametrize("edit, message", [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_tampered_checkpoints_are_refused_naming_the_file(edit, message, ctx, tmp_path):
    meta, arrays = edit(*_read_npz(ctx["good"]))
    path = tmp_path / "tampered.npz"
    _write_npz(path, meta, arrays)
    with pytest.raises(ckpt.CheckpointError) as info:
        pw.load(path)
    text = str(info.value)
    assert re.search(message, text), text
    assert "tampered.npz" in text


def _raw_meta(raw):
    def write(path, good):
        _, arrays = _read_npz(good)
        _write_npz(path, {}, arrays, raw_meta=raw)

    return write


def _bytes(data):
    return lambda path, good: path.write_bytes(data(good.read_bytes()) if callable(data) else data)


def _only_arrays(path, good):
    np.savez(path, x=np.zeros(3))


def _pickled(path, good):
    np.save(path.with_suffix(".tmp.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(path, __meta__=np.array([{"a": 1}], dtype=object))


#: (id, write(path, good checkpoint), regex): files that are not (whole) pathwise checkpoints.
NOT_CHECKPOINTS = [
    ("random-bytes", _bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))),
     r"not a pathwise checkpoint at all: it is not an \.npz \(zip\) archive"),
    ("text", _bytes(b"hello, I am a text file\n"), r"not an \.npz \(zip\) archive \(it starts with b'hell'\)"),
    ("empty", _bytes(b""), r"not an \.npz \(zip\) archive \(it starts with b''\)"),
    ("zip-magic-only", _bytes(b"PK\x03\x04 truncated"), r"is corrupt or truncated.*retrain"),
    ("truncated-half", _bytes(lambda b: b[: len(b) // 2]), r"is corrupt or truncated.*best\.npz"),
    ("truncated-tail", _bytes(lambda b: b[:-10]), r"is corrupt or truncated"),
    ("flipped-bytes", _bytes(lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:400]) + b[400:]),
     r"is corrupt or truncated|holds NaN|incompatible"),
    ("no-meta", _only_arrays, r"has no __meta__ record, so it was not written by pathwise"),
    ("pickled-meta", _pickled, r"holds pickled Python objects, which pathwise never writes and never loads"),
    ("meta-not-utf8", _raw_meta(np.frombuffer(b"\xff\xfe{", np.uint8)), r"is corrupt or truncated \(UnicodeDecode"),
    ("meta-not-json", _raw_meta(np.frombuffer(b"{oops", np.uint8)), r"is corrupt or truncated \(JSONDecodeError"),
    ("meta-a-list", _raw_meta(np.frombuffer(b"[1, 2]", np.uint8)), r"has format version None"),
    ("meta-floats", _raw_meta(np.array([1.5, 2.5])), r"__meta__ record has dtype float64, not the JSON bytes"),
]


@pytest.mark.parametrize("write, message", [c[1:] for c in NOT_CHECKPOINTS], ids=[c[0] for c in NOT_CHECKPOINTS])
def test_files_that_are_not_checkpoints_are_refused(write, message, ctx, tmp_path, capsys):
    path = tmp_path / "agent.npz"
    write(path, ctx["good"])
    with pytest.raises(ckpt.CheckpointError) as info:
        pw.load(path)
    text = str(info.value)
    assert re.search(message, text), text
    assert "pickle.load" not in text and "allow_pickle=`" not in text  # NumPy's hint to load unsafely: never
    assert main(["evaluate", str(path)]) == 1  # the CLI says the same in one line
    err = capsys.readouterr().err
    assert "agent.npz" in err and "Traceback" not in err


# --------------------------------------------------------------------------- run directories

def _copy_run(ctx, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ctx["run"], run)
    return run


def _edit_config(fn):
    def edit(run):
        path = run / "config.json"
        info = json.loads(path.read_text())
        fn(info)
        path.write_text(json.dumps(info))

    return edit


#: (id, damage(run dir), regex): a damaged run directory, refused by both `evaluate` and `train --resume`.
DAMAGED_RUNS = [
    ("config-malformed", lambda r: (r / "config.json").write_text("{oops"), r"config\.json is not valid JSON.*the run "
                                                                            r"directory is damaged"),
    ("config-a-list", lambda r: (r / "config.json").write_text("[1]"), r"config\.json is not a pathwise run record "
                                                                       r"\(a list, not a table\)"),
    ("config-missing-config", _edit_config(lambda i: i.pop("config")), r"config\.json is not a pathwise run record "
                                                                       r"\(it has no config\)"),
    ("config-missing-key", _edit_config(lambda i: i["config"].pop("actor_lr")), r"config\.json holds a run record pathwise "
                                                                          r"cannot use: its config lacks the key\(s\) "
                                                                          r"\['actor_lr'\]"),
    ("config-unknown-algorithm", _edit_config(lambda i: i.__setitem__("algorithm", "ppo")),
     r"config\.json holds a run record pathwise cannot use: Unknown algorithm 'ppo'"),
    ("config-bad-steps", _edit_config(lambda i: i.__setitem__("steps", -5)), r"config\.json holds a run record "
                                                                             r"pathwise cannot use: steps=-5"),
    ("config-missing", lambda r: (r / "config.json").unlink(), r"is not a pathwise run directory \(no config\.json\)"),
    ("last-random-bytes", lambda r: (r / "checkpoints" / "last.npz").write_bytes(os.urandom(64) + b"x"),
     r"last\.npz|best\.npz"),
]


@pytest.mark.parametrize("damage, message", [c[1:] for c in DAMAGED_RUNS], ids=[c[0] for c in DAMAGED_RUNS])
def test_damaged_run_directories_are_refused_without_writing(damage, message, ctx, tmp_path, capsys):
    run = _copy_run(ctx, tmp_path)
    damage(run)
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for argv in (["train", "--resume", str(run), "--quiet"], ["evaluate", str(run), "--checkpoint", "last"]):
        assert main(argv) in (1, 2), argv
        err = capsys.readouterr().err
        assert re.search(message, err), (argv, err)
        assert "Traceback" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot  # a refusal writes nothing


# --------------------------------------------------------------------------- correct behaviour

def test_a_refused_resume_leaves_config_json_untouched(ctx, tmp_path, capsys):
    run = _copy_run(ctx, tmp_path)
    before = (run / "config.json").read_bytes()
    assert main(["train", "--resume", str(run), "--steps", "-5"]) == 2
    assert (run / "config.json").read_bytes() == before
    assert main(["evaluate", str(run)]) == 0  # and the run still opens


def test_evaluating_a_read_only_run_writes_nothing(ctx, tmp_path, capsys):
    run = _copy_run(ctx, tmp_path)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()} == stamps


def test_a_full_disk_during_training_is_one_clear_line(ctx, tmp_path, capsys, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # every atomic write syncs before its rename
    out = tmp_path / "out"
    assert main([*REINFORCE, "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert re.search(r"cannot write .*out/.*: No space left on device \(the disk is full: free space\)", err), err
    assert "Traceback" not in err and ".tmp" not in err  # the file meant, not the temporary name
    assert not list(out.rglob("*.tmp"))


def test_debug_shows_the_traceback(ctx, capsys):
    with pytest.raises(ValueError, match=r"--seeds 0"):
        main(["--debug", *REINFORCE, "--seeds", "0", *TINY])


def test_unwritable_render_target_is_refused_before_evaluating(ctx, tmp_path, capsys, monkeypatch):
    from pathwise import envs

    calls = []
    monkeypatch.setattr(envs, "evaluate_lockstep", lambda *a, **k: calls.append(1))
    target = ctx["root"] / "a_file" / "x.gif"
    assert main(["evaluate", str(ctx["run"]), "--render", str(target)]) == 1
    assert calls == [] and "a_file is a file" in capsys.readouterr().err


def test_integer_matrices_are_promoted_for_lqr():
    as_int = control.lqr(np.eye(2, dtype=int), np.ones((2, 1), dtype=int), np.eye(2, dtype=int), np.eye(1, dtype=int))
    as_float = control.lqr(EYE2, B21, EYE2, EYE1)
    np.testing.assert_allclose(as_int.K, as_float.K, rtol=1e-6)


def test_the_nonfinite_hint_names_the_algorithms_own_learning_rates():
    from pathwise.train import nonfinite_hint

    ddpg = pw.algorithms.get("ddpg").Config()
    hint = nonfinite_hint(ddpg)
    assert "actor_lr=" in hint and "critic_lr=" in hint and "--set actor_lr=" in hint
    assert "--set lr=" not in hint
    reinforce = nonfinite_hint(pw.algorithms.get("reinforce").Config())
    assert "--set actor_lr=0.0003" in reinforce and "reward or observations can be NaN" in reinforce


def test_a_valid_registered_reward_is_accepted():
    env_id = _pendulum_twin()
    agent = _register_and_make(env_id, reward=lambda o, a, n: -jnp.sum(n ** 2) - 0.01 * jnp.sum(a ** 2))
    assert agent.env_id == env_id


def test_systems_built_under_a_trace_are_not_checked_on_tracer_values():
    grad = jax.grad(lambda g: pw.systems.Pendulum(g=g).step(X0, jnp.ones(1))[1])(10.0)
    assert np.isfinite(float(grad))


def test_the_table_is_large_and_covers_every_kind():
    cases = len(CLI_CASES) + len(CONFIG_FILES) + len(API_CASES) + len(TAMPERED) + len(NOT_CHECKPOINTS) + \
        len(DAMAGED_RUNS)
    assert cases >= 150, cases
