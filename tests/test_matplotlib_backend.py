"""pathwise draws its figures without pyplot: the user's matplotlib backend (a notebook's inline one) is never
switched, and pyplot's figure manager never holds a pathwise figure."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    import matplotlib
    matplotlib.use("pdf")  # any backend the user chose, set before pathwise is imported
    import numpy as np
    import pathwise as pw
    from pathwise.cli import main
    from pathwise.estimators.compare import plot_sweep
    from pathwise.render import render_episode

    agent = pw.make("bptt", env="pendulum", out="run", eval_episodes=1, quiet=True, use_preset=False,
                    hidden=(8,), horizon=10, batch_size=4, updates_per_iteration=2, schedule="constant")
    agent.learn(80)  # writes run/learning_curve.png
    render_episode(lambda obs: np.zeros(1, np.float32), "Pendulum-v1", "frames.png")
    rows = [{"estimator": e, "sigma": s, "variance_per_sample": 1.0, "cosine": 0.5, "n_samples": 4}
            for e in ("score", "pathwise") for s in (0.1, 1.0)]
    plot_sweep(rows, "sigma", "sweep.png")
    assert main(["solve", "ilqr", "--system", "pendulum", "--horizon", "20", "--iterations", "3", "--out", "solve"]) == 0
    print("backend", matplotlib.get_backend(), "pyplot" if "matplotlib.pyplot" in sys.modules else "no-pyplot")
""")


def test_training_and_plots_leave_the_users_backend_alone(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATHWISE_QUIET": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backend pdf no-pyplot" in done.stdout
    for png in ("run/learning_curve.png", "frames.png", "sweep.png", "solve/plot.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
