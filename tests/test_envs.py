"""pathwise.envs: seeding, terminated vs truncated, SAME_STEP autoreset, helpful errors."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from pathwise.envs import Collector, evaluate, make_env, make_vec_env, reset_states, run_episode


def pendulum_act(obs):
    """A deterministic, state-dependent torque (so different seeds give different returns)."""
    return np.array([np.clip(-2.0 * obs[1] - 0.5 * obs[2], -2, 2)], np.float32)


def cartpole_act(obs):
    """Pushes against the pole's lean (the wrong way): deterministic, terminates within ~20 steps."""
    return int(obs[2] < 0.0)


def test_unknown_id_names_close_matches_and_how_to_list():
    with pytest.raises(ValueError, match=r"Unknown environment id 'Pendulm-v1'\. Did you mean Pendulum-v1.*pprint_registry"):
        make_env("Pendulm-v1")
    with pytest.raises(ValueError, match="Unknown environment id"):
        make_vec_env("NoSuchThing-v9", 2)


def test_make_env_accepts_gymnasium_and_pathwise_ids_and_records_episodes():
    for env_id in ("Pendulum-v1", "pathwise/Pendulum-v1"):
        env = make_env(env_id, seed=3)
        _, ret, length = run_episode(env, pendulum_act, seed=0)
        assert length == 200 and len(env.return_queue) == 1
        np.testing.assert_allclose(env.return_queue[-1], ret, rtol=1e-5)
        env.close()


def test_seeded_evaluation_is_deterministic_and_episode_i_uses_seed_plus_i():
    a = evaluate(pendulum_act, "Pendulum-v1", episodes=3, seed=10)
    b = evaluate(pendulum_act, "Pendulum-v1", episodes=3, seed=10)
    c = evaluate(pendulum_act, "Pendulum-v1", episodes=2, seed=11)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.returns[1:], c.returns)
    assert len(set(a.returns.tolist())) == 3  # different seeds -> different initial states
    np.testing.assert_allclose([a.mean, a.std], [a.returns.mean(), a.returns.std()])
    np.testing.assert_array_equal(a.lengths, 200)
    assert evaluate(pendulum_act, "Pendulum-v1", episodes=1, seed=0, max_steps=17).lengths[0] == 17


def test_cartpole_terminates_and_pendulum_truncates():
    batch, ret, length = run_episode(make_env("CartPole-v1"), cartpole_act, seed=0)
    assert length < 500 and ret == length
    assert batch.terminated[-1] and not batch.terminated[:-1].any() and not batch.truncated.any()
    assert batch.obs.shape == (length, 4) and batch.action.shape == (length,)
    np.testing.assert_array_equal(batch.obs[1:], batch.next_obs[:-1])

    batch, _, length = run_episode(make_env("Pendulum-v1"), pendulum_act, seed=0)
    assert length == 200
    assert batch.truncated[-1] and not batch.truncated[:-1].any() and not batch.terminated.any()


def reference_transitions(env_id, act, seed, num_steps):
    """The same data from one plain env: reset(seed) once, then unseeded resets, stepped one transition at a time."""
    env = make_env(env_id)
    out, obs = [], env.reset(seed=seed)[0]
    for _ in range(num_steps):
        action = act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, next_obs, np.float32(reward), terminated, truncated))
        obs = env.reset()[0] if terminated or truncated else next_obs
    return [np.stack(col) for col in zip(*out)]


@pytest.mark.parametrize(
    "env_id, act, num_steps",
    [("CartPole-v1", cartpole_act, 80), ("Pendulum-v1", pendulum_act, 205)],
)
def test_collector_matches_single_env_with_true_final_observations(env_id, act, num_steps):
    num_envs, seed = 2, 7
    collector = Collector(make_vec_env(env_id, num_envs), seed=seed)
    batch_act = lambda obs: np.stack([np.asarray(act(o)) for o in obs])  # noqa: E731
    first = collector.collect(batch_act, num_steps - 5)
    rest = collector.collect(batch_act, 5)  # episodes continue across calls
    fields = ("obs", "next_obs", "reward", "terminated", "truncated")
    data = [np.concatenate([getattr(first, f), getattr(rest, f)]) for f in fields]
    assert first.obs.shape == (num_steps - 5, num_envs, *collector.envs.single_observation_space.shape)
    for i in range(num_envs):
        ref = reference_transitions(env_id, act, seed + i, num_steps)
        for ours, theirs in zip(data, ref):
            np.testing.assert_array_equal(ours[:, i], theirs)
    done = data[3] | data[4]
    assert done.any(), "the test must cross an episode boundary"
    # next_obs at an episode end is the final observation, not the reset one.
    t, i = np.argwhere(done)[0]
    assert not np.array_equal(data[1][t, i], data[0][t + 1, i])
    if env_id == "Pendulum-v1":
        assert data[4][199].all() and not data[3].any()
    else:
        assert data[3].any() and not data[4].any()
    assert len(collector.episode_returns) == int(done.sum())
    assert collector.last_returns == collector.episode_returns[len(collector.episode_returns) - len(collector.last_returns):]
    collector.close()


