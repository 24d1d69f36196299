"""Teacher–student fidelity metrics (Stanton et al., NeurIPS 2021; PAPERS.md §6).

Per-example metrics return `[batch]` so the evaluator can mask padded examples before averaging;
set-level metrics (calibration, CKA) return a scalar and take an optional mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.logits import kl_from_logits


def _require_examples(metric: str, count, minimum: int) -> None:
  """A set-level metric of too few (unmasked) examples is undefined: one line instead of a
  number. Under `jit` the count is traced and the metric returns NaN instead."""
  if isinstance(count, jax.core.Tracer):
    return
  if float(count) < minimum:
    raise ValueError(
        f"{metric} needs at least {minimum} example{'s' if minimum > 1 else ''} (unmasked), "
        f"got {float(count):g}; it is undefined on fewer."
    )


def top_k_agreement(student_logits, teacher_logits, *, k: int = 1):
  """Agreement of the top-k predicted classes, per example.

  a_k(x) = |top_k(z_s) ∩ top_k(z_t)| / k. For k = 1 this is Stanton et al.'s top-1 agreement
  1[argmax p_t(x) = argmax p_s(x)], whose mean over a split is the paper's fidelity number.

  Returns:
    [...] float32 in [0, 1].
  """
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  classes = jnp.shape(student_logits)[-1]
  if not 1 <= k <= classes:
    raise ValueError(f"k must be in [1, {classes}] for {classes} classes, got {k}.")
  if k == 1:
    same = jnp.argmax(student_logits, -1) == jnp.argmax(teacher_logits, -1)
    return same.astype(jnp.float32)
  _, top_s = jax.lax.top_k(checks.as_float32(student_logits), k)
  _, top_t = jax.lax.top_k(checks.as_float32(teacher_logits), k)
  shared = jnp.sum(top_s[..., :, None] == top_t[..., None, :], axis=(-2, -1))
  return shared.astype(jnp.float32) / k


def predictive_kl(teacher_logits, student_logits):
  """Predictive KL(p_t(·|x) ‖ p_s(·|x)) at τ = 1, per example (Stanton et al.).

  Note the argument order: teacher first, as in the KL's first argument.

  Returns:
    [...] float32, ≥ 0.
  """
  return kl_from_logits(teacher_logits, student_logits, temperature=1.0)


def expected_calibration_error(logits, labels, *, num_bins: int = 15, mask=None):
  """Expected calibration error with equal-width confidence bins.

  ECE = Σ_b (n_b / n) · |acc(b) − conf(b)|, where confidence is max_c σ(z)_c, bin b holds the
  examples with confidence in ((b−1)/B, b/B] and n counts the (unmasked) examples.

  Args:
    logits: [batch, classes]; labels: [batch] int; mask: optional [batch] bool (padding = False).
  Returns:
    scalar float32.
  """
  checks.require_rank("logits", logits, 2)
  checks.require_labels(logits, labels)
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
  probs = jax.nn.softmax(checks.as_float32(logits), axis=-1)
  confidence = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
  weight = jnp.ones_like(confidence) if mask is None else jnp.asarray(mask, jnp.float32)
  checks.require_same_shape("mask", weight, "labels", labels)
  # ceil(conf·B) − 1 maps (0, 1/B] to bin 0 and (1 − 1/B, 1] to bin B − 1.
  bins = jnp.clip(jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
  conf_sum = jax.ops.segment_sum(weight * confidence, bins, num_segments=num_bins)
  acc_sum = jax.ops.segment_sum(weight * correct, bins, num_segments=num_bins)
  count = jnp.sum(weight)
  _require_examples("expected_calibration_error", count, 1)
  ece = jnp.sum(jnp.abs(acc_sum - conf_sum)) / jnp.maximum(count, 1.0)
  return jnp.where(count >= 1, ece, jnp.nan)  # traced counts: NaN, never a silent 0


def linear_cka(features_x, features_y, *, mask=None):
  """Linear centred kernel alignment between two representations of the same examples.

  With column-centred X ∈ R^{n×d1}, Y ∈ R^{n×d2}:
  CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F · ‖YᵀY‖_F)  (Kornblith et al., 2019), used by Stanton et al.
  to compare stage representations. Features with more than two axes are flattened per example.

  Returns:
    scalar float32 in [0, 1].
  """
  checks.require_dim(
      "features_x", features_x, 0, "features_y", features_y, 0, "Numbers of examples"
  )
  x = checks.as_float32(jnp.reshape(features_x, (jnp.shape(features_x)[0], -1)))
  y = checks.as_float32(jnp.reshape(features_y, (jnp.shape(features_y)[0], -1)))
  w = jnp.ones((x.shape[0],), jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
  count = jnp.sum(w)
  # One example centres to zero: CKA is 0/0 there, not the 0.0 the clamp below would give.
  _require_examples("linear_cka", count, 2)
  n = jnp.maximum(count, 1.0)
  x = (x - jnp.sum(w[:, None] * x, 0) / n) * w[:, None]
  y = (y - jnp.sum(w[:, None] * y, 0) / n) * w[:, None]
  cross = jnp.sum(jnp.square(y.T @ x))
  norm_x = jnp.sqrt(jnp.sum(jnp.square(x.T @ x)))
  norm_y = jnp.sqrt(jnp.sum(jnp.square(y.T @ y)))
  return jnp.where(count >= 2, cross / jnp.maximum(norm_x * norm_y, 1e-12), jnp.nan)
