"""Gradient estimators for ∇θ E[F(θ, ξ)] as pure functions returning gradient pytrees.

- ``finite_difference``: central differences, coordinate-wise or along random directions.
- ``score_function`` / ``score_function_surrogate``: the likelihood-ratio (REINFORCE) estimator, baselines.
- ``pathwise``: the reparameterization estimator (continuous, differentiable f only).
- ``relaxed``: Gumbel-softmax and straight-through samples for discrete variables.
- ``compare`` / ``sweep``: variance and cosine-to-reference at equal sample budgets;
  ``studies``: the Gaussian and Pendulum studies.

Submodules share names with the functions they define; import from them with
``from pathwise.estimators.compare import write_table`` (not ``import ... as``).
"""

from pathwise.estimators.compare import ESTIMATORS, compare, loglog_slope, plot_sweep, sweep, write_table
from pathwise.estimators.finite_difference import finite_difference, finite_difference_estimate
from pathwise.estimators.objective import StochasticObjective, distribution_objective
from pathwise.estimators.relaxed import (gumbel_softmax, straight_through, straight_through_bernoulli,
                                         straight_through_categorical)
from pathwise.estimators.reparam import check_differentiable, pathwise, pathwise_estimate
from pathwise.estimators.score_function import (RunningMean, leave_one_out_mean, reward_to_go,
                                                running_mean_init, running_mean_update, score_function,
                                                score_function_estimate, score_function_surrogate,
                                                value_baseline_loss)

__all__ = [
    "ESTIMATORS", "RunningMean", "StochasticObjective", "check_differentiable", "compare", "distribution_objective",
    "finite_difference", "finite_difference_estimate", "gumbel_softmax", "leave_one_out_mean", "loglog_slope",
    "pathwise", "pathwise_estimate", "plot_sweep", "reward_to_go", "running_mean_init", "running_mean_update",
    "score_function", "score_function_estimate", "score_function_surrogate", "straight_through",
    "straight_through_bernoulli", "straight_through_categorical", "sweep", "value_baseline_loss", "write_table",
]
