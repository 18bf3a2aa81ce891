"""Trajectory optimization: LQR, iLQR/DDP, gradient shooting, multi-start solves, and model-predictive control."""

from pathwise.control.boxqp import BoxQPResult, boxqp
from pathwise.control.ilqr import ilqr
from pathwise.control.lqr import LQRSolution, dare, lqr
from pathwise.control.mpc import MPC, MPCPolicy, Plan, mpc_expert
from pathwise.control.multistart import MultiStart, initial_guesses, multistart
from pathwise.control.shooting import shooting
from pathwise.control.solution import Problem, Solution, as_problem, kkt_residual, total_cost

__all__ = ["BoxQPResult", "LQRSolution", "MPC", "MPCPolicy", "MultiStart", "Plan", "Problem", "Solution", "as_problem",
           "boxqp", "dare", "ilqr", "initial_guesses", "kkt_residual", "lqr", "mpc_expert", "multistart", "shooting",
           "total_cost"]
