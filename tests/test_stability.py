"""Summaries that tell the truth: stability of a run after it first solves, computed from hand-written
evaluation lists (``pathwise.train.stability``), and the registry's per-task failure lines; and (slow) the learners
that stay solved on untuned seeds, through their runs' own summaries (issue 16)."""

import json
import math

import pytest

from pathwise import registry
from pathwise.train import EPISODE_RETURNS, STABILITY_KEYS, stability, train


def _evals(means, returns=None, every=1000):
    rows = [{"env_steps": every * (i + 1), "eval_return_mean": m, "eval_return_std": 0.0} for i, m in enumerate(means)]
    if returns is not None:
        rows[-1][EPISODE_RETURNS] = returns
    return rows


def test_solved_then_falls_then_recovers():
    # Pendulum-like: solves at 4000, falls to -464..-756, recovers from 7000 on
    evals = _evals([-1200, -800, -400, -190, -464, -756, -180, -150, -160], returns=[-120, -150, -410, -130])
    s = stability(evals, -200.0, -400.0)
    assert set(s) == set(STABILITY_KEYS)
    assert s["stably_solved_at"] == 7000  # the first evaluation after which (it included) all are solved
    assert s["solved_fraction_after_first"] == pytest.approx(4 / 6)  # from 4000 on: 4000, 7000, 8000, 9000 of 6
    assert s["worst_return_after_solved"] == -756
    assert s["ends_solved"] is True
    assert s["failed_episode_fraction"] == 0.25  # one of the last evaluation's four episodes below -400


def test_solved_at_the_first_crossing_and_held():
    s = stability(_evals([100, 480, 500, 490]), 475.0)
    assert s["stably_solved_at"] == 2000 and s["solved_fraction_after_first"] == 1.0
    assert s["worst_return_after_solved"] == 480 and s["ends_solved"] is True
    assert s["failed_episode_fraction"] is None  # no failure line given


def test_solved_then_lost_at_the_end():
    s = stability(_evals([100, 480, 500, 132], returns=[132, 90, 300]), 475.0, 195.0)
    assert s["stably_solved_at"] is None and s["ends_solved"] is False
    assert s["solved_fraction_after_first"] == pytest.approx(2 / 3) and s["worst_return_after_solved"] == 132
    assert s["failed_episode_fraction"] == pytest.approx(2 / 3)


def test_solved_only_at_the_last_evaluation_and_exactly_at_the_threshold():
    s = stability(_evals([-900, -300, -200.0]), -200.0)
    assert s["stably_solved_at"] == 3000 and s["solved_fraction_after_first"] == 1.0
    assert s["worst_return_after_solved"] == -200.0 and s["ends_solved"] is True


def test_never_solved():
    s = stability(_evals([-900, -300], returns=[-300, -1200]), -200.0, -400.0)
    assert s == {"stably_solved_at": None, "solved_fraction_after_first": None, "worst_return_after_solved": None,
                 "ends_solved": False, "failed_episode_fraction": 0.5}


def test_no_threshold_no_evaluations_and_old_records():
    assert stability([], -200.0, -400.0) == dict.fromkeys(STABILITY_KEYS)
    s = stability(_evals([10, 20], returns=[5.0, -1.0]), None, 0.0)  # an env with a failure line but no threshold
    assert s["ends_solved"] is None and s["stably_solved_at"] is None and s["failed_episode_fraction"] == 0.5
    old = stability(_evals([-900, -150]), -200.0, -400.0)  # written before per-episode returns were kept
    assert old["failed_episode_fraction"] is None and old["stably_solved_at"] == 2000 and old["ends_solved"] is True


def test_registry_failure_lines_and_maximum_returns():
    for env_id, failure, top in (("Pendulum-v1", -400.0, 0.0), ("pathwise/Pendulum-v1", -400.0, 0.0),
                                 ("CartPole-v1", 195.0, 500.0), ("pathwise/CartPole-v1", 195.0, 500.0),
                                 ("MountainCarContinuous-v0", 0.05, 100.0), ("Acrobot-v1", -499.5, 0.0)):
        r = registry.record(env_id)
        assert (r.failure_below, r.max_return) == (failure, top), env_id
        assert r.solved_at is not None and r.failure_below < r.solved_at <= r.max_return, env_id
    assert registry.record("Pendulum-v1").state_names == ("theta", "theta_dot")
    assert registry.record("pathwise/CartPoleSwingUp-v0").failure_below is None
    assert registry.record("Unknown-v0").failure_below is None and registry.record("Unknown-v0").state_names == ()


