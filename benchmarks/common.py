"""The one shared helper of the benchmark scripts: results as JSON, sections rendered from templates.

A ported ``benchmarks/bench_*.py`` measures, keeps its numbers, and fills a template::

    results = measure(args)                     # numbers only; its figures are drawn here, from the full data
    save_results("throughput", results)         # -> benchmarks/results/throughput.json (atomic)
    text = render("10_throughput", view(results))   # benchmarks/templates/10_throughput.md, filled in
    write_section("10_throughput", text)        # -> benchmarks/sections/10_throughput.md (atomic)

:func:`publish` runs those steps; with ``--from-json`` (see :func:`options`) it loads the saved results
instead of measuring, so a change of wording in a template never needs a rerun. ``view`` is the script's
own: it adds what the template shows but the results do not hold as such (ratios, best rows, and verdicts
such as ``met``/``NOT met`` that depend on the numbers). Every sentence lives in the template.

``benchmarks/results/NAME.json`` holds the numbers the section shows (summaries, not raw curves: figures
are drawn when measuring) and the run's facts under ``machine`` (:func:`machine`, :func:`finished`); a
file written by hand from an older section says so under ``_source``. A smoke run points its output
elsewhere: ``--results /tmp/x.json --out /tmp/x`` (the section goes to ``/tmp/x/sections/``, figures to
``/tmp/x/figures/``), so it never overwrites the committed files.

Template convention (``benchmarks/templates/NN_topic.md``: the section's Markdown with placeholders,
``string.Template``-style, extended with format specs and blocks):

- ``$name`` or ``${name}``: the value, ``str()`` of it. ``${a.b}`` looks ``b`` up in the mapping ``a``
  (``${a.0}``: item 0 of the list ``a``).
- ``${name:SPEC}``: ``format(value, SPEC)``, e.g. ``${rate:,.0f}``, ``${ratio:.3g}``, ``${pct:+.1f}``.
  A float needs a spec (without one, rendering fails rather than print 17 digits); JSON ``null`` (a value
  not measured, or not finite) shows as ``–``; a mapping without a spec shows as ``key value, key value``
  (the versions line).
- ``$$``: a literal ``$``.
- ``<!-- if name -->A<!-- else name -->B<!-- end name -->``: A where the value is true, else B (the
  ``else`` part is optional). ``<!-- for name -->A<!-- end name -->``: A once for each item of the list
  ``name``; inside it the item's keys are placeholders too (table rows are written so, which keeps a
  table's header in the template). Blocks nest when their names differ. A marker alone on its line takes
  its line break with it.
- A line ``<!--# ... -->`` is a comment for the template's reader, dropped from the section.

An unknown placeholder is an error (``KeyError``), so a template cannot drift from its script silently.

Pieces several scripts share, one implementation each: for views, :func:`separated` (a list written
inline, with its separators), :func:`median_or_none`, :func:`vs_ceiling`; for measuring, :func:`ceiling`
(the registry's measured optimal-control ceiling), :func:`simulated_returns` (a policy's episodes through a
``System``, one jitted batch), :func:`timed_iterations` (a ``Run``'s iterations against training
wall-clock, with an evaluation after each), :func:`evaluation_curve` (a preset ``Trainer`` run with periodic
Gymnasium evaluations, stopping when solved or running the whole budget and reporting whether the solve held),
:func:`stability_columns` / :func:`stability_over_seeds` (``summary.json``'s stability keys per run and over
seeds) and :func:`update_block` (N updates of a replay-loop algorithm
as the loop runs them, for timing).

Results built run by run (seeds run one process at a time, or in parallel): :func:`saved_results` (the saved
file, or None), :func:`update_saved` (read, change and write a results file under a lock) and
:func:`merge_runs` (new runs replacing the saved ones of the same key). For templates, :func:`settings` (config
values written ``key=value``) and :func:`written_for` (whether the results are the run a template's
hand-written notes describe: a rerun hides such notes until someone rewrites them).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import sys
from collections import ChainMap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pathwise.checkpoint import atomic_save_figure, atomic_write_text

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
RESULTS = HERE / "results"

_MARKER_LINE = re.compile(r"^(<!-- (?:if|for|else|end) [\w.]+ -->)\n", re.M)
_COMMENT_LINE = re.compile(r"^<!--#.*?-->\n", re.M | re.S)
_TOKEN = re.compile(r"<!-- (?P<kind>if|for) (?P<block>[\w.]+) -->(?P<body>.*?)"
                    r"(?:<!-- else (?P=block) -->(?P<other>.*?))?<!-- end (?P=block) -->"
                    r"|\$(?:(?P<dollar>\$)|(?P<plain>\w+)|\{(?P<name>[\w.]+)(?::(?P<spec>[^}]*))?\})", re.S)


# ----------------------------------------------------------------------------- facts of the run


def machine(*packages: str) -> dict[str, Any]:
    """The facts every section states, taken at the start of a run: command, date, machine, load, versions.

    ``packages``: distributions whose versions the section lists besides python, jax and gymnasium (e.g.
    ``"scipy"``, ``"torch"``, ``"stable-baselines3"``); one that is not installed is left out. Call
    :func:`finished` at the end of the run for the load then.
    """
    cores = os.cpu_count() or 1
    versions = {"python": platform.python_version()}
    for name in ("jax", "gymnasium", *packages):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    kind = "container" if _in_container() else "machine"
    return {"command": command(), "date": utc_now(),
            "cores": cores, "description": f"{cores}-core CPU {kind}, {_accelerator()}",
            "load_start": list(os.getloadavg()), "versions": versions}


def utc_now() -> str:
    """The date and minute now, as every section states them ("2026-12-06 00:57 UTC")."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def finished(facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` with the load average at the end of the run and ``shared``: whether other jobs used the
    machine (a 1-min load above the core count at the start or the end; the run's own threads count too)."""
    end = list(os.getloadavg())
    return {**facts, "load_end": end, "shared": max(facts["load_start"][0], end[0]) > facts["cores"]}


def command(argv: list[str] | None = None) -> str:
    """The command line that reruns this measurement: ``python benchmarks/SCRIPT`` and its options, less
    those that only say where output goes or that re-render (``--from-json``, ``--results``, ``--out``)."""
    argv = sys.argv if argv is None else argv
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("--results", "--out"):
            skip = True
        elif arg != "--from-json" and not arg.startswith(("--results=", "--out=")):
            kept.append(arg)
    return " ".join(["python", f"benchmarks/{Path(argv[0]).name}", *kept])


def _in_container() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def _accelerator() -> str:
    import jax

    devices = [d for d in jax.devices() if d.platform != "cpu"]
    return f"{len(devices)} × {devices[0].device_kind}" if devices else "no GPU"


# ----------------------------------------------------------------------------- files


def results_path(name: str, path: str | os.PathLike | None = None) -> Path:
    return Path(path) if path is not None else RESULTS / f"{name}.json"


def save_results(name: str, data: dict, path: str | os.PathLike | None = None) -> dict:
    """Write ``data`` to ``benchmarks/results/NAME.json`` (or ``path``) atomically; returns it as it will be
    read back (NumPy scalars and arrays as Python numbers and lists, non-finite floats as ``None``)."""
    plain = _plain(data)
    atomic_write_text(results_path(name, path), _json(plain) + "\n")
    return plain


def load_results(name: str, path: str | os.PathLike | None = None) -> dict:
    return json.loads(results_path(name, path).read_text())


def _json(x: Any, depth: int = 0) -> str:
    """JSON with one line per key or item, except that a list or mapping of plain values (a table row, a
    versions list) stays on one line."""
    values = x.values() if isinstance(x, dict) else x if isinstance(x, list) else ()
    if not any(isinstance(v, (dict, list)) for v in values):
        return json.dumps(x, ensure_ascii=False)
    pad = "\n" + " " * (depth + 1)
    items = ([f"{json.dumps(k, ensure_ascii=False)}: {_json(v, depth + 1)}" for k, v in x.items()]
             if isinstance(x, dict) else [_json(v, depth + 1) for v in x])
    opening, closing = "{}" if isinstance(x, dict) else "[]"
    return opening + pad + ("," + pad).join(items) + "\n" + " " * depth + closing


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):  # NumPy / JAX scalars and arrays
        return _plain(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_section(name: str, text: str, out: str | os.PathLike | None = None) -> Path:
    """Write ``OUT/sections/NAME.md`` atomically (``OUT``: ``benchmarks/`` unless given)."""
    path = Path(out or HERE) / "sections" / f"{name}.md"
    atomic_write_text(path, text.rstrip() + "\n")
    print(f"wrote {path}")
    return path


def save_figure(fig: Any, name: str, out: str | os.PathLike | None = None, dpi: int = 110) -> Path:
    """Save a matplotlib figure to ``OUT/figures/NAME`` atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(out or HERE) / "figures" / name
    atomic_save_figure(fig, path, dpi=dpi)
    plt.close(fig)  # the scripts draw with pyplot; pathwise's own figures never touch it
    return path


# ----------------------------------------------------------------------------- templates


def render(template: str | os.PathLike, results: Mapping[str, Any]) -> str:
    """Fill in ``benchmarks/templates/TEMPLATE.md`` (or the file ``template``) from ``results`` (see the
    module docstring for the placeholders and blocks)."""
    path = Path(template)
    if not path.suffix:
        path = TEMPLATES / f"{template}.md"
    text = _COMMENT_LINE.sub("", path.read_text())
    return _fill(_MARKER_LINE.sub(r"\1", text), ChainMap(dict(results)))


def _fill(text: str, scope: ChainMap) -> str:
    def one(m: re.Match) -> str:
        if m["dollar"]:
            return "$"
        if m["kind"] == "if":
            return _fill(m["body"] if lookup(scope, m["block"]) else (m["other"] or ""), scope)
        if m["kind"] == "for":
            items = lookup(scope, m["block"]) or []
            return "".join(_fill(m["body"], scope.new_child(i if isinstance(i, Mapping) else {"item": i}))
                           for i in items)
        name = m["plain"] or m["name"]
        return _show(lookup(scope, name), m["spec"], name)

    return _TOKEN.sub(one, text)


def lookup(scope: Mapping[str, Any], name: str) -> Any:
    """``scope["a"]["b"]`` for ``"a.b"`` (an integer part indexes a list)."""
    first, *rest = name.split(".")
    value = scope[first]
    for part in rest:
        value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
    return value


def _show(value: Any, spec: str | None, name: str) -> str:
    if value is None:
        return "–"
    if spec:
        return format(value, spec)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        raise ValueError(f"${{{name}}} is a float: give the template a format, e.g. ${{{name}:.3g}}")
    return str(value)


# ----------------------------------------------------------------------------- one script's run


def options(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The options every ported script has: ``--from-json``, ``--results PATH``, ``--out DIR``."""
    parser.add_argument("--from-json", action="store_true",
                        help=f"re-render the section from the saved results (benchmarks/results/{name}.json "
                             "or --results) without measuring")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"results file to write (or read with --from-json); default "
                             f"benchmarks/results/{name}.json")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the section to OUT/sections/ and figures to OUT/figures/ (default: benchmarks/;"
                             " a smoke run can point it elsewhere)")
    return parser


