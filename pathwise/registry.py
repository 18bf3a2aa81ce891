"""What pathwise knows about an environment: one record per environment id.

An :class:`EnvRecord` holds, for one Gymnasium id, the differentiable ``System`` that reproduces it step
for step (if any), its reward and termination as JAX functions of observations (what model-based
learners plan through), the return at which it counts as solved, the return below which an episode failed
badly and the highest return possible, the names of its start state's entries, which observation entries are
unwrapped angles, and the id of its twin (``Pendulum-v1`` and ``pathwise/Pendulum-v1`` are the same task:
they share presets and the mean optimal-control ceiling). Presets and the ceiling are read through the
record (:meth:`EnvRecord.preset`, :attr:`EnvRecord.ceiling`).

Records are built on first use (building a system would start JAX's backend at import). A Gymnasium id
with no record gets an empty one: nothing is known beyond its spaces. Users add what they know::

    pathwise.registry.register("MyEnv-v0", reward=my_reward, solved_at=300.0)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable

from pathwise.types import Array

RewardFn = Callable[[Array, Array, Array], Array]
TerminationFn = Callable[[Array], Array]

#: Prefix of the Gymnasium ids under which pathwise registers its own systems.
NAMESPACE = "pathwise/"

#: Prefix of the DeepMind Control Suite ids (``pathwise.envs.dmc``, the ``dmc`` extra).
DMC_PREFIX = "dm_control/"


@dataclasses.dataclass(frozen=True)
class EnvRecord:
    """Everything pathwise knows about one environment id (fields default to 'unknown')."""

    id: str
    """The Gymnasium id."""
    system: Callable[..., Any] | None = None
    """Factory of the differentiable ``System`` that reproduces the environment step for step."""
    reward: RewardFn | None = None
    """``reward(obs, action, next_obs) -> scalar`` in JAX, equal to the environment's reward."""
    terminated: TerminationFn | None = None
    """``terminated(obs) -> bool`` in JAX, equal to the environment's termination."""
    solved_at: float | None = None
    """Mean evaluation return at which the task counts as solved."""
    angles: tuple[int, ...] = ()
    """Observation entries that are unwrapped angles (networks see them as cos/sin)."""
    twin: str | None = None
    """The other id of the same task (a pathwise system and the Gymnasium id it reproduces)."""
    failure_below: float | None = None
    """An evaluation episode whose return is below this failed badly (``summary.json``'s
    ``failed_episode_fraction``, ``pathwise evaluate``'s per-start report); None: no clear line."""
    max_return: float | None = None
    """The highest return an episode can reach under the default time limit (the learning curve's band is
    clipped to it); None: not known."""
    own_system: bool = False
    """A user's ``System`` behind the Gymnasium API (:mod:`pathwise.problems`): the environment *is* it, as for a
    ``pathwise/`` id."""
    state_names: tuple[str, ...] = ()
    """Names of the entries of the start state ``env.unwrapped.state`` holds after ``reset`` (``pathwise evaluate``
    reports each episode's start by them); empty: no per-start report."""
    presets_of: str | None = None
    """The id whose presets serve this one where it has none of its own (nor its twin): a user's instance of a
    pathwise system class with other parameters (``Pendulum(g=5.0)``) takes those of that class's own id
    (``pathwise/Pendulum-v1``, which shares ``Pendulum-v1``'s); None: none."""

    @property
    def env_id(self) -> str:
        """The Gymnasium id (as ``EnvSpec.env_id``)."""
        return self.id

    @property
    def native(self) -> bool:
        """Whether the environment *is* a pathwise ``System`` behind the Gymnasium API (a ``pathwise/`` id)."""
        return self.id.startswith(NAMESPACE) or self.own_system

    def preset(self, algo: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(config values, run settings)`` of the tuned preset for ``algo`` here (or for the twin, or for
        ``presets_of``: the first of them that has one)."""
        from pathwise import presets

        values, run = presets.load(algo, self.id)
        if not values and not run and self.twin:
            values, run = presets.load(algo, self.twin)
        if not values and not run and self.presets_of:
            values, run = record(self.presets_of).preset(algo)
        return values, run

    @property
    def ceiling(self) -> float | None:
        """Mean Gymnasium return of the measured optimal-control ceiling over its episodes (``ceilings.json``),
        if any; :meth:`episode_ceilings` gives it per evaluation episode."""
        from pathwise import ceilings

        found = ceilings.entry(self.id, self.twin)
        return None if found is None else float(found["mean"])

    def episode_ceilings(self, seed: int, episodes: int):
        """Per-episode ceilings of the evaluation episodes ``reset(seed=seed + i)``, i < ``episodes``, or None
        when they were not measured (``pathwise.ceilings.episode_ceilings``). Not shared with a twin: the same
        seed resets a twin to another start state."""
        from pathwise import ceilings

        return ceilings.episode_ceilings(self.id, seed, episodes)


_USER: dict[str, dict[str, Any]] = {}  # what register() added, applied over the built-in records
_OWN: dict[str, EnvRecord] = {}  # users' own environments and systems (pathwise.problems), by id


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, EnvRecord]:
    """The built-in records (built once, on first use)."""
    from pathwise import rewards, systems

    angles = {"pathwise/CartPoleSwingUp-v0": (2,)}
    out: dict[str, EnvRecord] = {}
    for env_id, factory in systems.REGISTRY.items():  # built lazily: a system's arrays would start JAX's backend
        known = isinstance(factory, type) and rewards.observation_determines_state(factory)
        reward = rewards.reward_from_system(factory) if known or not isinstance(factory, type) else None
        terminated = rewards.termination_from_system(factory) if reward is not None else None
        twin = getattr(factory, "gym_id", None)
        out[env_id] = EnvRecord(env_id, factory, reward, terminated, angles=angles.get(env_id, ()), twin=twin,
                                **_TASK.get(twin or "", {}))
        if twin is not None:
            out[twin] = dataclasses.replace(out[env_id], id=twin, twin=env_id)
    out["Pendulum-v1"] = dataclasses.replace(out["Pendulum-v1"], reward=rewards.pendulum_reward)
    out["MountainCarContinuous-v0"] = dataclasses.replace(out["MountainCarContinuous-v0"],
                                                          reward=rewards.mountain_car_continuous_reward)
    for version in ("v4", "v5"):  # MuJoCo (the mujoco extra): reward and termination known on observations
        env_id = f"InvertedPendulum-{version}"
        out[env_id] = EnvRecord(env_id, reward=rewards.inverted_pendulum_reward,
                                terminated=rewards.inverted_pendulum_terminated, solved_at=1000.0, max_return=1000.0)
    out.update(_termination_only(rewards))
    reacher = "dm_control/reacher-easy-v0"  # (the dmc extra) the suite task whose reward pathwise writes out
    # observation entry 0 is the shoulder, a hinge without limits observed unwrapped (it winds up to tens of
    # radians); the wrist (entry 1) is limited to ±2.79 rad
    out[reacher] = dataclasses.replace(out[reacher], reward=rewards.reacher_easy_reward, angles=(0,))
    return out


#: DeepMind Control Suite tasks of issue 17 (the dmc extra) -> the mean return at which pathwise counts one solved.
#: Rewards are in [0, 1] per step over 1000 steps, so ``max_return`` is 1000 (dm_control/suite/*.py). No standard
#: "solved" line exists; these mark a policy that does the task for most of the episode. cartpole-swingup 800:
#: hanging, the pole earns nothing ((cos + 1) / 2 times centring, control and velocity terms), so the swing-up costs
#: steps and about 80% of the episode must be spent balanced; pendulum-swingup 800: the reward is 1 within 30 degrees
#: of upright and 0 elsewhere, so 80% of the steps upright; reacher-easy 900: 1 while the fingertip touches the
#: target, which takes a few dozen steps to reach. cheetah-run rewards speed linearly up to 10 m/s, with no point
#: where the task is done: no solved line. TD-MPC2's returns after 100k steps, as quoted for issue 17 (839, 724,
#: 937, 519 in this order), are targets to compare with, not a definition of solved.
DMC_SOLVED: dict[str, float | None] = {"dm_control/cartpole-swingup-v0": 800.0, "dm_control/pendulum-swingup-v0": 800.0,
                                       "dm_control/reacher-easy-v0": 900.0, "dm_control/cheetah-run-v0": None}


#: The cheetah's observation entry 1 (HalfCheetah-v5 and the suite's cheetah-run alike: the positions without the
#: forward one, ``qpos[1:]``, come first) is ``rooty``, the torso's pitch: a hinge without limits, observed
#: unwrapped, which a flip winds past ±π.
CHEETAH_ANGLES = (1,)


def _termination_only(rewards: Any) -> dict[str, EnvRecord]:
    """Records that know the termination (not the reward) on observations: Hopper-v5 and, never terminating,
    HalfCheetah-v5 and the Control Suite tasks of :data:`DMC_SOLVED`. Hopper's and HalfCheetah's solved lines are
    Gymnasium's ``reward_threshold`` for them (3800, 4800)."""
    out = {"Hopper-v5": EnvRecord("Hopper-v5", terminated=rewards.hopper_terminated, solved_at=3800.0),
           "HalfCheetah-v5": EnvRecord("HalfCheetah-v5", terminated=rewards.never_terminated, solved_at=4800.0,
                                       angles=CHEETAH_ANGLES)}
    for env_id, solved in DMC_SOLVED.items():
        out[env_id] = EnvRecord(env_id, terminated=rewards.never_terminated, solved_at=solved, max_return=1000.0,
                                angles=CHEETAH_ANGLES if env_id == "dm_control/cheetah-run-v0" else ())
    return out


#: What is known of a Gymnasium task's returns (shared with its pathwise twin, which has the same rewards and time
#: limit). ``failure_below``, where a clear line exists: Pendulum-v1 -400, 100 below the worst of the 100 measured
#: optimal-control ceilings (-298, ``ceilings.json``), so only a policy that swings up late, off-centre or not at all
#: falls under it; CartPole-v1 195 (a return is the episode's length: the pole fell before 195 of the 500 steps,
#: CartPole-v0's solved line); MountainCarContinuous-v0 0.05 (the goal was not reached: without it a return is
#: at most 0, with it at least 100 - 0.1 * 999 = 0.1 for actions in the box); Acrobot-v1 -499.5 (never swung up:
#: exactly -500, any swing-up within the limit -499 or more). ``max_return``: rewards are at most 0 (Pendulum,
#: Acrobot), 1 per step for 500 steps (CartPole), the 100 goal bonus minus a non-negative energy cost (MountainCar).
#: ``state_names``: classic-control starts that differ in a way a policy can fail on (CartPole's and Acrobot's are
#: all within 0.05 / 0.1 of upright / hanging).
_TASK: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"solved_at": -200.0, "failure_below": -400.0, "max_return": 0.0,
                    "state_names": ("theta", "theta_dot")},
    "CartPole-v1": {"solved_at": 475.0, "failure_below": 195.0, "max_return": 500.0},
    "MountainCarContinuous-v0": {"solved_at": 90.0, "failure_below": 0.05, "max_return": 100.0,
                                 "state_names": ("position", "velocity")},
    "Acrobot-v1": {"solved_at": -100.0, "failure_below": -499.5, "max_return": 0.0},
}


