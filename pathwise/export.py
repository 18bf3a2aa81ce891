"""Policies that leave pathwise: a pure inference function, and ONNX / npz / safetensors files.

The exported map is the deterministic action exactly as ``agent.predict(obs, deterministic=True)`` computes it:
the algorithm's own ``act(state, obs, key, True)`` (squashing into the action box, argmax for discrete actions,
the cos/sin features of unwrapped angles), then the clip to the action box that ``predict`` applies.

Which parts of an algorithm's ``State`` the policy is, is found from ``act`` itself, not from a table naming
algorithms: a field belongs to the policy when ``act`` cannot run without it (``policy_fields``). The inference
function and every file carry those fields only: no critics, targets, optimizer states or replay data.

* :func:`inference_fn` ``-> (fn, params)``: ``fn(params, obs[, key])`` is pure and jittable, batched over any
  leading axes of ``obs``; :func:`make_inference_fn` is the same in Brax's shape
  (``make_policy(params, deterministic)(obs, key) -> (action, extras)``).
* :func:`export` writes ``onnx`` (through ``jax2onnx``; one float32 input ``obs`` of shape ``(batch, obs_dim)``,
  one output ``action``), ``npz`` or ``safetensors`` (the policy's parameters by name and a JSON record of how
  to compute the action: ``pathwise.policy_file`` runs it with NumPy alone). Every export is checked before it is
  written: the file's actions on probe observations must equal the inference function's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import checkpoint as ckpt
from pathwise import policy_file
from pathwise.distributions import CategoricalPolicy, GaussianPolicy
from pathwise.networks import ACTIVATIONS, MLP, AngleFeaturePolicy, DeterministicPolicy, LinearPolicy

FORMATS = ("onnx", "npz", "safetensors")
SUFFIXES = {"onnx": ".onnx", "npz": ".npz", "safetensors": ".safetensors"}
#: What an exported file's actions may differ from the inference function's by (continuous actions).
TOLERANCE = 1e-5


class ExportError(ValueError):
    """A policy cannot be exported in the asked format (the message says why and what to do)."""


# -- the policy inside an algorithm's state -------------------------------------------------------------------


def policy_fields(run: Any, deterministic: bool = True) -> tuple[str, ...]:
    """The fields of ``run``'s algorithm state that ``act(state, obs, key, deterministic)`` cannot run without."""
    state, act = run.carry.algo, run.algorithm.act
    if not hasattr(state, "_replace"):
        raise ExportError(f"{run.name}'s State is not a NamedTuple, so its policy cannot be told apart from the rest "
                          "of its state; export needs State fields.")
    obs, key = jnp.zeros(run.spec.obs_dim, jnp.float32), jax.random.key(0)

    def runs_with(fields: tuple[str, ...]) -> bool:
        stripped = state._replace(**{f: None for f in state._fields if f not in fields})
        try:
            with run.precision():
                eqx.filter_eval_shape(lambda s, o: act(s, o, key, deterministic), stripped, obs)
        except (AttributeError, TypeError, ValueError, IndexError):
            return False
        return True

    if not runs_with(state._fields):
        raise ExportError(f"{run.name} has no policy that acts on one observation: its act() fails on "
                          f"{run.spec.env_id}'s observations.")
    needed = tuple(f for f in state._fields if not runs_with(tuple(g for g in state._fields if g != f)))
    if not needed or not runs_with(needed):
        what = "none" if not needed else "no separable set"
        raise ExportError(f"{run.name} has no policy to export: its act() reads {what} of its state's fields.")
    return needed


def refuse_planner(run: Any) -> None:
    """An ``ExportError`` if ``run``'s algorithm plans at every step (``AlgorithmInfo.planner``): there is no
    network to write, only an optimization over its learned model."""
    if getattr(run.algorithm.info, "planner", False):
        raise ExportError(f"{run.name} has no policy network to export: it plans every action by an optimization over "
                          "its learned model (CEM), which no network file can hold. Run it with pathwise (pathwise "
                          "evaluate RUN_DIR, agent.predict), or train a policy network on the same model that exports "
                          "(pathwise train mbrl or svg-inf).")