def publish(args: argparse.Namespace, name: str, section: str, measure: Callable[[argparse.Namespace], dict],
            view: Callable[[dict], Mapping[str, Any]], written: bool = False) -> dict:
    """measure → save_results → render → write_section; with ``--from-json``, the saved results instead.

    ``written``: ``measure`` saves the results itself, run by run under :func:`update_saved`'s lock, and returns
    what it last wrote; they are not written again, since a rewrite would drop the rows that another process
    running other seeds into the same file added meanwhile."""
    if args.from_json:
        results = load_results(name, args.results)
    elif written:
        results = measure(args)
    else:
        results = save_results(name, measure(args), args.results)
    write_section(section, render(section, view(results)), args.out)
    return results


# ----------------------------------------------------------------------------- pieces the views share


def separated(items: list, sep: str = ", ", last: str | None = None) -> list[dict[str, Any]]:
    """``items`` as a template's ``for`` block lists them inline: each a mapping (a plain value as ``item``)
    with ``sep``, the text before it: none before the first, ``last`` (default ``sep``) before the last, e.g.
    ``<!-- for xs -->${sep}${item:.2f}<!-- end xs -->``."""
    n = len(items)
    return [{**(x if isinstance(x, Mapping) else {"item": x}),
             "sep": "" if i == 0 else (last if last is not None and i == n - 1 else sep)} for i, x in enumerate(items)]