def record(env_id: str) -> EnvRecord:
    """The record of ``env_id`` (an empty one for an id pathwise knows nothing about)."""
    base = _OWN.get(env_id) or _builtin().get(env_id) or _repeat_record(env_id) or EnvRecord(env_id)
    return dataclasses.replace(base, **_USER[env_id]) if env_id in _USER else base


def _repeat_record(env_id: str) -> EnvRecord | None:
    """The record of a Control Suite task with an action repeat (``...-repeat2-v0``): its task's, whose returns
    it shares (the same rewards, summed over the repeats), without the task's reward function. A decision's reward
    is the sum over control steps whose states are not observed, so the function of one control step's
    observations is not it (the learners learn the repeat's reward instead)."""
    if not env_id.startswith(DMC_PREFIX):
        return None
    from pathwise.envs.dmc import split_repeat

    base, repeat = split_repeat(env_id)
    found = _builtin().get(base) if repeat > 1 else None
    return None if found is None else dataclasses.replace(found, id=env_id, reward=None)


def register(env_id: str, *, overwrite: bool = False, **fields: Any) -> EnvRecord:
    """Add what is known about ``env_id`` (``reward=``, ``terminated=``, ``system=``, ``solved_at=``, ...).

    A field that is already known is replaced only with ``overwrite=True``. Returns the new record.
    """
    names = {f.name for f in dataclasses.fields(EnvRecord)} - {"id", "own_system"}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"register({env_id!r}): unknown field(s) {unknown}; known: {', '.join(sorted(names))}.")
    for name in ("system", "reward", "terminated"):
        if fields.get(name) is not None and not callable(fields[name]):
            raise ValueError(f"register({env_id!r}): {name} must be callable, got {fields[name]!r}.")
    for name in ("solved_at", "failure_below", "max_return"):
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value):
            raise ValueError(f"register({env_id!r}): {name} must be a return (a number) or None, got {value!r}; "
                             f"e.g. {name}=-400.0.")
    if isinstance(fields.get("state_names"), str):
        raise ValueError(f"register({env_id!r}): state_names must be a tuple of names, got the string "
                         f"{fields['state_names']!r}; e.g. state_names=('theta', 'theta_dot').")
    current = record(env_id)
    taken = [n for n, v in fields.items() if v is not None and getattr(current, n) not in (None, ())]
    if taken and not overwrite:
        raise ValueError(f"{env_id!r} already has a known {', '.join(taken)}; pass overwrite=True to replace it.")
    _USER.setdefault(env_id, {}).update(fields)
    return record(env_id)


