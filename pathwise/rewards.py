"""Known, differentiable rewards of Gymnasium environments, as functions of observations.

A model-based learner that fits only the dynamics (``pathwise.models``) plans
through ``r(o, a, o')`` written in JAX: ``reward_fn(obs, action, next_obs) ->
scalar`` on one unbatched transition (``jax.vmap`` it for batches). Each
function equals the environment's own reward on the observations the
environment returns (``tests/test_rewards.py``).

    fn = pathwise.rewards.get("Pendulum-v1")
    pathwise.rewards.register("MyEnv-v0", my_fn)   # e.g. MuJoCo rewards, elsewhere

The functions live here; which environment has which reward (and termination) is
recorded in ``pathwise.registry``: ``Pendulum-v1`` and ``MountainCarContinuous-v0``
(written out from Gymnasium's source), every ``pathwise/...`` id whose observation
determines the state and the Gymnasium id it reproduces (``reward_from_system``,
``termination_from_system``), and MuJoCo ``InvertedPendulum-v5``/``-v4`` (value exact,
derivative of a smooth surrogate: see ``inverted_pendulum_reward``) with its termination, and the DeepMind
Control Suite's ``dm_control/reacher-easy-v0`` (the same construction: ``reacher_easy_reward``). Terminations
alone: ``Hopper-v5`` (``hopper_terminated``), and ``never_terminated`` for ``HalfCheetah-v5`` and the DeepMind
Control Suite tasks.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax.numpy as jnp
from jax import lax

from pathwise.systems import System
from pathwise.types import Array

RewardFn = Callable[[Array, Array, Array], Array]


def register(env_id: str, fn: RewardFn, *, overwrite: bool = False) -> None:
    """Make ``fn(obs, action, next_obs) -> scalar`` the known reward of ``env_id`` (its registry record)."""
    from pathwise import registry

    if not callable(fn):
        raise ValueError(f"register: the reward of {env_id!r} must be callable fn(obs, action, next_obs), got {fn!r}.")
    registry.register(env_id, reward=fn, overwrite=overwrite)


def has(env_id: str) -> bool:
    """Whether a reward function is known for ``env_id``."""
    from pathwise import registry

    return registry.record(env_id).reward is not None


def get(env_id: str) -> RewardFn:
    """The known reward function of ``env_id``, or a ``ValueError`` saying what to do instead."""
    from pathwise import registry

    fn = registry.record(env_id).reward
    if fn is None:
        raise ValueError(f"no known reward for {env_id}; register one with pathwise.rewards.register(env_id, fn). "
                         f"Known: {', '.join(registry.known_rewards())}.")
    return fn


def pendulum_reward(obs: Array, action: Array, next_obs: Array) -> Array:
    """Gymnasium Pendulum-v1: ``-(theta^2 + 0.1 theta_dot^2 + 0.001 clip(u, -2, 2)^2)`` on the pre-step obs.

    ``obs = [cos theta, sin theta, theta_dot]``; ``theta = atan2(sin, cos)`` is
    in [-pi, pi] like Gymnasium's ``angle_normalize`` (the square is the same).
    """
    del next_obs
    theta = jnp.arctan2(obs[1], obs[0])
    u = jnp.clip(jnp.reshape(action, (-1,))[0], -2.0, 2.0)
    return -(theta**2 + 0.1 * obs[2] ** 2 + 0.001 * u**2)


def mountain_car_continuous_reward(obs: Array, action: Array, next_obs: Array) -> Array:
    """Gymnasium MountainCarContinuous-v0: ``100 * goal(next_obs) - 0.1 a^2`` (the *unclipped* action).

    ``goal = position >= 0.45 and velocity >= 0``. The bonus is a step function
    of ``next_obs``: its gradient is zero everywhere it is defined, so a
    gradient-based planner sees only the action cost.
    """
    del obs
    goal = (next_obs[0] >= 0.45) & (next_obs[1] >= 0.0)
    a = jnp.reshape(action, (-1,))[0]
    return jnp.where(goal, 100.0, 0.0) - 0.1 * a**2


# -- MuJoCo (the ``mujoco`` extra) -------------------------------------------------------------

INVERTED_PENDULUM_MAX_ANGLE = 0.2
"""Gymnasium InvertedPendulum-v4/v5 terminate once ``|obs[1]| > 0.2`` (pole angle, rad)."""


def inverted_pendulum_terminated(obs: Array) -> Array:
    """Gymnasium InvertedPendulum-v5 termination: a non-finite observation or ``|pole angle| > 0.2``."""
    return jnp.logical_or(~jnp.all(jnp.isfinite(obs)), jnp.abs(obs[1]) > INVERTED_PENDULUM_MAX_ANGLE)


def inverted_pendulum_reward(obs: Array, action: Array, next_obs: Array) -> Array:
    """Gymnasium InvertedPendulum-v5: ``1`` if the step did not terminate (``|next_obs[1]| <= 0.2``), else ``0``.

    ``obs = [cart position, pole angle, cart velocity, pole angular velocity]``; Gymnasium computes
    ``reward = int(not terminated)`` on the post-step observation. That reward is piecewise constant, so its
    true derivative is zero wherever it exists and a pathwise gradient through it alone would be zero.
    What is differentiable here: the VALUE returned is exactly Gymnasium's (``tests/test_mujoco.py``), but
    the DERIVATIVE is that of the smooth surrogate
    ``1 - (next_obs[1] / 0.2)^2`` (a straight-through construction ``r + (s - stop_gradient(s))``), which
    pushes the pole angle towards 0. Learners also see the termination (``inverted_pendulum_terminated``),
    through which no gradient flows.
    """
    del obs, action
    alive = 1.0 - inverted_pendulum_terminated(next_obs).astype(jnp.float32)
    surrogate = 1.0 - (next_obs[1] / INVERTED_PENDULUM_MAX_ANGLE) ** 2
    return alive + (surrogate - lax.stop_gradient(surrogate))  # exactly `alive` in value


INVERTED_PENDULUM_RAIL = 1.0
"""InvertedPendulum-v4/v5's cart slides on a rail that stops it at ``|obs[0]| = 1`` (the slider joint's range)."""


def inverted_pendulum_centred_reward(obs: Array, action: Array, next_obs: Array) -> Array:
    """A planning objective for InvertedPendulum-v5, not its reward: ``inverted_pendulum_reward`` times
    ``1 - (x / 1)^2``, ``x = next_obs[0]`` the cart's position on its rail.

    The task pays 1 per step the pole stays within 0.2 rad, wherever the cart is; but the rail stops the cart at
    ``|x| = 1`` and the stop tips the pole. A planner whose horizon is shorter than the time the cart takes to
    drift there scores every plan that keeps the pole up alike, lets the cart wander, and loses the pole at the
    rail (pets, measured in BENCHMARKS.md); this objective prices the distance from the centre in every step.
    Use it as a model-based run's imagined reward,
    ``reward_source="pathwise.rewards:inverted_pendulum_centred_reward"``: the real episodes and the evaluations
    keep scoring the task's reward.
    """
    centred = 1.0 - (next_obs[0] / INVERTED_PENDULUM_RAIL) ** 2
    return inverted_pendulum_reward(obs, action, next_obs) * centred


REACHER_EASY_RADII = 0.06
"""dm_control reacher-easy: the target's radius (``_BIG_TARGET`` 0.05) plus the finger's (0.01); the task's
``get_reward`` sums the two ``geom_size`` entries."""


def reacher_easy_reward(obs: Array, action: Array, next_obs: Array) -> Array:
    """DeepMind Control Suite reacher-easy: ``1`` while the fingertip is within 0.06 of the target's centre, else ``0``.

    The suite computes ``rewards.tolerance(d, (0, radii))`` with no margin on the post-step state, where ``d`` is
    the length of ``to_target`` (target minus fingertip, in the plane) and ``radii`` :data:`REACHER_EASY_RADII`.
    pathwise's flat observation is the Dict's keys in sorted order, ``[position (2), to_target (2), velocity (2)]``,
    so ``d = |next_obs[2:4]|``. Like ``inverted_pendulum_reward`` the VALUE is exactly the suite's
    (``tests/test_dmc.py``) and the DERIVATIVE is that of the smooth surrogate ``1 - d / radii``
    (straight-through ``r + (s - stop_gradient(s))``): its gradient points the fingertip at the target from every
    state, where the step itself has none. The target's position is drawn per episode and observed only through
    ``to_target``, so a model must predict how ``to_target`` moves with the arm.
    """
    del obs, action
    distance = jnp.sqrt(jnp.sum(next_obs[2:4] ** 2) + 1e-12)
    surrogate = 1.0 - distance / REACHER_EASY_RADII
    inside = (distance <= REACHER_EASY_RADII).astype(surrogate.dtype)
    return inside + (surrogate - lax.stop_gradient(surrogate))  # exactly `inside` in value


HOPPER_HEALTHY_Z = 0.7
"""Gymnasium Hopper-v5's default ``healthy_z_range`` is ``(0.7, inf)``: the torso height ``obs[0]`` must exceed it."""

