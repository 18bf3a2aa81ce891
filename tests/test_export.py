"""Policies that leave pathwise: `pathwise export` to ONNX (run by onnxruntime), npz/safetensors (run by NumPy
alone), the pure inference function, batched predict, and the errors of bad exports."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise import checkpoint as ckpt
from pathwise import replay
from pathwise import export as ex
from pathwise.cli import main as cli
from pathwise.loops.replay import example_item

SMALL = {"hidden": (32, 32), "critic_hidden": (32, 32), "buffer_size": 5_000}


def _spread(agent, scale):
    """The policy's last layer scaled by ``scale``: actions that reach the bounds (the squash and the clip matter),
    not the near-constant outputs of a fresh network."""
    def bigger(state):
        for field in ex.policy_fields(agent.run):
            policy = getattr(state, field)
            last = lambda p: p.net.layers[-1].weight  # noqa: E731
            state = state._replace(**{field: eqx.tree_at(last, policy, last(policy) * scale)})
        return state

    agent.run.carry = agent.run.carry._replace(algo=bigger(agent.run.carry.algo))
    return agent


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """A ddpg Pendulum agent (200 transitions stored) and a qac CartPole agent, each saved to an .npz."""
    root = tmp_path_factory.mktemp("agents")
    ddpg = _spread(pw.make("ddpg", env="Pendulum-v1", seed=0, quiet=True, **SMALL), 200.0)
    carry = ddpg.run.carry  # 200 stored transitions (as one warm-up episode leaves them) of 5,000 slots
    items = jax.tree.map(lambda x: jnp.ones((200, *x.shape), x.dtype), example_item(ddpg.run.spec))
    ddpg.run.carry = carry._replace(buffer=replay.add_batch(carry.buffer, items))
    qac = _spread(pw.make("qac", env="CartPole-v1", seed=0, quiet=True, hidden=(32, 32)), 300.0)
    out = {}
    for name, agent in (("ddpg", ddpg), ("qac", qac)):
        out[name] = (agent, agent.save(root / f"{name}.npz"), ex.probe_observations(agent.run, 1_000, seed=7))
    return out


@pytest.mark.parametrize("name", ["ddpg", "qac"])
def test_pathwise_export_onnx_runs_in_onnxruntime_with_predicts_actions(agents, name, tmp_path, capsys):
    pytest.importorskip("jax2onnx", reason="the ONNX export needs the export extra (pip install 'pathwise[export]')")
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX policy needs onnxruntime (the export extra)")
    agent, saved, obs = agents[name]
    out = tmp_path / "policy.onnx"
    assert cli(["export", str(saved), "--format", "onnx", "--out", str(out)]) == 0
    assert "policy written to" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["action"], {"obs": obs})[0]
    want, _ = agent.predict(obs, deterministic=True)
    assert got.shape == want.shape
    if agent.run.spec.discrete:
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(want)) == 2  # both actions occur: the argmax is tested
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert want.min() < -1.99 and want.max() > 1.99 and np.mean(np.abs(want) < 1.9) > 0.2  # the whole box


def _run_without_jax(policy_path: Path, obs: np.ndarray, tmp: Path) -> np.ndarray:
    """The actions pathwise/policy_file.py computes in a Python that cannot import jax, equinox or pathwise."""
    np.save(tmp / "obs.npy", obs)
    script = (
        "import sys, importlib.util, numpy as np\n"
        "for m in ('jax', 'jaxlib', 'equinox', 'optax', 'pathwise'): sys.modules[m] = None\n"
        f"spec = importlib.util.spec_from_file_location('policy_file', {str(Path(ex.policy_file.__file__))!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"np.save({str(tmp / 'actions.npy')!r}, mod.load({str(policy_path)!r})(np.load({str(tmp / 'obs.npy')!r})))\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    return np.load(tmp / "actions.npy")


def test_a_gaussian_policy_on_unwrapped_angles_exports_its_cos_sin_features(tmp_path):
    """svgk on CartPoleSwingUp: its Gaussian policy sees the pole angle (entry 2) as (cos, sin); the npz file says
    so and NumPy alone reproduces predict, on pole angles wound several turns."""
    agent = _spread(pw.make("svgk", env="pathwise/CartPoleSwingUp-v0", seed=0, quiet=True, hidden=(16,),
                            critic_hidden=(16,), n_envs=4, horizon=4, critic_minibatches=2), 30.0)
    obs = ex.probe_observations(agent.run, 200, seed=5)
    obs[:, 2] += np.random.default_rng(0).integers(-3, 4, len(obs)) * 2 * np.pi
    path = agent.export(tmp_path / "policy.npz")
    with np.load(path, allow_pickle=False) as data:
        steps = json.loads(bytes(data["__meta__"]).decode())["steps"]
    assert steps[0] == {"op": "angle_features", "angles": [2]}
    want, _ = agent.predict(obs)
    assert np.ptp(want) > 0.5  # actions that differ, not one constant
    np.testing.assert_allclose(_run_without_jax(path, obs, tmp_path), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["ddpg", "qac"])
def test_npz_export_rebuilds_predicts_actions_with_numpy_alone(agents, name, tmp_path):
    agent, _, obs = agents[name]
    path = agent.export(tmp_path / "policy.npz")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        names = sorted(k for k in data.files if k != "__meta__")
    field = "policy"
    assert names == sorted(f"{field}.net.layers.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert meta["algorithm"] == agent.run.name and meta["env_id"] == agent.env_id and meta["hidden"] == [32, 32]
    assert meta["obs_dim"] == agent.run.spec.obs_dim and meta["activation"] == "tanh"
    got = _run_without_jax(path, obs, tmp_path)
    want, _ = agent.predict(obs)
    if agent.run.spec.discrete:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_safetensors_export_matches_predict_or_says_what_to_install(agents, tmp_path, monkeypatch):
    agent, _, obs = agents["ddpg"]
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ex.ExportError, match=r"needs the safetensors package.*pip install \"pathwise\[safetensors\]\""):
        agent.export(tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()
    monkeypatch.undo()
    pytest.importorskip("safetensors", reason="the safetensors format needs the safetensors extra")
    path = agent.export(tmp_path / "p.safetensors", format="safetensors")
    np.testing.assert_allclose(ex.policy_file.load(path)(obs), agent.predict(obs)[0], rtol=0, atol=1e-5)


def test_inference_fn_is_pure_jittable_batched_and_policy_only(agents):
    agent, _, obs = agents["ddpg"]
    fn, params = agent.inference_fn()
    assert set(params) == {"policy"}  # no critics, targets, optimizer states or replay data
    batched = obs[:600].reshape(6, 100, -1)
    got = jax.jit(fn)(params, batched)
    assert got.shape == (6, 100, 1)
    np.testing.assert_allclose(np.asarray(got).reshape(600, 1), agent.predict(obs[:600])[0], rtol=0, atol=1e-6)
    moved = jax.tree.map(lambda x: x * 0.5, params)  # the function reads the params it is given
    assert not np.allclose(jax.jit(fn)(moved, obs[:50]), got.reshape(600, 1)[:50])
    make_policy, params = pw.make_inference_fn(agent)  # Brax's shape
    action, extras = jax.jit(make_policy(params, deterministic=True))(obs[:50], jax.random.key(0))
    np.testing.assert_allclose(action, agent.predict(obs[:50])[0], rtol=0, atol=1e-6)
    assert extras == {}
    noisy, _ = jax.jit(make_policy(params, deterministic=False))(obs[:50], jax.random.key(1))
    assert noisy.shape == (50, 1) and np.all(np.abs(noisy) <= 2.0) and not np.allclose(noisy, action)


@pytest.mark.parametrize("name", ["ddpg", "qac"])
def test_batched_predict_is_one_call_equal_to_per_observation_calls(agents, name):
    agent, _, obs = agents[name]
    batch, _ = agent.predict(obs[:40])
    looped = np.stack([np.asarray(agent.predict(o)[0]) for o in obs[:40]])
    # a batched matrix product rounds differently from one matrix-vector product per observation: float32 ulps
    np.testing.assert_allclose(batch, looped, rtol=0, atol=1e-5 if name == "ddpg" else 0)
    assert batch.dtype == (np.int64 if name == "qac" else np.float32)


def test_checkpoints_name_their_leaves_and_store_only_the_filled_buffer(agents):
    agent, saved, _ = agents["ddpg"]
    meta, arrays = ckpt.read(saved)
    assert "algo/actor/net/layers/0/weight" in arrays and not any(k.startswith("leaf_") for k in arrays)
    assert arrays["buffer/storage/transition/obs"].shape == (200, 3)  # of 5,000 slots
    assert meta["buffers"] == {"buffer/storage/": 200}
    raw = sum(np.asarray(a).nbytes for a in arrays.values())
    assert saved.stat().st_size < 1.05 * raw  # nothing but the arrays: no empty slots


def test_bad_exports_are_refused_with_the_reason(agents, tmp_path, monkeypatch, capsys):
    agent, saved, _ = agents["ddpg"]
    with pytest.raises(ex.ExportError, match=r"unknown export format 'pt'; choose one of onnx, npz, safetensors"):
        agent.export(tmp_path / "p.pt", format="pt")
    with pytest.raises(ex.ExportError, match="cannot tell the format of .*p.bin from its suffix"):
        agent.export(tmp_path / "p.bin")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ckpt.WriteError, match="is a file, so nothing can be written under it"):
        agent.export(tmp_path / "a_file" / "p.npz")
    monkeypatch.setitem(sys.modules, "jax2onnx", None)
    assert cli(["export", str(saved), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "needs the jax2onnx package" in capsys.readouterr().err
    monkeypatch.undo()
    for argv, message in (
            ([str(tmp_path / "no_run"), "--out", str(tmp_path / "p.npz")], "does not exist: pass a run directory"),
            ([str(saved), "--out", str(tmp_path / "p.bin")], "cannot tell the format from the suffix"),
            ([str(saved), "--out", str(tmp_path / "a_file" / "p.npz")], "is a file, so nothing can be written")):
        assert cli(["export", *argv]) in (1, 2)
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing half-written


def test_an_export_that_would_differ_from_the_policy_is_not_written(agents, tmp_path, monkeypatch):
    agent, _, _ = agents["ddpg"]
    monkeypatch.setattr(ex.policy_file.Policy, "_apply", lambda self, step, x: x[..., :1] if step["op"] == "clip"
                        else x)  # a runner that skips every step: not the policy
    with pytest.raises(ex.ExportError, match="differs from the policy by up to .* nothing was written"):
        agent.export(tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


class _PlannerState(NamedTuple):
    plan: jax.Array


def test_an_algorithm_whose_act_reads_no_policy_is_refused():
    planner = SimpleNamespace(name="planner", carry=SimpleNamespace(algo=_PlannerState(jnp.zeros((5, 1)))),
                              algorithm=SimpleNamespace(act=lambda state, obs, key, deterministic: jnp.zeros(1)),
                              spec=SimpleNamespace(obs_dim=3), precision=contextlib.nullcontext)
    with pytest.raises(ex.ExportError, match="planner has no policy to export: its act\\(\\) reads none of its state"):
        ex.inference_fn(planner)


ALL = [("bptt", "Pendulum-v1"), ("imitation", "Pendulum-v1"), ("reinforce", "Pendulum-v1"),
       ("reinforce", "CartPole-v1"), ("qac", "CartPole-v1"), ("ddpg", "Pendulum-v1"), ("svg0", "Pendulum-v1"),
       ("svg0-discrete", "CartPole-v1"), ("mbrl", "Pendulum-v1"), ("svg-inf", "Pendulum-v1"), ("svg1", "Pendulum-v1"),
       ("svgk", "Pendulum-v1"), ("pets", "Pendulum-v1")]
#: The algorithms with a policy network (a planner has none: export refuses it).
NETWORKS = [(a, e) for a, e in ALL if not pw.algorithms.get(a).info.planner]


def test_the_all_list_covers_every_algorithm():
    assert {a for a, _ in ALL} == set(pw.algorithms.available())
    assert [a for a, _ in ALL if (a, _) not in NETWORKS] == ["pets"]


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_a_planner_is_refused_with_the_reason_and_the_alternative(fmt, tmp_path, capsys):
    """pets acts by CEM over its model (no network): every format is refused before anything is written, by the
    API and the CLI, with what to do instead; predict still works."""
    agent = pw.make("pets", env="Pendulum-v1", seed=0, quiet=True, model_hidden=(8,), model_ensemble=2,
                    plan_horizon=3, plan_samples=8, plan_elites=2, plan_iterations=1)
    action, _ = agent.predict(np.zeros(3, np.float32))
    assert action.shape == (1,)
    path = tmp_path / f"p{ex.SUFFIXES[fmt]}"
    with pytest.raises(ex.ExportError, match="pets has no policy network to export: it plans every action .*"
                                             "pathwise train mbrl or svg-inf"):
        agent.export(path)
    assert not path.exists()
    if fmt == "npz":  # (the CLI refuses a missing onnx/safetensors extra before it opens the run)
        saved = agent.save(tmp_path / "pets.npz")
        assert cli(["export", str(saved), "--out", str(path)]) != 0
        assert "no policy network to export" in capsys.readouterr().err and not path.exists()


@pytest.mark.slow
@pytest.mark.parametrize("algo,env", NETWORKS)
def test_every_algorithm_exports_its_policy(algo, env, tmp_path):
    agent = pw.make(algo, env=env, seed=0, quiet=True)
    obs = ex.probe_observations(agent.run, 500, seed=3)
    want, _ = agent.predict(obs)
    np.testing.assert_allclose(ex.policy_file.load(agent.export(tmp_path / "p.npz"))(obs), want, rtol=0, atol=1e-5)
    fn, params = agent.inference_fn()
    np.testing.assert_allclose(jax.jit(fn)(params, jnp.asarray(obs)), want, rtol=0, atol=1e-5)
    if pytest.importorskip("onnxruntime", reason="needs the export extra") and \
            pytest.importorskip("jax2onnx", reason="needs the export extra"):
        import onnxruntime as ort

        session = ort.InferenceSession(str(agent.export(tmp_path / "p.onnx")), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(["action"], {"obs": obs})[0], want, rtol=0, atol=1e-5)
