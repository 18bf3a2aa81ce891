"""PETS (pathwise.algorithms.pets): its action is CEM's over the learned model, it solves a known problem through a
fitted model, it compiles once across steps and refits, it trains through the model-based loop, bad options are
refused, and (slow) it swings Pendulum-v1 up within its preset's budget."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise import replay
from pathwise.algorithms import pets
from pathwise.control import CEMConfig, cem
from pathwise.loops import act_once, update_once
from pathwise.loops import model_based
from pathwise.loops.model_based import ModelData, learned_system
from pathwise.models import Dataset, DynamicsModel, FitConfig, LearnedModel, fit
from pathwise.spec import from_env
from pathwise.types import Transition

SMALL = dict(model_hidden=(16,), model_ensemble=3, plan_horizon=8, plan_samples=32, plan_elites=4,
             plan_iterations=2, plan_starts=2)
DI = pw.systems.double_integrator(action_bound=2.0)  # x' = A x + B u, reward -(x'Qx + 0.1 u²); CEM boxes u in ±2
X0 = jnp.array([0.5, 0.0])


def _buffer(obs, actions, next_obs, rewards) -> replay.ReplayBuffer:
    """The data set D of the model-based loop holding these transitions."""
    n = obs.shape[0]
    items = Transition(obs, actions, rewards, next_obs, jnp.zeros(n, bool), jnp.zeros(n, bool))
    return replay.add_batch(replay.init(jax.tree.map(lambda x: x[0], items), n), items)


@pytest.fixture(scope="module")
def double_integrator_model():
    """A deterministic model of the double integrator fitted on 1,000 uniform transitions (states in ±2, actions in
    ±2), as the loop's ``LearnedModel`` with the system's own reward; and D."""
    k_x, k_u, k_model, k_fit = jax.random.split(jax.random.key(0), 4)
    obs = jax.random.uniform(k_x, (1000, 2), minval=-2.0, maxval=2.0)
    actions = jax.random.uniform(k_u, (1000, 1), minval=-2.0, maxval=2.0)
    next_obs = jax.vmap(DI.step)(obs, actions)
    ends = jnp.arange(1000) % 10 == 9  # independent draws: every 10th one "ends an episode" for the held-out error
    model, report = fit(DynamicsModel(2, 1, (32, 32), key=k_model), Dataset(obs, actions, next_obs, ends),
                        FitConfig(learning_rate=3e-3, steps_per_epoch=200, max_epochs=10), k_fit)
    assert report.one_step_mse < 1e-4, report  # the model is the system to this precision on its data
    system = LearnedModel(model, lambda o, a, o2: DI.reward(o, a, o2), action_low=-2.0, action_high=2.0)
    return system, _buffer(obs, actions, next_obs, jax.vmap(DI.reward)(obs, actions, next_obs))


def test_the_planned_action_is_cems_over_the_model_and_solves_the_known_problem(double_integrator_model):
    """Through a fitted model of the double integrator, act returns exactly the first action of ``cem`` over that
    model (with ``key``; deterministic: with the fixed key 0), and it is within 0.02 of CEM's on the true system with
    the same samples and of the 15-step LQR optimum's first action (-1.04, inside the box)."""
    system, buffer = double_integrator_model
    config = pets.Config(plan_horizon=15, plan_samples=300, plan_elites=30, plan_iterations=15, plan_smoothing=0.0,
                         model_sampling="mean", plan_starts=1)
    state = pets.State(pw.control.SamplingMPC(learned_system_like(system), config.planner()))
    state, metrics = update_once(pets.update, state, ModelData(system, buffer, buffer), jax.random.key(1), config)
    key = jax.random.key(2)
    action = act_once(pets.act, state, X0, key, False)
    np.testing.assert_allclose(action, _plan(system, X0, key, config.planner())[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(act_once(pets.act, state, X0, key, True),
                               _plan(system, X0, jax.random.key(0), config.planner())[0], rtol=0, atol=1e-6)
    true = _plan(DI, X0, key, dataclasses.replace(config.planner(), particles=0))[0]
    lqr = pw.control.lqr(DI.A, DI.B, DI.Q, DI.R, horizon=15, Qf=jnp.zeros((2, 2)))
    optimal = -lqr.K[0] @ X0
    assert abs(float(action[0] - true[0])) < 0.02 and abs(float(action[0] - optimal[0])) < 0.02, \
        (action, true, optimal)
    assert float(optimal[0]) < -1.0  # a real push, not the box's midpoint
    assert np.isfinite(float(metrics["planned_return"]))


def learned_system_like(system: LearnedModel) -> LearnedModel:
    """An untrained model of the same shape as ``system`` (what ``init`` would plan over before the first fit)."""
    return LearnedModel(DynamicsModel(2, 1, (32, 32), key=jax.random.key(9)), system.reward_fn, action_low=-2.0,
                        action_high=2.0)


def test_act_is_in_the_box_and_compiles_once_across_steps_and_refits(compilations):
    """On Pendulum-v1: actions lie in [-2, 2]; after the first call neither new observations, keys, nor a refitted
    model handed to ``update`` (the loop's ``learned_system``) compile anything again."""
    spec, config = from_env("Pendulum-v1"), pets.Config(**SMALL)
    state = pets.init(jax.random.key(0), spec, config)
    obs = np.asarray(jax.random.uniform(jax.random.key(1), (6, 3), minval=-1.0, maxval=1.0))  # (no eager slicing)
    buffer = _buffer(jnp.asarray(obs), jnp.zeros((6, 1)), jnp.asarray(obs), jnp.zeros(6))
    model = config.new_model(spec, jax.random.key(5))
    refits = [ModelData(learned_system(eqx.apply_updates(model, jax.tree.map(lambda x: 0.01 * i * x, eqx.filter(
        model, eqx.is_inexact_array))), spec, spec.max_steps(config), config), buffer, buffer) for i in range(3)]
    for deterministic in (False, True):  # the first call of each mode compiles
        act_once(pets.act, state, obs[0], jax.random.key(0), deterministic)
    update_once(pets.update, state, refits[0], jax.random.key(0), config)
    with compilations() as n:
        actions = [act_once(pets.act, state, o, jax.random.key(i), i % 2 == 0) for i, o in enumerate(obs)]
        for i, data in enumerate(refits[1:]):  # two refits: new parameters, same structure
            state, metrics = update_once(pets.update, state, data, jax.random.key(i), config)
            actions.append(act_once(pets.act, state, obs[i], jax.random.key(i), False))
    assert n[0] == 0, f"{n[0]} compilations after the first act and update"
    actions = np.stack(actions)
    assert actions.shape == (8, 1) and np.all(np.abs(actions) <= 2.0) and np.all(np.isfinite(actions))
    assert len(set(np.round(actions[:, 0], 5))) > 1  # not a constant
    assert state.planner.system.model is not None and np.isfinite(float(metrics["planned_return"]))


@pytest.mark.parametrize("elite", [0, 1])
def test_particles_follow_the_sampled_elite(elite):
    """With ts-inf particles each rollout follows a member drawn from the elites: on a 2-member ensemble whose one
    elite is ``elite``, CEM with 3 particles plans exactly as CEM over that member alone (the elites' mean), and the
    two members' plans differ (so the particles did not follow the other one)."""
    model = DynamicsModel(3, 1, (16,), key=jax.random.key(3), ensemble_size=2, gaussian=True, num_elites=1)
    plans = {}
    for e in (0, 1):
        one = eqx.tree_at(lambda m: m.elites, model, jnp.arange(2) == e)
        for sampling, particles in (("ts-inf", 3), ("mean", 0)):
            system = LearnedModel(one, pw.rewards.get("Pendulum-v1"), action_low=-2.0, action_high=2.0,
                                  sampling=sampling)
            config = CEMConfig(horizon=6, samples=16, elites=4, init_iterations=2, particles=particles)
            plans[e, sampling] = np.asarray(_plan(system, jnp.array([1.0, 0.0, 0.0]), jax.random.key(4), config))
    np.testing.assert_allclose(plans[elite, "ts-inf"], plans[elite, "mean"], rtol=0, atol=1e-4)
    assert np.max(np.abs(plans[0, "mean"] - plans[1, "mean"])) > 1e-2


@eqx.filter_jit
def _plan(system, obs, key, config):
    """The plan (mean action sequence) of ``cem(system, obs, key, config)``, compiled."""
    return cem(system, obs, key, config).actions


def test_pets_trains_through_the_model_based_loop(tmp_path):
    """A tiny run: one random episode, then CEM episodes; the planner's model is the loop's fitted model (frozen),
    the metrics report the planned return, and the run saves and reloads to the same actions."""
    agent = pw.make("pets", env="Pendulum-v1", seed=0, quiet=True, max_episode_steps=30, buffer_size=500,
                    model_steps_per_epoch=2, model_max_epochs=1, model_batch=8, **SMALL)
    agent.learn(201)  # the random episode, then one planned by CEM
    run = agent.run
    assert run.env_steps == 400 and int(run.carry.episodes) == 2
    fitted = run.carry.model.nets.layers[0].weight
    np.testing.assert_array_equal(run.carry.algo.planner.system.model.nets.layers[0].weight, fitted)
    obs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -3.0]], np.float32)
    actions, _ = agent.predict(obs)
    assert actions.shape == (2, 1) and np.all(np.abs(actions) <= 2.0)
    again = pw.load(agent.save(tmp_path / "pets.npz"), quiet=True)
    np.testing.assert_allclose(again.predict(obs)[0], actions, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def warm_run():
    """A tiny PETS run on Pendulum-v1 (200-step episodes): one random episode, then two planned by CEM carrying its
    plan from step to step; its carry before the third iteration and the own planner's compiled programs before
    and after that iteration (the model refitted once more in between)."""
    from pathwise.train import make_run

    run, _ = make_run("pets", "Pendulum-v1", 0, use_preset=False, overrides=dict(
        SMALL, buffer_size=600, model_steps_per_epoch=2, model_max_epochs=1, model_batch=8))
    run.iteration(), run.iteration()
    sizes, pre = model_based.own_plan_steps._cached._cache_size(), run.carry
    run.iteration()
    return run, pre, (sizes, model_based.own_plan_steps._cached._cache_size())


def test_the_episode_carries_the_plan_from_step_to_step(warm_run):
    """The third episode's stored actions are those of ``SamplingMPC.init`` then ``step`` along its observations
    (over the planner ``update`` kept, with the loop's acting key): each step's CEM starts from the step before's
    shifted mean (its first 50 steps). ``act``, which plans every step from the box midpoint with the same refits,
    acts otherwise."""
    run, pre, _ = warm_run
    data, start = model_based.dataset(run.carry.buffer), -run.loop.limit  # the last episode's start
    obs, actions = jnp.asarray(data.obs[start:start + 50]), np.asarray(data.actions[start:start + 50])
    k_act = jax.random.split(jax.random.split(pre.key, 4)[1])[1]  # the iteration's collect key, then its acting key
    mpc = pets.episode_planner(pre.algo, run.config)
    assert mpc is pre.algo.planner
    plans = model_based.own_plan_starts(mpc, obs[:1], k_act[None])
    replanned = []
    for o in obs:
        plans, action = model_based.own_plan_steps(mpc, plans, o[None])
        replanned.append(np.asarray(action[0]))
    np.testing.assert_allclose(np.stack(replanned), actions, rtol=0, atol=1e-5)
    cold = np.stack([np.asarray(act_once(pets.act, pre.algo, o, jax.random.key(i), False)) for i, o in enumerate(obs)])
    assert np.max(np.abs(cold - actions)) > 0.1


def test_the_carried_plan_compiles_once_across_refits(warm_run):
    """A refitted model is new weights in the same structure: the own planner's step is compiled for the second
    episode and reused for the third."""
    before, after = warm_run[2]
    assert before >= 1 and after == before


def test_the_evaluation_plays_the_carried_plan_and_none_plays_act(warm_run):
    """The run's evaluation (``planner=None``) plays the own planner, plan carried, as ``Run.planner()`` does;
    ``planner=False`` plays ``act``; options for another planner are refused; ``plan_warm_start=False`` evaluates by
    ``act`` and collects its episodes with it (as every run did before the option)."""
    import copy

    run = warm_run[0]
    assert run.loop.evaluates_by_planner(run.carry)
    warm, cold = np.asarray(run.evaluate(2, 7).returns), np.asarray(run.evaluate(2, 7, planner=False).returns)
    np.testing.assert_array_equal(warm, run.evaluate(2, 7, planner={}).returns)
    assert np.all(warm != cold)
    with pytest.raises(ValueError, match="acts by planning already"):
        run.planner("mppi")
    off, off.loop = copy.copy(run), copy.copy(run.loop)
    off.config = off.loop.config = dataclasses.replace(run.config, plan_warm_start=False)
    assert not off.loop.evaluates_by_planner(off.carry)
    np.testing.assert_array_equal(off.evaluate(2, 7).returns, cold)
    with pytest.raises(ValueError, match="acts by planning already"):
        off.planner()
    assert off.loop._actor(off.carry, jax.random.key(0)).__qualname__.startswith("ModelBasedLoop._policy_actor")


def test_the_evaluation_and_the_deterministic_act_plan_without_the_exploration_bonus_and_keep_the_penalty():
    """With an exploration bonus the real episodes plan over the model with it (β − λ), while the run's planning
    agent (its evaluations, ``pathwise evaluate``) and a deterministic ``act`` (``agent.predict``) plan over the same
    model without it, the pessimism penalty λ kept: their actions are the own planner's over that model, and differ
    from those with the bonus."""
    from pathwise.train import make_run

    run, _ = make_run("pets", "Pendulum-v1", 0, use_preset=False, overrides=dict(
        SMALL, buffer_size=300, max_episode_steps=20, model_steps_per_epoch=2, model_max_epochs=1, model_batch=8,
        exploration_bonus=1000.0, uncertainty_penalty=1.0))
    run.iteration()  # the random episode, the fit, the update
    own = run.loop.own_planner(run.carry)
    assert (own.system.bonus, own.system.penalty) == (1000.0, 1.0)
    obs = jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 1.0]])
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(2))

    def first_actions(mpc):
        return np.asarray(model_based.own_plan_steps(mpc, model_based.own_plan_starts(mpc, obs, keys), obs)[1])

    free = learned_system(run.carry.model, run.spec, run.loop.limit,
                          dataclasses.replace(run.config, exploration_bonus=0.0))
    assert (free.bonus, free.penalty) == (0.0, 1.0)
    free_mpc = eqx.tree_at(lambda p: p.system, own, free)
    exploiting = first_actions(free_mpc)
    np.testing.assert_allclose(run.planner(seed=3)(np.asarray(obs)), exploiting, rtol=0, atol=1e-6)
    assert np.max(np.abs(first_actions(own) - exploiting)) > 0.1
    acted = np.stack([act_once(pets.act, run.carry.algo, o, jax.random.key(9), True) for o in obs])
    np.testing.assert_allclose(acted, [free_mpc.solve(o, jax.random.key(0)).actions[0] for o in obs], rtol=0,
                               atol=1e-6)
    assert np.max(np.abs(acted - np.stack([own.solve(o, jax.random.key(0)).actions[0] for o in obs]))) > 0.1
    explored = np.asarray(act_once(pets.act, run.carry.algo, obs[1], jax.random.key(9), False))
    np.testing.assert_allclose(explored, own.solve(obs[1], jax.random.key(9)).actions[0], rtol=0, atol=1e-6)