def check_functions(rec: EnvRecord, obs_dim: int, action_dim: int,
                    fix: str = "fix it and register it again with overwrite=True") -> None:
    """Trace a record's reward and termination once on a sample transition (no compilation) and refuse, naming
    the function and ``fix`` (what the user does once it is fixed), one that JAX cannot trace or that does not
    return one scalar."""
    import jax
    import jax.numpy as jnp

    obs = jax.ShapeDtypeStruct((obs_dim,), jnp.float32)
    action = jax.ShapeDtypeStruct((action_dim,), jnp.float32)
    for name, fn, args, kind in (("reward", rec.reward, (obs, action, obs), "fn(obs, action, next_obs) -> scalar"),
                                 ("terminated", rec.terminated, (obs,), "fn(obs) -> bool scalar")):
        if fn is None:
            continue
        try:
            out = jax.eval_shape(fn, *args)
        except Exception as exc:  # a user's function: whatever it raises is reported with the fix
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ValueError(f"The {name} function of {rec.id!r} fails on a sample transition (obs shape ({obs_dim},), "
                             f"action shape ({action_dim},)): {type(exc).__name__}: {first[:200]}. It must be "
                             f"{kind} written with jax.numpy on unbatched arrays (no float(), int(), NumPy calls or "
                             f"`if` on array values); {fix}.") from None
        shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
        numeric = dtype is not None and (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_)
        if shape != () or not numeric:
            raise ValueError(f"The {name} function of {rec.id!r} returns {'shape ' + str(shape) if shape != () else ''}"
                             f"{'' if numeric else ' dtype ' + str(dtype)} on one transition; it must be {kind} (e.g. "
                             f"jnp.sum(...) or x[0]); {fix}.")


