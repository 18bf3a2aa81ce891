"""Fitting a ``DynamicsModel`` to transitions: held-out split, jitted epochs, early stopping.

The data set is cut into consecutive blocks of ``multi_step`` transitions; a
``val_fraction`` of the blocks is held out. The held-out blocks give the
one-step error (every held-out transition) and the ``multi_step``-step
open-loop error (the model fed its own predictions and the recorded actions,
over blocks that do not cross an episode boundary).

An epoch is ``steps_per_epoch`` Adam steps (fewer on small data sets with
``steps_per_transition``) on minibatches drawn uniformly with replacement, run
as one ``lax.fori_loop`` under ``jit``. The data are padded to
a power-of-two capacity of at least ``min_capacity`` rows and the real count is
passed as an array, so a data set that grows inside the same capacity does not
recompile (and neither does a second learner in the same process with the same
config and model shape). The host-side work of a fit (split, normalizer
statistics) is NumPy, so a growing data set compiles no small XLA programs either.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise.models.dynamics import DynamicsModel, member_losses, model_loss, trainable
from pathwise.types import Array, PRNGKey


class Dataset(NamedTuple):
    """Transitions ``(obs[i], actions[i]) -> next_obs[i]`` in the order they were collected.

    ``ends[i]`` is True when transition ``i`` is the last of its episode (so
    ``next_obs[i]`` is not ``obs[i + 1]``); multi-step errors never cross it.
    ``rewards[i]`` and ``terminated[i]`` (the environment's ``terminated``, not a
    truncation) are needed only by a model that learns them.
    """

    obs: Array
    actions: Array
    next_obs: Array
    ends: Array
    rewards: Array | None = None
    terminated: Array | None = None
    images: int = 0
    """If > 0, the data are N = 2 · images transitions of which the second half is an image of the first (row
    ``images + i`` of row ``i``: ``loops.model_based.mirrored``); the held-out split takes a transition and its
    image together, so that no held-out transition is the image of one trained on."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How ``fit`` trains a dynamics model."""

    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 256
    """Transitions per minibatch (drawn with replacement from the training split)."""
    steps_per_epoch: int = 50
    """Adam steps per epoch (one jitted loop); validation runs after each epoch."""
    max_epochs: int = 60
    """Upper bound on epochs."""
    patience: int = 5
    """Stop after this many epochs without a lower validation loss (the best model is returned)."""
    val_fraction: float = 0.1
    """Fraction of ``multi_step``-long blocks held out for validation (at least one block)."""
    multi_step: int = 10
    """Length of the open-loop prediction whose error is reported (and of the held-out blocks)."""
    min_transitions: int = 40
    """Fewer transitions than this raise ``ValueError`` (at least 2 * multi_step)."""
    grad_clip: float = 10.0
    """Global gradient-norm clip."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW) on the network weights."""
    min_capacity: int = 4096
    """Smallest padded size of the training split (a power of two is used); data sets up to it share one program."""
    steps_per_transition: float = 0.0
    """If > 0, an epoch is ``min(steps_per_epoch, ceil(steps_per_transition * n_train))`` Adam steps, so a small
    data set gets fewer passes per epoch (the step count is a traced loop bound: changing it does not recompile)."""


class FitReport(NamedTuple):
    """What ``fit`` measured (errors in raw observation units, mean squared over dimensions)."""

    epochs: int
    train_loss: float
    val_loss: float
    one_step_mse: float
    multi_step_mse: float  # error of the ``multi_step``-th open-loop prediction
    num_train: int
    num_val: int


def check_dataset(data: Dataset, min_transitions: int) -> None:
    """Raise ``ValueError`` for ragged, non-finite or too small data."""
    obs, actions, next_obs, ends = (np.asarray(x) for x in data[:4])
    n = obs.shape[0] if obs.ndim == 2 else -1
    if obs.ndim != 2 or next_obs.shape != obs.shape or actions.ndim != 2 or actions.shape[0] != n \
            or ends.shape != (n,):
        raise ValueError(
            f"Dataset: expected obs [N, d], actions [N, m], next_obs [N, d], ends [N]; got shapes "
            f"{obs.shape}, {actions.shape}, {next_obs.shape}, {ends.shape}."
        )
    for name in ("rewards", "terminated"):
        x = getattr(data, name)
        if x is not None and np.shape(x) != (n,):
            raise ValueError(f"Dataset: {name} must have shape [N] = ({n},), got {np.shape(x)}.")
    extra = () if data.rewards is None else (("rewards", np.asarray(data.rewards).reshape(-1, 1)),)
    for name, x in (("obs", obs), ("actions", actions), ("next_obs", next_obs), *extra):
        if not np.all(np.isfinite(x)):
            rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
            raise ValueError(f"Dataset: {name} contains NaN or inf at rows {rows[:5].tolist()}; "
                             "drop those transitions before fitting.")
    if n < min_transitions:
        raise ValueError(f"Dataset too small to fit a model: {n} transitions, need at least {min_transitions} "
                         "(collect more data, or lower FitConfig.min_transitions).")
    if data.images and 2 * data.images != n:
        raise ValueError(f"Dataset: images={data.images} must be half of its {n} transitions (the second half the "
                         "first's image), or 0.")