def test_collector_episode_statistics_match_run_episode():
    collector = Collector(make_vec_env("CartPole-v1", 1), seed=4)
    collector.collect(lambda obs: np.array([cartpole_act(obs[0])]), 60)
    env = make_env("CartPole-v1")
    first = run_episode(env, cartpole_act, seed=4)
    second = run_episode(env, cartpole_act)
    assert collector.episode_returns[:2] == [first[1], second[1]]
    assert collector.episode_lengths[:2] == [first[2], second[2]]


def test_collector_rejects_next_step_autoreset():
    envs = gym.make_vec(
        "CartPole-v1", 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}
    )
    with pytest.raises(ValueError, match="autoreset_mode=SAME_STEP.*make_vec_env"):
        Collector(envs)
    envs.close()


def test_bad_discrete_action_is_explained():
    with pytest.raises(ValueError, match="single integer index"):
        run_episode(make_env("CartPole-v1"), lambda obs: np.array([0.5, 0.5]), seed=0)


def test_reset_states_are_the_states_seeded_resets_draw():
    states = reset_states("Pendulum-v1", 3, seed=7)
    env = gym.make("Pendulum-v1")
    for i in range(3):
        env.reset(seed=7 + i)
        np.testing.assert_array_equal(states[i], np.asarray(env.unwrapped.state, np.float32))
    env.close()
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        reset_states("Pendulum-v1", 0)


def test_evaluate_lockstep_plays_the_episodes_evaluate_plays():
    """``evaluate_lockstep`` plays ``evaluate``'s seeded episodes at once (CartPole-v1: they end at different steps):
    the same returns and lengths, whole or in groups of ``batch``; ``act`` sees the whole group at every step, ``t``
    counting from 0, and progress counts the episodes as they end."""
    from pathwise.envs import evaluate_lockstep

    weights = np.array([0.3, -0.8, 2.0, 0.5])  # a poor linear controller: episodes of different lengths
    alone = evaluate(lambda o: int(o @ weights > 0), "CartPole-v1", episodes=4, seed=3)
    seen, done = [], []

    def act(obs, t):
        seen.append((obs.shape, t))
        return (obs @ weights > 0).astype(np.int64)

    together = evaluate_lockstep(act, "CartPole-v1", episodes=4, seed=3, progress=done.append)
    np.testing.assert_array_equal(together.returns, alone.returns)
    np.testing.assert_array_equal(together.lengths, alone.lengths)
    assert len(set(alone.lengths)) > 1, alone.lengths
    assert [t for _, t in seen] == list(range(max(alone.lengths))) and {s for s, _ in seen} == {(4, 4)}
    assert done[-1] == 4 and done == sorted(done)
    seen.clear()
    groups = evaluate_lockstep(act, "CartPole-v1", episodes=4, seed=3, batch=3, progress=done.append)
    np.testing.assert_array_equal(groups.returns, alone.returns)  # three at once, then the fourth
    assert {s for s, _ in seen} == {(3, 4), (1, 4)} and [t for _, t in seen].count(0) == 2 and done[-1] == 4
    capped = evaluate_lockstep(act, "CartPole-v1", episodes=2, seed=3, max_steps=5)
    assert list(capped.lengths) == [5, 5]
    for bad in (dict(episodes=0), dict(batch=0)):
        with pytest.raises(ValueError, match="episodes and batch must be >= 1"):
            evaluate_lockstep(act, "CartPole-v1", **bad)
