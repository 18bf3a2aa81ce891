"""Run every benchmark script (quick or full) and rebuild BENCHMARKS.md.

    python benchmarks/run_all.py --quick      # make bench: a few minutes
    python benchmarks/run_all.py              # make bench-full: everything
    python benchmarks/run_all.py --only sb3,throughput

A script that fails is reported and the others still run; the exit status is
non-zero if any failed. Scripts needing the `bench` extra (Stable-Baselines3,
torch) are skipped with a message when it is not installed; so is the Brax APG
comparison, which needs its own venv (brax's APG needs jax 0.7.2).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (name, script, needs) in the order BENCHMARKS.md presents them.
SCRIPTS = [
    ("throughput", "bench_throughput.py", ()),
    ("updates", "bench_updates.py", ("stable_baselines3", "torch")),
    ("control", "bench_control.py", ()),
    ("ilqr", "bench_ilqr.py", ()),
    ("ceiling", "bench_ceiling.py", ()),
    ("gap", "bench_gap.py", ()),
    ("conditioning", "bench_conditioning.py", ()),
    ("estimators", "bench_estimators.py", ()),
    ("bptt", "bench_bptt.py", ()),
    ("bptt_starts", "bench_bptt_starts.py", ()),
    ("imitation", "bench_imitation.py", ()),
    ("seeds", "bench_seeds.py", ()),
    ("model_free", "bench_model_free.py", ()),
    ("cartpole", "bench_cartpole.py", ()),
    ("mbpo", "bench_mbpo.py", ()),
    ("model_based", "bench_model_based.py", ()),
    ("model_error", "bench_model_error.py", ()),
    ("mujoco", "bench_mujoco.py", ("mujoco",)),
    ("model_based_tasks", "bench_model_based_tasks.py", ("mujoco",)),
    ("speed", "bench_speed.py", ()),
    ("apg", "bench_apg.py", ("brax",)),
    ("sb3", "bench_sb3.py", ("stable_baselines3", "torch")),
    ("learners", "bench_learners.py", ()),
]

#: how to get what a script needs
HINTS = {"brax": "a separate venv with brax 0.14.x and jax 0.7.2 (see the APG section of BENCHMARKS.md); "
                 "run the script with that venv's python",
         "mujoco": "pip install -e '.[mujoco]'", "stable_baselines3": "pip install -e '.[bench]'", "torch": "pip install -e '.[bench]'"}


def jax_has_device_put_replicated() -> bool:
    """Whether this Python's jax still has what brax 0.14's APG calls (removed after jax 0.7)."""
    check = "import jax, sys; sys.exit(0 if hasattr(jax, 'device_put_replicated') else 1)"
    return subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", default="", help="comma-separated names to run (default: all)")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    failed = []
    for name, script, needs in SCRIPTS:
        if only and name not in only:
            continue
        path = HERE / script
        if not path.exists():
            print(f"[skip] {name}: {script} not present")
            continue
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if name == "apg" and not missing and not jax_has_device_put_replicated():
            missing = ["brax"]  # installed here, but with a jax that brax's APG no longer runs on
        if missing:
            print(f"[skip] {name}: needs {', '.join(missing)} ({'; '.join(sorted({HINTS[m] for m in missing}))})")
            continue
        cmd = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        print(f"[run ] {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"[{'ok' if rc == 0 else 'FAIL'}  ] {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    subprocess.check_call([sys.executable, str(HERE / "assemble.py")])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