HOPPER_HEALTHY_ANGLE = 0.2
"""Gymnasium Hopper-v5's default ``healthy_angle_range`` is ``(-0.2, 0.2)``: the torso angle ``obs[1]`` (rad)."""

HOPPER_HEALTHY_STATE = 100.0
"""Gymnasium Hopper-v5's default ``healthy_state_range`` is ``(-100, 100)``, on ``state_vector()[2:]``."""


def hopper_terminated(obs: Array) -> Array:
    """Gymnasium Hopper-v5 termination (default options): the hopper is no longer healthy.

    With ``exclude_current_positions_from_observation=True`` (the default) ``obs = [qpos[1:6], clip(qvel, -10,
    10)]``: torso height ``z``, torso angle, thigh, leg and foot angles, then the six velocities. Gymnasium's
    ``is_healthy`` asks ``0.7 < z``, ``-0.2 < angle < 0.2`` and every entry of ``state_vector()[2:]``
    (``qpos[2:]`` and the unclipped ``qvel``) inside ``(-100, 100)``; here that last check is on ``obs[1:]``. The
    observation clips velocities to 10, so a velocity beyond 100 (which Gymnasium would end the episode on) is
    the one case this function cannot see. A non-finite observation terminates (every comparison with NaN fails).
    """
    z, angle, state = obs[0], obs[1], obs[1:]
    healthy = (z > HOPPER_HEALTHY_Z) & (jnp.abs(angle) < HOPPER_HEALTHY_ANGLE)
    healthy = healthy & jnp.all((state > -HOPPER_HEALTHY_STATE) & (state < HOPPER_HEALTHY_STATE))
    return ~healthy


