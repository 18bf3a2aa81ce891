"""The model-based loop's acting planner (``act_planner``, TD-MPC's acting): real episodes act by MPPI or CEM over
the freshly fitted model, seeded by the policy and closed by the algorithm's value; it plans what the policy alone
does not find, compiles once across refits, acts from the warm-started plan, and bad options are refused."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import config as cfg_mod
from pathwise import envs
from pathwise.algorithms import svgk
from pathwise.control.sampling import CEMConfig, MPPIConfig
from pathwise.envs import run_episode
from pathwise.loops import episode_seed, model_based
from pathwise.train import make_run

#: svgk on Pendulum-v1 with two random episodes (400 transitions) before the first learned one, a 64x64 model and a
#: planner of 100 sequences of 25 steps, 3 refits per step (no value worth trusting yet: the policy has had one
#: update per iteration)
PLANNED = dict(random_episodes=2, updates_per_episode=1, model_hidden=(64, 64), act_plan_horizon=25,
               act_plan_samples=100, act_plan_iterations=3, act_plan_policy_fraction=0.0)


@pytest.fixture(scope="module")
def planned_run():
    """svgk on Pendulum-v1, seed 0, acting by CEM: the run after four iterations (two random episodes, two planned),
    its carry before the fourth, the returns of the four, and the number of compilations of the re-planning step
    before and after the fourth (its model refitted once more)."""
    run, _ = make_run("svgk", "Pendulum-v1", 0, overrides=dict(PLANNED, act_planner="cem"))
    returns = [run.iteration()["episode_return"] for _ in range(3)]
    before, pre = model_based.planned_step._cached._cache_size(), run.carry
    returns.append(run.iteration()["episode_return"])
    return run, pre, returns, (before, model_based.planned_step._cached._cache_size())


def _loop_keys(pre):
    """The keys the loop drew for the first episode of the iteration after ``pre``: (reset seed, acting key)."""
    k_collect = jax.random.split(pre.key, 4)[1]  # the iteration's keys: carry, collect, fit, update
    k_seed, k_act = jax.random.split(k_collect)
    return episode_seed(k_seed), k_act


def test_planning_over_the_fitted_model_holds_up_what_the_policy_does_not(planned_run):
    """After 600 transitions (two random episodes, one planned) the planner over the fitted model holds Pendulum-v1
    up in its episode (-120); the learner's own policy (one update per iteration, three so far) from the same
    start does not (-1,253)."""
    run, pre, returns, _ = planned_run
    seed, _ = _loop_keys(pre)
    _, policy_return, _ = run_episode(run.loop.env, lambda o: np.asarray(svgk.act(pre.algo, jnp.asarray(
        o, jnp.float32), jax.random.key(0), True)), seed=seed)
    assert policy_return < -700, policy_return
    assert returns[3] > -300, returns


def test_the_replanning_step_compiles_once_across_refits(planned_run):
    """A refitted model is new weights in the same structure: the planner's programs are reused."""
    before, after = planned_run[3]
    assert before >= 1 and after == before  # compiled for the third episode, reused for the fourth


def test_the_episode_acts_by_the_plan(planned_run):
    """The actions stored for the fourth episode are the warm-started plan's first actions, step after step: the
    plan made again along the stored observations (over the model the episode acted with, with the loop's key for
    acting) gives them again (its first 50 steps); the policy's own actions differ."""
    run, pre, _, _ = planned_run
    data = model_based.dataset(run.carry.buffer)
    obs, actions = jnp.asarray(data.obs[-200:-150]), np.asarray(data.actions[-200:-150])  # the last episode's start
    _, k_act = _loop_keys(pre)
    system = model_based.learned_system(pre.model, run.spec, 200, run.config)
    args = (svgk.act, svgk.planning_value, run.config, run.config.acting_planner())
    plan = model_based.planned_start(pre.algo, system, obs[0], k_act, *args)
    replanned = []
    for o in obs:
        plan, action = model_based.planned_step(pre.algo, system, plan, o, *args)
        replanned.append(np.asarray(action))
    np.testing.assert_allclose(np.stack(replanned), actions, atol=1e-5)
    policy_actions = jax.vmap(lambda o: svgk.act(pre.algo, o, jax.random.key(0), True))(obs)
    assert np.max(np.abs(np.asarray(policy_actions) - actions)) > 0.1


def test_the_acting_planner_config(planned_run):
    """``act_planner`` picks the planner's type; the planner discounts with the algorithm's γ (so that γ^H V closes
    the return as V was learned) and CEM refits to a tenth of its samples."""
    run = planned_run[0]
    cem = run.config.acting_planner()
    assert isinstance(cem, CEMConfig) and cem.horizon == 25 and cem.discount == run.config.gamma
    assert cem.elites == cem.samples // 10
    mppi = svgk.Config(act_planner="mppi").acting_planner()
    assert isinstance(mppi, MPPIConfig) and mppi.policy_fraction == 0.1
    assert svgk.Config().acting_planner() is None


def test_planning_value_is_the_value_in_reward_units():
    """svgk's ``planning_value`` undoes ``reward_scale``: V is learned on scaled rewards, the planner sums raw ones."""
    run, _ = make_run("svgk", "Pendulum-v1", 0, overrides=dict(reward_scale=0.1))
    obs = jnp.array([1.0, 0.0, 0.5])
    assert float(svgk.planning_value(run.carry.algo, obs, run.config)) == pytest.approx(
        float(run.carry.algo.value(obs)) / 0.1, rel=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (dict(act_planner="ilqr"), "act_planner"),
    (dict(act_planner="mppi", act_plan_policy_fraction=1.0), "act_plan_policy_fraction"),
    (dict(act_planner="mppi", act_plan_samples=1), "act_plan_samples"),
    (dict(act_planner="mppi", act_plan_horizon=0), "act_plan_horizon"),
])
def test_bad_acting_planner_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        svgk.Config(**overrides)


