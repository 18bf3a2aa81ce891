"""``make demo``: the main job — learn a Pendulum-v1 swing-up from 2,000 real steps, then evaluate it.

Trains pathwise's best model-based method (the model-based loop, else SVG(∞),
else BPTT through the known dynamics) on Gymnasium's ``Pendulum-v1`` with its
tuned preset, evaluates it on 10 seeded episodes, compares it with the
optimal-control ceiling, and writes the run directory (metrics, TensorBoard,
learning curve, checkpoints) to ``runs/demo``.
"""

from __future__ import annotations

import argparse
import sys

from pathwise import algorithms
from pathwise.train import train

PREFERENCE = ("mbrl", "svg-inf", "bptt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathwise.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default=None, help=f"algorithm (default: first available of {PREFERENCE})")
    parser.add_argument("--steps", type=int, default=None, help="environment steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    algo = args.algo or next((a for a in PREFERENCE if a in algorithms.available()), None)
    if algo is None:
        print("No algorithm is installed; reinstall pathwise.", file=sys.stderr)
        return 1
    print(f"pathwise demo: {algo} on Gymnasium Pendulum-v1 (seed {args.seed}), run directory {args.out}")
    _, s = train(algo, "Pendulum-v1", args.steps, seed=args.seed, out=args.out)
    print(f"\n{algo}: {s['env_steps']} environment steps in {s['train_time_s']:.0f} s of training")
    print(f"evaluation return (10 episodes): {s['final_return_mean']:.1f} ± {s['final_return_std']:.1f}")
    if s.get("steps_to_solve") is not None:
        print(f"reached {s['solved_threshold']:g} after {s['steps_to_solve']} steps ({s['time_to_solve_s']:.0f} s)")
    if s.get("ceiling") is not None:
        gap = (s["final_return_mean"] - s["ceiling"]) / abs(s["ceiling"])
        where = "above" if gap >= 0 else "below"
        print(f"optimal-control ceiling on the same episodes (true model): {s['ceiling']:.1f}; this policy is "
              f"{100 * abs(gap):.1f}% {where} it (summary.json: final_over_ceiling)")
    print(f"learning curve: {args.out}/learning_curve.png; evaluate again with `pathwise evaluate {args.out}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