def test_a_run_recorded_before_the_warm_start_reads_as_planning_every_step_anew():
    """A PETS run record without ``plan_warm_start`` (written before the option) ran planning every step from the
    box midpoint: it reads back so, while a new config carries the plan."""
    from pathwise.config import upgrade

    assert upgrade(pets.Config, {})["plan_warm_start"] is False and pets.Config().plan_warm_start


@pytest.mark.parametrize("options, message", [
    ({"plan_elites": 50, "plan_samples": 40}, "plan_elites=50 must be at most plan_samples=40"),
    ({"plan_smoothing": 1.0}, r"plan_smoothing=1.0 must be in \[0, 1\)"),
    ({"plan_particles": 0}, "plan_particles"),
    ({"plan_samples": 1}, "plan_samples"),
    ({"plan_horizon": 0}, "plan_horizon"),
    ({"model_sampling": "ts-2"}, "model_sampling"),
    ({"model_elites": 6}, "model_elites=6 must be at most model_ensemble=5"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        pets.Config(**options)


def test_particles_need_a_system_that_samples():
    with pytest.raises(ValueError, match="particles=2 scores samples on system.sample.* has no sample method"):
        cem(pw.systems.Pendulum(), jnp.array([jnp.pi, 0.0]), jax.random.key(0), CEMConfig(horizon=5, samples=8,
                                                                                          elites=2, particles=2))
    with pytest.raises(ValueError, match="particles"):
        CEMConfig(particles=-1)


def test_pets_needs_continuous_actions():
    with pytest.raises(ValueError, match="pets needs continuous"):
        pw.make("pets", env="CartPole-v1", quiet=True)


@pytest.mark.slow
def test_pets_swings_up_pendulum_within_its_preset_budget():
    """The Pendulum-v1 preset on seed 0 reaches the solved line (-200) within its 2,000 steps."""
    from pathwise.train import train

    _, summary = train("pets", "Pendulum-v1", seed=0, quiet=True,
                       callback=lambda info: "eval_return_mean" not in info or info["eval_return_mean"] < -200)
    assert summary["steps_to_solve"] is not None and summary["steps_to_solve"] <= 2000, summary


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """Train 200 steps, resume to 400: the metrics and evaluations equal one 400-step run's (the planner's model and
    key survive the checkpoint)."""
    from pathwise.cli import main
    from runfiles import rows

    sets = ["model_hidden=8", "model_ensemble=2", "model_steps_per_epoch=2", "model_max_epochs=1", "model_batch=8",
            "plan_horizon=4", "plan_samples=8", "plan_elites=2", "plan_iterations=1", "plan_starts=2"]

    def argv(out, steps):
        return ["train", "pets", "--env", "Pendulum-v1", "--steps", str(steps), "--seed", "1", "--out", str(out),
                "--quiet", "--eval-episodes", "1", "--eval-every", "200", "--no-preset", "--set", *sets]

    half, full = tmp_path / "half", tmp_path / "full"
    assert main(argv(half, 200)) == 0
    assert main(["train", "--resume", str(half), "--steps", "400", "--quiet"]) == 0
    assert main(argv(full, 400)) == 0
    assert len(rows(full / "metrics.csv")) == 2 and rows(half / "metrics.csv") == rows(full / "metrics.csv")
    assert rows(half / "eval.csv") == rows(full / "eval.csv")