def _capacity(n: int, floor: int = 256) -> int:
    return max(floor, 1 << int(np.ceil(np.log2(max(n, 1)))))


def epoch_steps(config: FitConfig, n_train: int) -> int:
    """Adam steps per epoch for ``n_train`` training transitions (see ``FitConfig.steps_per_transition``)."""
    if config.steps_per_transition <= 0:
        return config.steps_per_epoch
    return max(1, min(config.steps_per_epoch, int(np.ceil(config.steps_per_transition * n_train))))


def _pad(x: np.ndarray, capacity: int) -> jnp.ndarray:
    return jnp.asarray(np.concatenate([x, np.zeros((capacity - x.shape[0], *x.shape[1:]), x.dtype)]))


def split_blocks(n: int, block: int, val_fraction: float, key: PRNGKey, images: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): whole ``block``-long runs of rows go to validation; with ``images`` (the rows from
    ``images`` on being images of the rows before, ``Dataset.images``) a row's image goes where the row goes."""
    if images:
        _, val = split_blocks(images, block, val_fraction, key)
        val = np.concatenate([val, val + images])
        return np.setdiff1d(np.arange(n), val), val
    n_blocks = n // block
    n_val = min(max(1, int(round(val_fraction * n_blocks))), n_blocks - 1)
    # a NumPy permutation seeded from the key: jax.random.permutation would compile once per data-set size
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    chosen = rng.permutation(n_blocks)[:n_val]
    val = np.sort((chosen[:, None] * block + np.arange(block)).reshape(-1))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def _optimizer(config: FitConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                       optax.adamw(config.learning_rate, weight_decay=config.weight_decay))


@eqx.filter_jit
def _init_optimizer(params, config: FitConfig):
    return _optimizer(config).init(params)  # jitted: one program instead of one small one per parameter shape


def _rows(x: Array | None, idx: Array) -> Array | None:
    return None if x is None else x[idx]


@eqx.filter_jit
def _epoch(model, opt_state, batch: tuple, count, key, steps, config: FitConfig):
    """``steps`` (a traced int: no recompile when it changes) Adam steps on minibatches of the first ``count`` rows
    of ``batch = (obs, actions, next_obs, rewards or None, terminated or None)``."""
    optimizer = _optimizer(config)
    weights = jnp.ones(config.batch_size)
    # Only the networks (and learned variance bounds) are trained: the normalizers are data statistics.
    params, static = eqx.partition(model, trainable(model))

    def body(i, carry):
        params, opt_state, total = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (config.batch_size,), 0, count)
        rows = [_rows(x, idx) for x in batch]
        loss_fn = lambda p: model_loss(eqx.combine(p, static), *rows[:3], weights, *rows[3:])
        loss, grads = eqx.filter_value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, total + loss

    params, opt_state, total = jax.lax.fori_loop(0, steps, body, (params, opt_state, jnp.zeros(())))
    return eqx.combine(params, static), opt_state, total / jnp.maximum(steps, 1)


@eqx.filter_jit
def _validate(model, batch: tuple, weights):
    obs, actions, next_obs = batch[:3]
    loss = model_loss(model, obs, actions, next_obs, weights, *batch[3:])
    err = ((jax.vmap(model)(obs, actions) - next_obs) ** 2).mean(axis=-1)
    return loss, (err * weights).sum() / jnp.maximum(weights.sum(), 1.0)


@eqx.filter_jit
def _member_losses(model, batch: tuple, weights):
    return member_losses(model, *batch[:3], weights)


def choose_elites(model: DynamicsModel, batch: tuple, weights: Array) -> DynamicsModel:
    """``model`` with its ``num_elites`` members of lowest held-out loss as the elites (no-op without elites)."""
    if model.elites is None:
        return model
    losses = np.asarray(_member_losses(model, batch, weights))
    mask = np.zeros(model.ensemble_size, bool)
    mask[np.argsort(losses, kind="stable")[: model.num_elites]] = True
    return eqx.tree_at(lambda m: m.elites, model, jnp.asarray(mask))


