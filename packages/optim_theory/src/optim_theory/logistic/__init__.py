"""Logistic regression on linearly separable data: datasets with a known margin γ, the
(ℓ2-regularised) logistic objective with its gradient and Hessian, Newton's method for the exact
minimum, constant-stepsize GD, risk-adaptive GD and the Perceptron.

Conventions used throughout: a dataset is n points xᵢ ∈ ℝᵈ with labels yᵢ ∈ {±1} and ‖xᵢ‖ ≤ 1; all
the math only needs the signed points zᵢ = yᵢxᵢ (rows of ``Z``). The margin is
γ = max_{‖w‖=1} minᵢ zᵢᵀw (> 0 for separable data).
"""

from . import data, gd

__all__ = ["data", "gd"]