def test_register_refuses_a_failure_line_that_is_not_a_number():
    try:
        with pytest.raises(ValueError, match=r"failure_below must be a return \(a number\) or None, got '-400'"):
            registry.register("pathwise-test/Stab-v0", failure_below="-400")
        with pytest.raises(ValueError, match="max_return must be a return"):
            registry.register("pathwise-test/Stab-v0", max_return=math.nan)
        with pytest.raises(ValueError, match="state_names must be a tuple of names, got the string 'theta'"):
            registry.register("pathwise-test/Stab-v0", state_names="theta")
        r = registry.register("pathwise-test/Stab-v0", failure_below=-10, max_return=0.0, state_names=("x",))
        assert (r.failure_below, r.max_return, r.state_names) == (-10, 0.0, ("x",))
    finally:
        registry.unregister("pathwise-test/Stab-v0")


# Issue 16's criterion on untuned seeds, at the budgets benchmarks/bench_learners.py --full-budget runs (Pendulum-v1:
# 20k steps for ddpg and svg0, 10k for svg1 and svgk, 5k for mbrl and svg-inf; CartPole-v1: the presets' 100k for
# reinforce and qac, 50k for svg0-discrete), each with its preset's evaluations: after the first evaluation that solves,
# at least 90% of the evaluations stay solved, and the last one is solved. Read back from the run's own summary.json.
# svg1 fell after its first solve on both (85% and 87%) at a constant policy step; its preset now decays the step
# (cosine to a tenth over 20,000 actor steps): 100% and 94%.
# svgk on a learned model: seed 9 first solved at 8,400 and ended at -613 (20% solved after its first solve) before its
# value and bootstrap were bounded by the range of the rewards seen (value_bound); with it, solved from 400 on (100%).
# svg0 seeds 8 and 9 are its closest calls in the benchmark (94% each).
# CartPole-v1: qac collapsed after solving on seeds 9 and 10 (33% and 42%, ending at 148 and 167): its critic lagged
# far below values of ~1/(1-gamma) = 100, so the TD advantages were biased. Its preset now scales the critic's rewards
# by 0.1, reuses each segment for 4 clipped-surrogate steps on standardized weights and decays the policy step: seeds
# 7-11 95 / 92 / 100 / 100 / 100%. svg0-discrete fell on seeds 7 and 8 (33% and 67%; seed 7 ended at 130) with the
# straight-through Gumbel actor, whose mean gradient pointed away from the exact one after solving
# (benchmarks/ab_gumbel_gradient.py); its preset now follows the exact gradient over the two actions: seeds 7-11 100%.
# reinforce fell below 475 for a while after solving on seed 9 (83%; seed 8: 91%) with 8 episodes per update; its preset
# now takes 4 episodes per update (twice the updates per step): seeds 7-11 92 / 95 / 97 / 95 / 92%.
PENDULUM, CARTPOLE = "Pendulum-v1", "CartPole-v1"
UNTUNED = [("ddpg", PENDULUM, 9, 20_000), ("ddpg", PENDULUM, 11, 20_000),
           ("svg0", PENDULUM, 8, 20_000), ("svg0", PENDULUM, 9, 20_000),
           ("svg1", PENDULUM, 8, 10_000), ("svg1", PENDULUM, 11, 10_000),
           ("mbrl", PENDULUM, 7, 5_000), ("mbrl", PENDULUM, 10, 5_000),
           ("svg-inf", PENDULUM, 7, 5_000), ("svg-inf", PENDULUM, 10, 5_000),
           ("svgk", PENDULUM, 9, 10_000), ("svgk", PENDULUM, 10, 10_000),
           ("reinforce", CARTPOLE, 8, 100_000), ("reinforce", CARTPOLE, 9, 100_000),
           ("qac", CARTPOLE, 8, 100_000), ("qac", CARTPOLE, 10, 100_000),
           ("svg0-discrete", CARTPOLE, 7, 50_000), ("svg0-discrete", CARTPOLE, 8, 50_000)]


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env", "seed", "steps"), UNTUNED)
def test_learner_stays_solved_on_an_untuned_seed(algo, env, seed, steps, tmp_path):
    train(algo, env, steps, seed=seed, out=tmp_path / "run", quiet=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_steps"] >= steps and summary["steps_to_solve"] is not None, summary
    assert summary["ends_solved"] is True, summary
    assert summary["solved_fraction_after_first"] >= 0.9, summary
