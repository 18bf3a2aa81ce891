"""Learned dynamics: fit a model on transitions, use it as a ``System``, infer noise (SVG(∞)).

    model = DynamicsModel(obs_dim, action_dim, key=key)
    model, report = fit(model, Dataset(obs, actions, next_obs, ends), FitConfig(), key)
    system = LearnedModel(model, reward_fn, action_low=low, action_high=high)
    zetas, xis = infer_noise(system, policy, trajectory)
"""

from __future__ import annotations

from pathwise.models.dynamics import (DynamicsModel, Normalizer, gaussian_nll, member_errors, member_losses,
                                      model_loss, mse_loss)
from pathwise.models.fit import Dataset, FitConfig, FitReport, check_dataset, choose_elites, fit, open_loop_error
from pathwise.models.heads import RewardHead, TerminationHead, reward_loss, termination_loss
from pathwise.models.learned import LearnedModel
from pathwise.models.noise import episode_trajectory, infer_noise, model_noise, policy_noise

__all__ = [
    "Dataset",
    "DynamicsModel",
    "FitConfig",
    "FitReport",
    "LearnedModel",
    "Normalizer",
    "RewardHead",
    "TerminationHead",
    "check_dataset",
    "choose_elites",
    "episode_trajectory",
    "fit",
    "gaussian_nll",
    "infer_noise",
    "member_errors",
    "member_losses",
    "model_loss",
    "model_noise",
    "mse_loss",
    "open_loop_error",
    "policy_noise",
    "reward_loss",
    "termination_loss",
]
