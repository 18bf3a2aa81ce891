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
    python benchmarks/bench_control.py --from-json  # re-render the section only

Writes benchmarks/results/control.json, then benchmarks/sections/20_control.md (from
benchmarks/templates/20_control.md) and benchmarks/figures/control_lqr.png.
"""

from __future__ import annotations

import argparse
import os
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

from common import finished, machine, options, publish, save_figure  # noqa: E402  (benchmarks/common.py)

FIGURE = "control_lqr.png"
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

#: what the table calls each problem and each peer
TITLES = {"infinite": "infinite horizon (DARE)", "finite": f"finite horizon, T = {HORIZON}"}
PEERS = {"scipy": "SciPy `solve_discrete_are` + gain, loop", "control": "python-control `dlqr`, loop",
         "numpy": "NumPy backward Riccati, loop over t and systems",
         "numpy-batched": "NumPy backward Riccati, loop over t, batched over systems"}


def summarize(res: dict) -> dict:
    """The study's numbers as the section uses them: µs per solve (median over the repeats) of each solver."""
    count = res["count"]
    out = {"count": count, "repeats": res["repeats"], "sizes": list(SIZES), "m": M, "horizon": HORIZON,
           "problems": {}}
    for label in ("infinite", "finite"):
        r = res[label]
        out["problems"][label] = {
            "compile_s": r["compile_s"], "converged": r["converged"],
            "us": {name: statistics.median(ts) * 1e6 / count for name, ts in r["times"].items()},
            "error": {k[len("err_"):]: list(v) for k, v in r.items() if k.startswith("err_")}}
    s = res["single"]
    out["single"] = {"n": s["n"], "pathwise_us": s["pathwise"] * 1e6, "scipy_us": s["scipy"] * 1e6}
    return out


def plot(results: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    for label, title in (("infinite", "DARE"), ("finite", f"T={HORIZON}")):
        for name, us in results["problems"][label]["us"].items():
            labels.append(f"{title}\n{name}")
            values.append(us)
            colors.append("tab:blue" if name == "pathwise" else "tab:gray")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("µs per solve (median, compile excluded)")
    ax.set_title(f"LQR, {results['count']} random systems (n=4..8, m=2), float64: vmap vs Python loop")
    fig.tight_layout()
    save_figure(fig, FIGURE, out)


def measure(args: argparse.Namespace) -> dict:
    facts = machine("numpy", "scipy", "control")
    count, repeats = (100, 3) if args.quick else (1000, 5)
    results = summarize(study(count, repeats, with_control=not args.no_control))
    plot(results, args.out)
    return {"machine": finished(facts), "quick": args.quick, **results}


def speedup(x: float) -> str:
    return f"{x:.0f}×" if x >= 10 else f"{x:.2g}×"


def view(results: dict) -> dict:
    """Table rows with pathwise's speed-up over each peer, the issue-7 target verdicts, the single-call ratios."""
    problems, targets = [], []
    for label, r in results["problems"].items():
        us = r["us"]
        ratios = {name: us[name] / us["pathwise"] for name in PEERS if name in us}
        problems.append({"title": TITLES[label], "us": us["pathwise"], "compile_s": r["compile_s"], "peers": [
            {"label": PEERS[name], "us": us[name], "speedup": speedup(x), "error": r["error"][name]}
            for name, x in ratios.items()]})
        targets += [{"problem": TITLES[label], "peer": name, "speedup": speedup(x),
                     "verdict": "met" if x >= 10 else "NOT met"}
                    for name, x in ratios.items() if not name.endswith("-batched")]
    finite, single, sizes = results["problems"]["finite"]["us"], results["single"], results["sizes"]
    return {**results, "problems": problems, "targets": targets, "size_min": min(sizes), "size_max": max(sizes),
            "n_sizes": len(sizes), "per_size": results["count"] // len(sizes),
            "batched_numpy_faster": finite.get("numpy-batched", float("inf")) < finite["pathwise"],
            "single_vs_scipy": single["scipy_us"] / single["pathwise_us"],
            "batching_gain": single["pathwise_us"] / results["problems"]["infinite"]["us"]["pathwise"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 systems, 3 repeats (default: 1000, 5)")
    parser.add_argument("--no-control", action="store_true", help="skip the python-control dlqr loop")
    publish(options(parser, "control").parse_args(), "control", "20_control", measure, view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
