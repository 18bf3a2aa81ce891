"""LQR: ``pathwise.control.lqr`` batched with ``jax.vmap`` vs a Python loop of SciPy / python-control.

Side by side in one process, float64, on the same random stabilizable systems
(n = 4..8 states, m = 2 inputs; A scaled so about half are open-loop unstable):

- infinite horizon: ``jax.jit(jax.vmap(lqr))`` (structure-preserving doubling)
  vs a loop of ``scipy.linalg.solve_discrete_are`` + the gain
  ``K = (R + B'PB)⁻¹ B'PA``, and vs a loop of ``control.dlqr``;
- finite horizon (T = 100): ``jax.jit(jax.vmap(lqr(..., horizon=100)))`` (a
  ``lax.scan`` backward Riccati recursion) vs the same recursion as a NumPy
  loop over t, one system after the other.

Agreement is asserted (relative error of K and P below 1e-8). Times exclude
compilation, which is reported separately; each timed call is repeated,
pathwise and peer alternating, and the median is reported.

    python benchmarks/bench_control.py            # 1000 systems
    python benchmarks/bench_control.py --quick    # 100 systems

Writes benchmarks/sections/20_control.md and benchmarks/figures/control_lqr.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Small matrices: single-threaded BLAS is the peers' best setting (multi-threaded OpenBLAS on 8x8 matrices
# is up to 20x slower on a busy machine); set before NumPy/SciPy/JAX load it. Override from the environment.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg  # noqa: E402

from pathwise.control import lqr  # noqa: E402

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "20_control.md"
FIGURE = HERE / "figures" / "control_lqr.png"
SIZES = (4, 5, 6, 7, 8)
M = 2
HORIZON = 100
TOL = 1e-8


def random_systems(count: int, seed: int = 0) -> dict[int, tuple[np.ndarray, ...]]:
    """``count`` random (A, B, Q, R), split evenly over the state sizes; {n: (A, B, Q, R) stacked}."""
    rng = np.random.default_rng(seed)
    out = {}
    per = [count // len(SIZES) + (i < count % len(SIZES)) for i in range(len(SIZES))]
    for n, k in zip(SIZES, per):
        A = rng.normal(size=(k, n, n)) / np.sqrt(n) * rng.uniform(0.6, 1.4, size=(k, 1, 1))
        B = rng.normal(size=(k, n, M))  # random B: (A, B) controllable with probability 1
        L = rng.normal(size=(k, n, n))
        Q = L @ np.swapaxes(L, -1, -2) / n + 0.1 * np.eye(n)
        Lr = rng.normal(size=(k, M, M))
        R = Lr @ np.swapaxes(Lr, -1, -2) / M + 0.5 * np.eye(M)
        out[n] = (A, B, Q, R)
    return out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ----------------------------------------------------------------------------- the two sides


def make_pathwise(horizon: int | None):
    def one(A, B, Q, R):
        sol = lqr(A, B, Q, R, horizon=horizon)
        if horizon is None:
            return sol.K, sol.P, sol.converged
        return sol.K[0], sol.P[0], jnp.asarray(True)

    return jax.jit(jax.vmap(one))


def scipy_dare(A, B, Q, R):
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    return K, P


def control_dlqr(A, B, Q, R):
    import control

    K, P, _ = control.dlqr(A, B, Q, R)
    return np.asarray(K), np.asarray(P)


def numpy_riccati(A, B, Q, R, T=HORIZON):
    """Backward Riccati recursion with Qf = Q; returns (K_0, P_0)."""
    P = Q.copy()
    for _ in range(T):
        S = R + B.T @ P @ B
        K = np.linalg.solve(S, B.T @ P @ A)
        P = Q + A.T @ P @ A - (B.T @ P @ A).T @ K
        P = 0.5 * (P + P.T)
    return K, P


def numpy_riccati_batched(A, B, Q, R, T=HORIZON):
    """The same recursion vectorized over all systems of one size (NumPy's batched matmul/solve)."""
    P = Q.copy()
    Bt, At = np.swapaxes(B, -1, -2), np.swapaxes(A, -1, -2)
    for _ in range(T):
        BPA = Bt @ P @ A
        K = np.linalg.solve(R + Bt @ P @ B, BPA)
        P = Q + At @ P @ A - np.swapaxes(BPA, -1, -2) @ K
        P = 0.5 * (P + np.swapaxes(P, -1, -2))
    return K, P


def batched(fn, systems):
    Ks, Ps = {}, {}
    for n, arrays in systems.items():
        Ks[n], Ps[n] = fn(*arrays)
    return Ks, Ps


def loop(fn, systems):
    Ks, Ps = {}, {}
    for n, (A, B, Q, R) in systems.items():
        res = [fn(A[i], B[i], Q[i], R[i]) for i in range(len(A))]
        Ks[n], Ps[n] = np.stack([r[0] for r in res]), np.stack([r[1] for r in res])
    return Ks, Ps


def run_pathwise(fns, systems):
    out = {n: fns[n](*(jnp.asarray(x) for x in systems[n])) for n in systems}
    jax.block_until_ready(out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- study


def study(count: int, repeats: int, with_control: bool) -> dict:
    systems = random_systems(count)
    res: dict = {"count": count, "repeats": repeats}
    for label, horizon, peers in (("infinite", None, [("scipy", scipy_dare)] + ([("control", control_dlqr)] if
                                                                                  with_control else [])),
                                  ("finite", HORIZON, [("numpy", numpy_riccati), ("numpy-batched", numpy_riccati_batched)])):
        fns = {n: make_pathwise(horizon) for n in systems}
        compile_s, pw = timed(lambda: run_pathwise(fns, systems))  # first call: trace + compile + run
        times = {"pathwise": []}
        times.update({name: [] for name, _ in peers})
        peer_out = {}
        for _ in range(repeats):  # interleaved: pathwise, then each peer, repeated
            t, pw = timed(lambda: run_pathwise(fns, systems))
            times["pathwise"].append(t)
            for name, fn in peers:
                run = batched if name.endswith("-batched") else loop
                t, peer_out[name] = timed(lambda fn=fn, run=run: run(fn, systems))
                times[name].append(t)
        run_s = statistics.median(times["pathwise"])
        res[label] = {"compile_s": compile_s - run_s, "times": times,
                      "converged": int(sum(int(np.sum(np.asarray(pw[n][2]))) for n in pw))}
        for name, (Ks, Ps) in peer_out.items():
            errK = max(rel(np.asarray(pw[n][0][i]), Ks[n][i]) for n in pw for i in range(len(Ks[n])))
            errP = max(rel(np.asarray(pw[n][1][i]), Ps[n][i]) for n in pw for i in range(len(Ps[n])))
            res[label][f"err_{name}"] = (errK, errP)
            assert errK < TOL and errP < TOL, (
                f"{label} horizon: pathwise and {name} disagree (relative K {errK:.1e}, P {errP:.1e} >= {TOL})")
        assert res[label]["converged"] == count, f"{label}: only {res[label]['converged']}/{count} converged"
        print(f"{label}: " + ", ".join(f"{k} {statistics.median(v) * 1e6 / count:.1f} µs/solve"
                                       for k, v in times.items()) + f"; compile {compile_s - run_s:.2f} s", flush=True)
    # single solve, unbatched: one jitted call per system vs one SciPy call
    A, B, Q, R = (x[0] for x in systems[SIZES[-1]])
    single = jax.jit(lambda *a: lqr(*a).K)
    jax.block_until_ready(single(A, B, Q, R))
    reps = 200
    t_pw = statistics.median(timed(lambda: [jax.block_until_ready(single(A, B, Q, R)) for _ in range(reps)])[0]
                             for _ in range(3)) / reps
    t_sp = statistics.median(timed(lambda: [scipy_dare(A, B, Q, R) for _ in range(reps)])[0] for _ in range(3)) / reps
    res["single"] = {"pathwise": t_pw, "scipy": t_sp, "n": SIZES[-1]}
    print(f"single n={SIZES[-1]}: pathwise {t_pw * 1e6:.1f} µs, scipy {t_sp * 1e6:.1f} µs", flush=True)
    return res


# ----------------------------------------------------------------------------- report


def plot(res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = res["count"]
    labels, values, colors = [], [], []
    for label, title in (("infinite", "DARE"), ("finite", f"T={HORIZON}")):
        for name, ts in res[label]["times"].items():
            labels.append(f"{title}\n{name}")
            values.append(statistics.median(ts) * 1e6 / count)
            colors.append("tab:blue" if name == "pathwise" else "tab:gray")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("µs per solve (median, compile excluded)")
    ax.set_title(f"LQR, {count} random systems (n=4..8, m=2), float64: vmap vs Python loop")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)


def speedup(x: float) -> str:
    return f"{x:.0f}×" if x >= 10 else f"{x:.2g}×"


def write_section(res: dict, quick: bool) -> None:
    import control

    count = res["count"]
    load = res.get("load") or os.getloadavg()
    cmd = "python benchmarks/bench_control.py" + (" --quick" if quick else "")
    lines = [
        "## LQR: batched `pathwise.control.lqr` vs SciPy and python-control", "",
        f"Command: `{cmd}`  ",
        f"Date: {datetime.date.today().isoformat()}  ",
        f"Machine: 2-core CPU container, no GPU ({os.cpu_count()} cores visible), load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end of the run (shared with other jobs: absolute "
        "times are noisy, the ratios were measured interleaved)  ",
        f"Versions: python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, control {control.__version__}", "",
        f"{count} random systems, n = 4..8 states ({count // len(SIZES)} of each size), m = {M} inputs, random "
        "A (about half open-loop unstable), B, Q ≻ 0, R ≻ 0; float64 on both sides "
        "(`jax_enable_x64`). pathwise: one `jax.jit(jax.vmap(lqr))` call per state size (vmap needs equal "
        "shapes), so 5 calls in all; peers: a Python loop over the systems. Median over "
        f"{res['repeats']} interleaved repeats; compilation is excluded from the per-solve times and reported "
        "on its own. BLAS runs single-threaded on both sides (`OPENBLAS_NUM_THREADS=1`, the peers' fastest "
        "setting for 8×8 matrices; XLA keeps its own thread pool). Agreement is asserted in the run: the largest relative error ‖K − K_peer‖/‖K_peer‖ "
        "(and of P) over all systems is below 1e-8.", "",
        "| problem | solver | µs per solve | speed-up of pathwise | max rel. error K / P vs pathwise | "
        "compile (s) |",
        "|---|---|---:|---:|---|---:|",
    ]
    verdicts = []
    for label, title, peer_desc in (
            ("infinite", "infinite horizon (DARE)", {"scipy": "SciPy `solve_discrete_are` + gain, loop",
                                                     "control": "python-control `dlqr`, loop"}),
            ("finite", f"finite horizon, T = {HORIZON}", {"numpy": "NumPy backward Riccati, loop over t and systems",
                                                               "numpy-batched": "NumPy backward Riccati, loop over t, "
                                                                                "batched over systems"})):
        r = res[label]
        t_pw = statistics.median(r["times"]["pathwise"]) / count
        lines.append(f"| {title} | pathwise `jit(vmap(lqr))` | {t_pw * 1e6:.2f} | — | — | {r['compile_s']:.2f} |")
        for name, desc in peer_desc.items():
            if name not in r["times"]:
                continue
            t = statistics.median(r["times"][name]) / count
            eK, eP = r[f"err_{name}"]
            lines.append(f"| {title} | {desc} | {t * 1e6:.1f} | **{speedup(t / t_pw)}** | {eK:.1e} / {eP:.1e} | — |")
            if not name.endswith("-batched"):
                verdicts.append((title, name, t / t_pw))
    s = res["single"]
    fin = res["finite"]["times"]
    if "numpy-batched" in fin and statistics.median(fin["numpy-batched"]) < statistics.median(fin["pathwise"]):
        lines += ["", "The finite-horizon recursion vectorized by hand in NumPy (batched `@` and `np.linalg.solve` "
                  "over all systems of a size, a Python loop over the 100 steps only) is faster than pathwise's "
                  "`jit(vmap(lqr))` on this CPU: each step is a handful of tiny batched matmuls and 2×2 solves, "
                  "where XLA's CPU kernels for small batched linear algebra are no faster than OpenBLAS, and "
                  "`lqr` also computes the affine terms (k, p) and carries time-varying (T, n, n) inputs. The "
                  "vmapped solver's advantage is over the per-system loop a SciPy user writes, and it runs "
                  "inside `jit`/`grad`."]
    lines += [
        "",
        f"One system at a time (n = {s['n']}, no batching, dispatch included): pathwise `jit(lqr)` "
        f"{s['pathwise'] * 1e6:.0f} µs per call vs SciPy {s['scipy'] * 1e6:.0f} µs "
        f"({s['scipy'] / s['pathwise']:.1f}×): the doubling iteration alone already beats SciPy's QZ-based "
        "solver at these sizes; batching with `vmap` (one compiled program for every system of a size) adds "
        f"{s['pathwise'] / (statistics.median(res['infinite']['times']['pathwise']) / count):.1f}× per solve on "
        "this 2-core CPU (a rough figure: the batch mixes n = 4..8, the single call is n = 8).",
        "",
        "Target (issue 7): batched `lqr` ≥ 10× faster than a SciPy loop: " + "; ".join(
            f"{t} vs {n}: {speedup(x)} ({'met' if x >= 10 else 'NOT met'})" for t, n, x in verdicts) + ".",
        "",
        "![LQR time per solve](../figures/control_lqr.png)",
        "",
    ]
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    tmp = SECTION.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, SECTION)
    print(f"wrote {SECTION.relative_to(HERE.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 systems, 3 repeats (default: 1000, 5)")
    parser.add_argument("--no-control", action="store_true", help="skip the python-control dlqr loop")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the section from benchmarks/out/")
    args = parser.parse_args()
    count, repeats = (100, 3) if args.quick else (1000, 5)
    saved = HERE / "out" / "control.json"
    if args.from_json:  # rewrite section and figure from the last run's numbers
        res = json.loads(saved.read_text())
    else:
        res = study(count, repeats, with_control=not args.no_control)
        res["load"] = os.getloadavg()
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(res))
    plot(res)
    write_section(res, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