def _box(run: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if run.spec.discrete:
        return None
    return np.asarray(run.spec.action_low, np.float32), np.asarray(run.spec.action_high, np.float32)


def inference_fn(run: Any, deterministic: bool = True) -> tuple[Callable[..., jax.Array], dict[str, Any]]:
    """``(fn, params)``: ``fn(params, obs)`` (``fn(params, obs, key)`` when not ``deterministic``) is the action
    ``predict`` returns, pure and jittable, for ``obs`` of shape ``(..., obs_dim)``; ``params`` holds the
    policy's arrays only (a dict of the state fields the policy is)."""
    fields = policy_fields(run, deterministic)
    state, act, obs_dim, box = run.carry.algo, run.algorithm.act, run.spec.obs_dim, _box(run)
    parts = {f: eqx.partition(getattr(state, f), eqx.is_array) for f in fields}
    params = {f: p[0] for f, p in parts.items()}
    statics = {f: p[1] for f, p in parts.items()}
    empty = state._replace(**{f: None for f in state._fields})
    unused_key = jax.random.key(0)  # a deterministic act ignores its key

    def fn(params: dict[str, Any], obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if not deterministic and key is None:
            raise ValueError("a stochastic policy (deterministic=False) needs a PRNG key: fn(params, obs, key).")
        s = empty._replace(**{f: eqx.combine(params[f], statics[f]) for f in fields})
        obs = jnp.asarray(obs, jnp.float32)
        flat = obs.reshape(-1, obs_dim)
        if deterministic:  # the key stays out of the traced inputs: an ONNX graph has no PRNG-key type
            actions = jax.vmap(lambda o: act(s, o, unused_key, True))(flat)
        else:
            actions = jax.vmap(lambda o, k: act(s, o, k, False))(flat, jax.random.split(key, flat.shape[0]))
        if box is None:
            actions = actions.astype(jnp.int32)
        else:
            actions = jnp.clip(actions.astype(jnp.float32), box[0], box[1])
        return actions.reshape(*obs.shape[:-1], *actions.shape[1:])

    return fn, params


def make_inference_fn(agent: Any) -> tuple[Callable[..., Callable], dict[str, Any]]:
    """Brax's shape: ``make_policy, params = pw.make_inference_fn(agent)``, then
    ``policy = make_policy(params, deterministic=True)`` and ``action, extras = policy(obs, key)`` (``extras`` is
    an empty dict). Pure and jittable; ``obs`` may have any leading axes."""
    run = agent.run
    deterministic_fn, params = inference_fn(run, True)
    stochastic = []

    def make_policy(params: dict[str, Any], deterministic: bool = False) -> Callable:
        if deterministic:
            return lambda obs, key=None: (deterministic_fn(params, obs), {})
        if not stochastic:
            stochastic.append(inference_fn(run, False))
        fn, sample_params = stochastic[0]
        merged = {**sample_params, **params}  # a stochastic act may also use e.g. an exploration scale
        return lambda obs, key: (fn(merged, obs, key), {})

    return make_policy, params


# -- files ----------------------------------------------------------------------------------------------------


def _activation_name(fn: Callable) -> str:
    names = [name for name, f in ACTIVATIONS.items() if f is fn]
    if not names:
        raise ExportError(f"the policy network's activation {fn!r} is not one of {sorted(ACTIVATIONS)}; export it "
                          "with --format onnx instead.")
    return names[0]


def _mlp_steps(net: MLP, prefix: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for i, layer in enumerate(net.layers):
        if i:
            steps.append({"op": "activation", "name": _activation_name(net.act)})
        steps.append({"op": "dense", "weight": f"{prefix}.layers.{i}.weight",
                      "bias": f"{prefix}.layers.{i}.bias" if layer.bias is not None else None})
    return steps


def describe(module: Any, prefix: str) -> list[dict[str, Any]]:
    """The ``pathwise.policy_file`` steps computing ``module``'s deterministic action (its parameters named
    under ``prefix``)."""
    if isinstance(module, AngleFeaturePolicy):
        return [{"op": "angle_features", "angles": list(module.angles)}, *describe(module.policy, f"{prefix}.policy")]
    if isinstance(module, DeterministicPolicy):
        return [*_mlp_steps(module.net, f"{prefix}.net"), {"op": "squash", "low": module.low, "high": module.high}]
    if isinstance(module, GaussianPolicy):
        features = [{"op": "angle_features", "angles": list(module.angles)}] if module.angles else []
        steps = [*features, *_mlp_steps(module.net, f"{prefix}.net")]
        if module.log_std is None:  # the network outputs [mean, log std]
            steps.append({"op": "slice", "stop": module.action_dim})
        if module.low is not None:
            steps.append({"op": "squash", "low": module.low, "high": module.high})
        return steps
    if isinstance(module, CategoricalPolicy):
        return [*_mlp_steps(module.net, f"{prefix}.net"), {"op": "argmax"}]
    if isinstance(module, LinearPolicy):
        return [{"op": "matmul", "weight": f"{prefix}.gain"}]
    raise ExportError(f"--format npz/safetensors describe the policy networks of pathwise.networks and "
                      f"pathwise.distributions; {type(module).__name__} is not one of them. Export it with --format "
                      "onnx instead.")


def _meta(run: Any, fields: tuple[str, ...], steps: list[dict[str, Any]], dtype: str) -> dict[str, Any]:
    policy = getattr(run.carry.algo, fields[0])
    nets = [m for m in jax.tree.leaves(policy, is_leaf=lambda x: isinstance(x, MLP)) if isinstance(m, MLP)]
    box = _box(run)
    return {
        "format": policy_file.FORMAT, "version": policy_file.VERSION, "algorithm": run.name, "env_id": run.env_id,
        "policy": type(policy).__name__, "obs_dim": run.spec.obs_dim, "discrete": run.spec.discrete,
        "action_shape": [] if run.spec.discrete else [run.spec.action_dim],
        "num_actions": run.spec.action_dim if run.spec.discrete else None,
        "action_low": None if box is None else box[0].tolist(), "action_high": None if box is None else box[1].tolist(),
        "hidden": [layer.out_features for layer in nets[0].layers[:-1]] if nets else [],
        "activation": _activation_name(nets[0].act) if nets else None, "dtype": dtype, "steps": steps,
    }


def policy_arrays(run: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The policy's parameters by name (``policy.net.layers.0.weight``) and the JSON record that rebuilds its
    deterministic action (``pathwise.policy_file``)."""
    fields = policy_fields(run, True)
    if len(fields) != 1:
        raise ExportError(f"{run.name}'s deterministic act() uses {len(fields)} parts of its state "
                          f"({', '.join(fields)}), not one policy network; export it with --format onnx instead.")
    field = fields[0]
    policy = getattr(run.carry.algo, field)
    arrays = {f"{field}.{ckpt.name_of(path).replace('/', '.')}": np.asarray(x)
              for path, x in jax.tree_util.tree_flatten_with_path(eqx.filter(policy, eqx.is_array))[0]}
    steps = describe(policy, field)
    if not run.spec.discrete:
        box = _box(run)
        steps.append({"op": "clip", "low": box[0].tolist(), "high": box[1].tolist()})
    dtype = str(next(iter(arrays.values())).dtype) if arrays else "float32"
    return arrays, _meta(run, fields, steps, dtype)


def probe_observations(run: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` observations spread over the observation space: uniform inside finite bounds, N(0, 3²) elsewhere."""
    import gymnasium as gym

    rng = np.random.default_rng(seed)
    shape = (n, run.spec.obs_dim)
    try:
        env = gym.make(run.env_id)
        low, high = (np.broadcast_to(getattr(env.observation_space, b), shape[1:]) for b in ("low", "high"))
        env.close()
    except (gym.error.Error, ImportError, AttributeError, TypeError, ValueError):  # not buildable here, or no Box
        low = high = np.full(shape[1:], np.inf)
    finite = np.isfinite(low) & np.isfinite(high)
    uniform = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), shape)
    return np.where(finite, uniform, 3.0 * rng.standard_normal(shape)).astype(np.float32)


def _check_same(what: str, got: np.ndarray, want: np.ndarray, discrete: bool) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise ExportError(f"the exported {what} returns actions of shape {got.shape}, not {want.shape}; nothing was "
                          "written. Please report this (a converter bug).")
    err = np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0)
    if (discrete and err > 0) or err > TOLERANCE:
        raise ExportError(f"the exported {what} differs from the policy by up to {err:.3g} on probe observations; "
                          "nothing was written. Please report this (a converter bug).")


def _need(module: str, fmt: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ExportError(f"--format {fmt} needs the {module} package, which is not installed: pip install "
                          f"\"pathwise[{extra}]\" (or pip install {module}).") from None


def require(format: str) -> None:
    """Refuse, naming the extra to install, a ``format`` whose optional packages are missing."""
    if format == "onnx":
        for module in ("jax2onnx", "onnx"):
            _need(module, "onnx", "export")
    elif format == "safetensors":
        _need("safetensors", "safetensors", "safetensors")


def _onnx_bytes(run: Any, probes: np.ndarray, want: np.ndarray) -> bytes:
    jax2onnx = _need("jax2onnx", "onnx", "export")
    onnx = _need("onnx", "onnx", "export")
    fn, params = inference_fn(run, True)
    meta = {"format": "pathwise-onnx", "algorithm": run.name, "env_id": run.env_id, "obs_dim": run.spec.obs_dim,
            "discrete": run.spec.discrete}
    try:
        with run.precision():
            model = jax2onnx.to_onnx(lambda obs: fn(params, obs), [("B", run.spec.obs_dim)],
                                     model_name="pathwise_policy", input_names=["obs"], output_names=["action"],
                                     return_mode="proto",
                                     enable_double_precision=bool(getattr(run.config, "float64", False)))
    except Exception as exc:  # an operation jax2onnx cannot convert
        raise ExportError(f"jax2onnx cannot convert {run.name}'s policy ({type(exc).__name__}: {str(exc)[:200]}); "
                          "nothing was written. Export it with --format npz instead.") from exc
    onnx.helper.set_model_props(model, {"pathwise": json.dumps(meta)})
    data = model.SerializeToString()
    try:
        import onnxruntime
    except ModuleNotFoundError:
        return data  # nothing to check it with
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run(["action"], {"obs": probes})[0]
    except Exception as exc:  # onnxruntime's own error types
        raise ExportError(f"the exported ONNX model fails in onnxruntime ({str(exc)[:200]}); nothing was written. "
                          "Please report this (a converter bug); --format npz exports the policy meanwhile.") from exc
    _check_same("ONNX model", got, want, run.spec.discrete)
    return data


def _npz_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return buf.getvalue()


def _safetensors_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    st = _need("safetensors.numpy", "safetensors", "safetensors")
    return st.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"pathwise": json.dumps(meta)})


