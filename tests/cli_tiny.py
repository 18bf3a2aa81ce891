"""The tiny per-algorithm CLI configurations that tests/test_cli.py and tests/test_cli_runs.py train."""

#: One fast-compiling configuration per registered algorithm: (env id, --steps, --set values). The Gymnasium ids keep
#: their own time limits (Pendulum-v1 200 steps, CartPole-v1 500; ``max_episode_steps`` caps only environments
#: without one), so a replay or model-based run here collects one episode, whatever --steps below 200 says.
TINY: dict[str, tuple[str, int, list[str]]] = {
    "bptt": ("pathwise/Pendulum-v1", 80, ["hidden=8", "horizon=10", "batch_size=4", "updates_per_iteration=2",
                                          "schedule=constant"]),
    "imitation": ("pathwise/Pendulum-v1", 1, ["hidden=8", "rollouts_per_round=2", "rounds=1", "fit_steps=5",
                                               "fit_batch=16", "expert_horizon=10", "expert_iterations=1"]),
    "reinforce": ("CartPole-v1", 60, ["hidden=8", "num_envs=2", "value_hidden=8", "value_steps=1"]),
    "qac": ("CartPole-v1", 60, ["hidden=8", "num_envs=2", "n_steps=4", "critic_hidden=8"]),
    "ddpg": ("Pendulum-v1", 60, ["hidden=8", "critic_hidden=8", "batch_size=8", "buffer_size=200",
                                 "learning_starts=20"]),
    "svg0": ("Pendulum-v1", 60, ["hidden=8", "critic_hidden=8", "batch_size=8", "buffer_size=200",
                                 "learning_starts=20"]),
    "svg0-discrete": ("CartPole-v1", 60, ["hidden=8", "critic_hidden=8", "batch_size=8", "buffer_size=1000",
                                          "learning_starts=20"]),
    "mbrl": ("Pendulum-v1", 60, ["hidden=8", "model_hidden=8", "model_steps_per_epoch=2", "model_max_epochs=1",
                                 "model_batch=8", "horizon=4", "num_starts=4", "policy_steps=2",
                                 "buffer_size=500"]),
    "svg-inf": ("Pendulum-v1", 60, ["hidden=8", "model_hidden=8", "model_steps_per_epoch=2", "model_max_epochs=1",
                                    "model_batch=8", "grad_steps=2", "buffer_size=500",
                                    "segment_length=10", "num_segments=4"]),
    "svg1": ("Pendulum-v1", 60, ["hidden=8", "critic_hidden=8", "model_hidden=8", "batch_size=8", "buffer_size=500",
                                 "learning_starts=20", "updates_per_step=0.1"]),
    "svgk": ("pathwise/Pendulum-v1", 60, ["hidden=8", "critic_hidden=8", "horizon=4", "n_envs=4",
                                          "critic_iterations=1", "critic_minibatches=2", "updates_per_iteration=2"]),
    "pets": ("Pendulum-v1", 60, ["model_hidden=8", "model_ensemble=2", "model_steps_per_epoch=2", "model_max_epochs=1",
                                 "model_batch=8", "plan_horizon=4", "plan_samples=8", "plan_elites=2",
                                 "plan_iterations=1", "plan_starts=2", "buffer_size=500"]),
}


def train_argv(algo: str, out, *, steps: int | None = None, seed: int = 1, extra=()) -> list[str]:
    env, default_steps, sets = TINY[algo]
    return ["train", algo, "--env", env, "--steps", str(steps or default_steps), "--seed", str(seed),
            "--out", str(out), "--quiet", "--eval-episodes", "1", "--no-preset", *extra, "--set", *sets]