def test_pets_refuses_an_acting_planner():
    """PETS has no policy to seed a planner with: it plans already, and says so."""
    for option in (dict(act_planner="mppi"), dict(eval_planner=True)):
        with pytest.raises(ValueError, match="acts by planning already"):
            make_run("pets", "Pendulum-v1", 0, overrides=option)


def test_a_run_recorded_before_the_acting_planner_reads_as_acting_by_its_policy():
    """A model-based run record written before these options existed (none of the act_* keys, no eval_planner) reads
    with the policy acting and evaluated, as it ran."""
    old = {k: v for k, v in dataclasses.asdict(svgk.Config()).items()
           if not k.startswith("act_plan") and k != "eval_planner"}
    config = cfg_mod.from_dict(svgk.Config, cfg_mod.upgrade(svgk.Config, old), complete=True)
    assert config.act_planner == "none" and config.acting_planner() is None and config.eval_planner is False


# -- the planning agent after training (evaluation and deployment) ---------------------------------------------------


def test_the_planning_agent_holds_up_what_the_policy_does_not_and_plays_as_alone(planned_run):
    """``Run.evaluate(..., planner={})``: the run's planning agent (CEM over its last model) on the policy's three
    evaluation episodes, in lockstep, holds Pendulum-v1 up (mean > -300) where the deterministic policy does not
    (< -700); each episode returns what the same controller returns playing it alone, one episode after another
    (episode ``i`` draws from ``fold_in(key, i)``, whatever the batch)."""
    run = planned_run[0]
    together = run.evaluate(3, 10000, planner={})
    policy = envs.evaluate(lambda o: run.act(o), run.env_id, episodes=3, seed=10000)
    assert together.returns.mean() > -300 and policy.returns.mean() < -700, (together.returns, policy.returns)
    assert list(together.lengths) == [200, 200, 200]
    controller, env = run.planner(seed=10000), envs.make_env(run.env_id)
    alone = []
    for i in range(3):
        controller.reset()
        alone.append(run_episode(env, controller, seed=10000 + i)[1])
    np.testing.assert_allclose(alone, together.returns, rtol=1e-4)


def test_the_planning_agent_takes_the_runs_options_or_new_ones(planned_run):
    """By default the controller is the run's own acting planner (CEM, 25 steps); named options change it, and the
    imagined rewards carry no exploration bonus."""
    run = planned_run[0]
    own = run.planner()
    assert own.planner == run.config.acting_planner() and own.config.exploration_bonus == 0.0
    mppi = run.planner("mppi", horizon=7, samples=30, iterations=2, policy_fraction=0.5)
    assert isinstance(mppi.planner, MPPIConfig) and (mppi.planner.horizon, mppi.planner.samples,
                                                     mppi.planner.iterations) == (7, 30, 2)
    assert mppi.planner.policy_fraction == 0.5


def test_the_planning_agent_refuses_bad_input(planned_run):
    run = planned_run[0]
    with pytest.raises(ValueError, match="act_plan_horizon=0 must be > 0"):
        run.planner(horizon=0)
    with pytest.raises(ValueError, match="plan by 'mppi' or 'cem'"):
        run.planner("ilqr")
    with pytest.raises(ValueError, match="seed"):
        run.planner(seed=-1)
    controller = run.planner()
    with pytest.raises(ValueError, match=r"observation of shape \(4,\), expected \(3,\) or \(episodes, 3\)"):
        controller(np.zeros(4))
    with pytest.raises(ValueError, match="NaN or inf"):
        controller(np.array([1.0, np.nan, 0.0]))
    controller(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="call reset"):
        controller(np.zeros((3, 3)))
    controller.reset()
    assert controller(np.zeros(3)).shape == (1,)


def test_only_a_learned_model_is_planned_over():
    """A run on a known System (svgk's simulated loop) or a model-free one has no model to plan over; PETS plans
    already: its planning agent is its own CEM, another planner is refused."""
    for algo, env, message in (("svgk", "pathwise/Pendulum-v1", "learns no model to plan over"),
                               ("ddpg", "Pendulum-v1", "learns no model to plan over"),
                               ("pets", "Pendulum-v1", "acts by planning already")):
        run, _ = make_run(algo, env, 0, use_preset=False)
        with pytest.raises(ValueError, match=message):
            run.planner("mppi")
    if algo == "pets":  # its own CEM, the plan carried (tests/test_pets.py)
        assert isinstance(run.planner(), model_based.PlanningController)


def test_a_run_with_eval_planner_is_evaluated_by_its_planning_agent(planned_run):
    """``eval_planner=True``: the trainer's evaluation (what picks best.npz and stops at a target) and the actor of
    a render (a video's) play the planning agent, the one ``Run.evaluate(..., planner={})`` plays; ``planner=False``
    still asks for the policy."""
    import copy

    from pathwise.train import Trainer

    run = copy.copy(planned_run[0])
    run.config = dataclasses.replace(run.config, eval_planner=True)
    trainer = Trainer(run, eval_episodes=2)
    by_planner = trainer.evaluate()["eval_return_mean"]
    assert by_planner == pytest.approx(run.evaluate(2, trainer.eval_seed, planner={}).mean, abs=1e-9)
    assert by_planner > -300 and trainer.evaluate(planner=False)["eval_return_mean"] < -700
    first = run.evaluate(1, trainer.eval_seed).returns[0]
    env = envs.make_env(run.env_id)
    assert run_episode(env, run.episode_actor(trainer.eval_seed), seed=trainer.eval_seed)[1] == pytest.approx(first)