#: A run's stability columns: ``summary.json``'s keys of that name (``pathwise.train.stability``). Listed here, not
#: imported, so that a script measuring an older pathwise (without them) still runs: its columns are None.
STABILITY_COLUMNS = ("stably_solved_at", "solved_fraction_after_first", "worst_return_after_solved", "ends_solved",
                     "failed_episode_fraction")


def stability_columns(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stability columns of one run from its summary (each None where the summary lacks it, or no summary)."""
    return {k: (summary or {}).get(k) for k in STABILITY_COLUMNS}


def stability_over_seeds(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The stability columns of several seeds' rows in one: ``seeds`` (rows that have the columns), ``ends_solved``
    (how many of them end solved), the lowest ``solved_fraction_after_first``, the lowest
    ``worst_return_after_solved``, the highest ``failed_episode_fraction``, and ``stably_solved_at`` as the median
    over the seeds that end solved (None where no row has a value)."""
    measured = [r for r in rows if r.get("ends_solved") is not None]

    def values(key: str) -> list:
        return [r[key] for r in measured if r.get(key) is not None]

    low, high = (lambda v: min(v) if v else None), (lambda v: max(v) if v else None)
    return {"seeds": len(measured), "ends_solved": sum(bool(r["ends_solved"]) for r in measured),
            "solved_fraction_after_first": low(values("solved_fraction_after_first")),
            "worst_return_after_solved": low(values("worst_return_after_solved")),
            "failed_episode_fraction": high(values("failed_episode_fraction")),
            "stably_solved_at": median_or_none(values("stably_solved_at"))}


def median_or_none(values: list) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    kept = [v for v in values if v is not None]
    return float(statistics.median(kept)) if kept else None


def vs_ceiling(value: float, ceiling: float) -> float:
    """How far ``value`` is above the optimal-control ceiling, in % of the ceiling's size (+ = better)."""
    return 100 * (value - ceiling) / abs(ceiling)


# ----------------------------------------------------------------------------- pieces the measurements share


def ceiling(env_id: str) -> float:
    """The measured optimal-control ceiling of ``env_id`` (``pathwise.registry.record(env_id).ceiling``)."""
    from pathwise import registry

    value = registry.record(env_id).ceiling
    if value is None:
        raise SystemExit(f"No measured ceiling for {env_id}: run `python benchmarks/bench_ceiling.py` first.")
    return value


def simulated_returns(system: Any, policy: Any, states0: Any) -> tuple[Any, Any]:
    """Returns and final states of ``policy``'s episodes (``system.episode_length`` steps) from each of
    ``states0``, simulated in one jitted, vmapped program."""
    return _simulated_program()(system, policy, states0)


@functools.cache
def _simulated_program() -> Callable:
    import equinox as eqx
    import jax

    from pathwise.rollout import rollout

    @eqx.filter_jit
    def run(system, policy, states0):
        traj = jax.vmap(lambda s: rollout(system, policy, s, system.episode_length))(states0)
        return traj.rewards.sum(-1), traj.final_state

    return run


def timed_iterations(make: Callable[[], Any], iterations: int, probe: Callable[[Any], dict]
                     ) -> tuple[Any, list[dict[str, Any]]]:
    """Build a run with ``make()`` (a :class:`pathwise.train.Run`) and run ``iterations`` iterations of it.

    Returns the run and one row per iteration: ``train_s`` (training wall-clock so far, building the run
    and every compilation included, ``probe`` excluded), ``env_steps``, the iteration's metrics and what
    ``probe(run)`` measures after it (an evaluation).
    """
    import time

    import jax

    t0 = time.perf_counter()
    run = make()
    train_s, rows = time.perf_counter() - t0, []
    for _ in range(iterations):
        t0 = time.perf_counter()
        metrics = run.iteration()
        jax.block_until_ready(run.carry)
        train_s += time.perf_counter() - t0
        rows.append({"train_s": train_s, "env_steps": run.env_steps, **metrics, **probe(run)})
    return run, rows


def evaluation_curve(algo: str, env_id: str, seed: int, budget: int, every: int, episodes: int, eval_seed: int,
                     threshold: float, stop: bool = True, overrides: dict | None = None) -> dict[str, Any]:
    """One preset run (``pathwise.train.make_trainer``) evaluated about every ``every`` environment steps.

    Each evaluation is ``episodes`` deterministic episodes, episode i from ``reset(seed=eval_seed + i)``;
    the curve starts with one of the untrained policy. Training stops at ``budget`` steps, or (``stop``)
    at the first evaluation whose mean is at least ``threshold``. Returns the curve (``steps``,
    ``returns``, ``stds``: the episodes' standard deviation, ``times``: training wall-clock, compilation
    included, evaluations excluded), ``solved_step`` / ``solved_time`` (None if never solved) and ``stability``
    (:data:`STABILITY_COLUMNS` with ``threshold`` as the solved line; None when ``stop`` ended the run at its first
    solve, which shows nothing of whether it would have held).
    """
    from pathwise.train import make_trainer, stability

    trainer, _ = make_trainer(algo, env_id, seed, overrides=overrides, steps=budget, eval_every=every,
                              eval_episodes=episodes, quiet=True)
    trainer.eval_seed = eval_seed
    untrained = trainer.evaluate()
    curve = {"steps": [0], "returns": [untrained["eval_return_mean"]], "stds": [untrained["eval_return_std"]],
             "times": [0.0], "solved_step": None, "solved_time": None}

    def record(info: dict) -> bool:
        if "eval_return_mean" not in info:
            return True
        curve["steps"].append(info["env_steps"])
        curve["returns"].append(info["eval_return_mean"])
        curve["stds"].append(info["eval_return_std"])
        curve["times"].append(info["time"])
        print(f"{algo} seed={seed} steps={info['env_steps']} return={info['eval_return_mean']:.1f} "
              f"train_time={info['time']:.1f}s", flush=True)
        if info["eval_return_mean"] >= threshold and curve["solved_step"] is None:
            curve["solved_step"], curve["solved_time"] = info["env_steps"], info["time"]
            return not stop
        return True

    trainer.train(budget, callback=record, progress_bar=False)
    trainer.run.loop.close()
    stopped = stop and curve["solved_step"] is not None
    curve["stability"] = None if stopped else stability(trainer.evals, threshold, trainer.record.failure_below)
    return curve


def update_block(algorithm: Any, spec: Any, config: Any) -> Callable[..., tuple[Any, dict]]:
    """``call(state, buffer, n, key) -> (state, metrics)``: ``n`` updates of ``algorithm`` on the replay
    buffer, as the replay loop runs them once per episode (``pathwise.loops.replay.store_and_update``; the
    episode here has length 0, so nothing is stored). ``n`` is traced: one compilation serves every ``n``,
    and ``call.compiled_versions()`` counts the compilations of ``store_and_update`` so far (one jitted function
    for every algorithm)."""
    import jax.numpy as jnp
    import numpy as np

    from pathwise.loops.replay import example_item, store_and_update

    horizon = spec.max_steps(config)
    episode = jax_tree_zeros(example_item(spec).transition, horizon)
    random_rows = np.zeros(horizon, bool)

    def call(state, buffer, n, key):
        state, _, metrics = store_and_update(algorithm, state, buffer, episode, np.int32(0), random_rows,
                                             jnp.asarray(n, jnp.int32), key, spec, config)
        return state, metrics

    call.compiled_versions = store_and_update._cached._cache_size
    return call


def jax_tree_zeros(example: Any, rows: int) -> Any:
    """Zeros shaped as ``rows`` copies of each leaf of ``example`` (a padded batch of items)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.zeros((rows, *jnp.shape(x)), jnp.asarray(x).dtype), example)


# ----------------------------------------------------------------------------- results built run by run


def saved_results(name: str, path: str | os.PathLike | None = None) -> dict | None:
    """The saved results (as :func:`load_results`), or None where there are none yet."""
    file = results_path(name, path)
    return json.loads(file.read_text()) if file.is_file() else None


def update_saved(path: str | os.PathLike, change: Callable[[dict | None], dict]) -> dict:
    """Read the JSON file ``path`` (None if there is none), ``change`` it and write it back atomically, holding a
    lock meanwhile: processes that each run some seeds may add to one file. Returns what was written."""
    import fcntl
    import hashlib
    import tempfile

    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"pathwise-bench-{path.stem}-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _plain(change(json.loads(path.read_text()) if path.is_file() else None))
        atomic_write_text(path, _json(data) + "\n")
    return data


def merge_runs(saved: list[dict], new: list[dict], key: Callable[[dict], Any]) -> list[dict]:
    """``saved`` with each entry that ``new`` has again (the same ``key``) replaced by the new one, then the rest
    of ``new``: runs made one process at a time, kept in one results file."""
    fresh = {key(r): r for r in new}
    kept = [fresh.pop(key(r), r) for r in saved]
    return kept + list(fresh.values())


def settings(values: Mapping[str, Any], sep: str = ", ") -> list[dict[str, Any]]:
    """Config values as a template lists them inline (``<!-- for s -->${sep}${key}=${value}<!-- end s -->``), each
    value as Python writes it (``[64, 64]``, ``0.001``, ``False``)."""
    return separated([{"key": k, "value": str(v)} for k, v in values.items()], sep)


def written_for(results: Mapping[str, Any], date: str) -> bool:
    """Whether ``results`` are the run of ``date`` (how its ``machine.date`` starts). A template's hand-written notes
    on one run show only with that run's numbers: a rerun hides them until someone re-reads and rewrites them."""
    return str(results["machine"].get("date") or "").startswith(date)
