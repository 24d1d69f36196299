"""Accuracy and teacher–student fidelity metrics (PAPERS.md §6)."""

from kd_jax.metrics.classification import accuracy, auprc
from kd_jax.metrics.fidelity import (
    expected_calibration_error,
    linear_cka,
    predictive_kl,
    top_k_agreement,
)

__all__ = [
    "accuracy",
    "auprc",
    "expected_calibration_error",
    "linear_cka",
    "predictive_kl",
    "top_k_agreement",
]
