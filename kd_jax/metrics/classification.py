"""Task metrics: accuracy for single-label and AUPRC for multi-label classification."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks


def accuracy(logits, labels):
  """Top-1 correctness per example: 1[argmax z = y] as float32, shape [...]."""
  checks.require_labels(logits, labels)
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def _average_precision_1d(scores, targets, weight):
  """AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds (scikit-learn's definition).

  Tied scores form one threshold, so every positive of a tie group earns the precision measured
  at the end of its group: AP = (1/N₊) Σ_i y_i · P(end of group(i)). Masked-out entries have
  weight 0 and count neither as positives nor as predictions.
  """
  order = jnp.argsort(-scores, stable=True)
  s, y, w = scores[order], targets[order] * weight[order], weight[order]
  true_pos = jnp.cumsum(y)
  predicted = jnp.cumsum(w)
  # Index of the last element of each element's tie group in the descending order.
  group_end = jnp.searchsorted(-s, -s, side="right") - 1
  precision = true_pos[group_end] / jnp.maximum(predicted[group_end], 1e-12)
  positives = jnp.sum(y)
  return jnp.where(positives > 0, jnp.sum(y * precision) / jnp.maximum(positives, 1.0), jnp.nan)


def auprc(scores, targets, *, average: str = "micro", mask=None):
  """Area under the precision–recall curve (average precision) for multi-label targets.

  `micro` pools every (example, class) decision into one ranking; `macro` is the unweighted mean
  of the per-class AP over the classes that have at least one positive (a class without positives
  has no defined recall; it is left out rather than counted as 0 or 1). SEA reports both on
  SONYC-UST (PAPERS.md §1).

  Args:
    scores: [batch, classes] real-valued (probabilities or logits: only the order matters).
    targets: [batch, classes] in {0, 1}.
    average: "micro" or "macro".
    mask: optional [batch] bool; False rows (padding) are ignored.
  Returns:
    scalar float32 (NaN if there is no positive at all).
  """
  checks.require_rank("scores", scores, 2)
  checks.require_same_shape("scores", scores, "targets", targets)
  scores, targets = checks.as_float32(scores, targets)
  row_weight = (
      jnp.ones(scores.shape[:1], jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
  )
  checks.require_dim("mask", row_weight, 0, "scores", scores, 0, "Numbers of examples")
  weight = jnp.broadcast_to(row_weight[:, None], scores.shape)
  if average == "micro":
    return _average_precision_1d(scores.ravel(), targets.ravel(), weight.ravel())
  if average == "macro":
    per_class = jax.vmap(_average_precision_1d, in_axes=1)(scores, targets, weight)
    return jnp.nanmean(per_class)
  raise ValueError(f"average must be 'micro' or 'macro', got {average!r}.")