def never_terminated(obs: Array) -> Array:
    """The termination of a task that never terminates (HalfCheetah-v5, the Control Suite): always ``False``;
    episodes end only by truncation at the time limit."""
    del obs
    return jnp.zeros((), bool)


def reward_from_system(system: System | Callable[[], System]) -> RewardFn:
    """``system.reward`` expressed on observations, via ``system.state_from_obs``.

    ``system`` may be a factory: it is then built on the first call (building a system creates JAX arrays,
    which would start JAX's backend at import). Use it to register the reward of a system built with
    non-default parameters.
    """
    get = _built(system)

    def reward_fn(obs: Array, action: Array, next_obs: Array) -> Array:
        s = get()
        return s.reward(s.state_from_obs(obs), action, s.state_from_obs(next_obs))

    return reward_fn


def termination_from_system(system: System | Callable[[], System]) -> Callable[[Array], Array]:
    """``system.terminated`` expressed on observations, via ``system.state_from_obs`` (a factory: built lazily)."""
    get = _built(system)

    def terminated(obs: Array) -> Array:
        s = get()
        return s.terminated(s.state_from_obs(obs))

    return terminated


def _built(system: System | Callable[[], System]) -> Callable[[], System]:
    if isinstance(system, System):
        return lambda: system
    return functools.cache(system)


def observation_determines_state(system: System | type) -> bool:
    """Whether ``state_from_obs`` inverts ``observe`` (then the system's reward is known on observations).

    A class is judged by whether it overrides ``System.state_from_obs``; a function that builds a system
    (e.g. ``double_integrator``) is judged by the system it builds.
    """
    if isinstance(system, type):
        return system.state_from_obs is not System.state_from_obs
    if not isinstance(system, System):
        system = system()
    return type(system).state_from_obs is not System.state_from_obs


__all__ = [
    "HOPPER_HEALTHY_ANGLE",
    "HOPPER_HEALTHY_STATE",
    "HOPPER_HEALTHY_Z",
    "INVERTED_PENDULUM_MAX_ANGLE",
    "INVERTED_PENDULUM_RAIL",
    "REACHER_EASY_RADII",
    "RewardFn",
    "get",
    "has",
    "hopper_terminated",
    "inverted_pendulum_centred_reward",
    "inverted_pendulum_reward",
    "inverted_pendulum_terminated",
    "mountain_car_continuous_reward",
    "never_terminated",
    "observation_determines_state",
    "pendulum_reward",
    "reacher_easy_reward",
    "register",
    "reward_from_system",
    "termination_from_system",
]
