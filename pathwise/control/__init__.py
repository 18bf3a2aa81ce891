"""Trajectory optimization: LQR, iLQR/DDP, gradient shooting, multi-start solves, sampling planners (CEM, MPPI),
and model-predictive control."""

from pathwise.control.boxqp import BoxQPResult, boxqp
from pathwise.control.ilqr import ilqr
from pathwise.control.lqr import LQRSolution, dare, lqr
from pathwise.control.mpc import MPC, MPCPolicy, Plan, mpc_expert
from pathwise.control.multistart import MultiStart, initial_guesses, multistart
from pathwise.control.sampling import (CEMConfig, MPPIConfig, SamplingConfig, SamplingMPC, SamplingPlan, SamplingResult,
                                       cem, mppi)
from pathwise.control.shooting import shooting
from pathwise.control.solution import Problem, Solution, as_problem, kkt_residual, total_cost

__all__ = ["BoxQPResult", "CEMConfig", "LQRSolution", "MPC", "MPCPolicy", "MPPIConfig", "MultiStart", "Plan", "Problem",
           "SamplingConfig", "SamplingMPC", "SamplingPlan", "SamplingResult", "Solution", "as_problem", "boxqp", "cem",
           "dare", "ilqr", "initial_guesses", "kkt_residual", "lqr", "mpc_expert", "mppi", "multistart", "shooting",
           "total_cost"]