@eqx.filter_jit
def open_loop_error(model: DynamicsModel, obs_blocks: Array, action_blocks: Array, next_blocks: Array,
                    weights: Array) -> Array:
    """Mean squared error of the k-th prediction when ``model`` is fed its own outputs for k steps.

    ``obs_blocks [B, k, d]`` and ``next_blocks`` are recorded runs; only ``obs_blocks[:, 0]`` enters.
    """
    def run(o0, acts):
        def step(o, a):
            o2 = model(o, a)
            return o2, o2

        return jax.lax.scan(step, o0, acts)[1]

    preds = jax.vmap(run)(obs_blocks[:, 0], action_blocks)
    err = ((preds[:, -1] - next_blocks[:, -1]) ** 2).mean(axis=-1)
    return (err * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def _multi_step(model: DynamicsModel, data: Dataset, val: np.ndarray, block: int) -> float:
    obs, actions, next_obs, ends = (np.asarray(x) for x in data[:4])
    starts = val.reshape(-1, block)[:, 0]
    rows = starts[:, None] + np.arange(block)
    ok = ~ends[rows[:, :-1]].any(axis=1)  # no episode boundary inside the block
    if not ok.any():
        return float("nan")
    cap = _capacity(len(rows))
    blocks = [_pad(x[rows], cap) for x in (obs, actions, next_obs)]
    return float(open_loop_error(model, *blocks, _pad(ok.astype(np.float32), cap)))


def _check_config(config: FitConfig) -> None:
    if config.min_transitions < 2 * config.multi_step:
        raise ValueError(f"FitConfig.min_transitions ({config.min_transitions}) must be at least "
                         f"2 * multi_step ({2 * config.multi_step}) so a block can be held out.")
    if config.min_capacity < 1 or config.steps_per_transition < 0 or config.steps_per_epoch < 1:
        raise ValueError(f"FitConfig: min_capacity ({config.min_capacity}) and steps_per_epoch "
                         f"({config.steps_per_epoch}) must be >= 1 and steps_per_transition "
                         f"({config.steps_per_transition}) >= 0.")


def _columns(model: DynamicsModel, data: Dataset) -> list[np.ndarray | None]:
    """``[obs, actions, next_obs, rewards, terminated]`` as float32 (the last two None where nothing learns them)."""
    for head, name, option in ((model.reward_head, "rewards", "learn_reward"),
                               (model.termination_head, "terminated", "learn_termination")):
        if head is not None and getattr(data, name) is None:
            raise ValueError(f"fit: the model learns the {name.rstrip('s')} ({option}=True) but the Dataset has no "
                             f"{name}; pass Dataset(..., {name}=...) from the recorded transitions.")
    cols = [np.asarray(x, np.float32) for x in data[:3]]
    cols.append(None if model.reward_head is None else np.asarray(data.rewards, np.float32).reshape(-1))
    cols.append(None if model.termination_head is None else np.asarray(data.terminated, np.float32).reshape(-1))
    return cols


def fit(model: DynamicsModel, data: Dataset, config: FitConfig = FitConfig(), key: PRNGKey | None = None
        ) -> tuple[DynamicsModel, FitReport]:
    """Fit ``model`` (warm-started from its current weights) to ``data``; return the best model and a report.

    The best model is the one of lowest held-out loss; an ensemble with elites then takes as elites its
    ``num_elites`` members of lowest held-out loss. Learned reward and termination heads train in the same steps.
    """
    _check_config(config)
    check_dataset(data, config.min_transitions)
    key = jax.random.key(0) if key is None else key
    k_split, k_train = jax.random.split(key)
    cols = _columns(model, data)
    train, val = split_blocks(len(cols[0]), config.multi_step, config.val_fraction, k_split, data.images)
    model = model.with_normalizers(*(x[train] for x in cols[:3]), None if cols[3] is None else cols[3][train])
    cap_t, cap_v = _capacity(len(train), config.min_capacity), _capacity(len(val))
    steps = jnp.asarray(epoch_steps(config, len(train)), jnp.int32)
    tr = tuple(None if x is None else _pad(x[train], cap_t) for x in cols)
    va = tuple(None if x is None else _pad(x[val], cap_v) for x in cols)
    val_weights = _pad(np.ones(len(val), np.float32), cap_v)
    opt_state = _init_optimizer(eqx.filter(model, trainable(model)), config)
    count = jnp.asarray(len(train), jnp.int32)
    best, (best_loss, best_mse) = model, _validate(model, va, val_weights)
    train_loss, stale, epoch = float("nan"), 0, 0
    for epoch, k in enumerate(jax.random.split(k_train, config.max_epochs), start=1):
        model, opt_state, train_loss = _epoch(model, opt_state, tr, count, k, steps, config)
        val_loss, val_mse = _validate(model, va, val_weights)
        if float(val_loss) < float(best_loss):
            best, best_loss, best_mse, stale = model, val_loss, val_mse, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    best = choose_elites(best, va, val_weights)
    report = FitReport(epoch, float(train_loss), float(best_loss), float(best_mse),
                       _multi_step(best, data, val, config.multi_step), len(train), len(val))
    return best, report