def add_own(rec: EnvRecord) -> None:
    """The record of a user's own environment or system (``pathwise.problems`` registers them)."""
    _OWN[rec.id] = rec


def is_own(env_id: str) -> bool:
    """Whether ``env_id`` is a user's own environment or system registered in this process."""
    return env_id in _OWN


def unregister(env_id: str) -> None:
    """Forget what :func:`register` added for ``env_id`` (built-in knowledge stays)."""
    _USER.pop(env_id, None)


def user_registered() -> frozenset[str]:
    """The ids :func:`register` added knowledge to."""
    return frozenset(_USER)


def known_rewards() -> list[str]:
    """Ids whose reward is known (model-based learners can plan on them)."""
    ids = set(_builtin()) | set(_USER)
    return sorted(i for i in ids if record(i).reward is not None)


def canonical_id(env_id: str) -> str:
    """A pathwise short name (``pendulum``) as its Gymnasium id; every other id unchanged."""
    from pathwise import systems

    if env_id in systems.REGISTRY:
        return env_id
    import gymnasium as gym

    if env_id in gym.registry:
        return env_id
    return systems.ALIASES.get(env_id) or systems.ALIASES.get(env_id.lower()) or env_id


def check_id(env_id: Any) -> str:
    """``env_id`` if Gymnasium knows it, else a ``ValueError`` with close matches and the fix."""
    import gymnasium as gym

    import pathwise.systems  # noqa: F401  (registers the pathwise/... ids)

    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string such as 'Pendulum-v1', got {type(env_id).__name__}.")
    if env_id in gym.registry and not env_id.startswith(DMC_PREFIX):
        return env_id
    if env_id.startswith(DMC_PREFIX):  # the DeepMind Control Suite: registered on first use (the dmc extra)
        from pathwise.envs import dmc

        return dmc.check_dmc_id(env_id)
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown environment id {env_id!r}.{hint} `pathwise list` shows the pathwise systems; any "
                     "installed Gymnasium id works (see gymnasium.pprint_registry()).")


__all__ = ["DMC_PREFIX", "DMC_SOLVED", "EnvRecord", "NAMESPACE", "add_own", "is_own", "RewardFn", "TerminationFn", "canonical_id", "check_functions", "check_id", "user_registered", "known_rewards",
           "record", "register", "unregister"]