def export(run: Any, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``run``'s deterministic policy to ``path`` as ``format`` (``onnx``, ``npz``, ``safetensors``; default:
    from the suffix), checked against the policy on 256 probe observations first; returns the path."""
    path = Path(path)
    refuse_planner(run)
    if format is None:
        format = next((f for f, s in SUFFIXES.items() if path.suffix == s), None)
        if format is None:
            raise ExportError(f"cannot tell the format of {path} from its suffix; pass format= one of "
                              f"{', '.join(FORMATS)} or name the file .onnx, .npz or .safetensors.")
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    ckpt.check_writable(path, "export:")
    require(format)
    fn, params = inference_fn(run, True)
    probes = probe_observations(run, 256)
    with run.precision():
        want = np.asarray(jax.jit(fn)(params, probes))
    if format == "onnx":
        data = _onnx_bytes(run, probes, want)
    else:
        arrays, meta = policy_arrays(run)
        _check_same(f"{format} policy", policy_file.Policy(arrays, meta)(probes), want, run.spec.discrete)
        data = _npz_bytes(arrays, meta) if format == "npz" else _safetensors_bytes(arrays, meta)
    ckpt.atomic_write_bytes(path, data)
    return path


__all__ = ["ExportError", "FORMATS", "TOLERANCE", "describe", "export", "inference_fn", "make_inference_fn",
           "policy_arrays", "policy_fields", "probe_observations", "refuse_planner", "require"]
