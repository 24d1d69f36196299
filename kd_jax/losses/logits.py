"""Logit-level distillation losses: Hinton KD, teacher ensembles, cross-entropy, DKD, DIST.

All functions are pure and unreduced: they return one value per example (every leading axis of
the logits is kept, the class axis is the last one) and the caller reduces — except DIST's
intra-class relation, which correlates the examples of a batch and returns one value per class.
Computation is in float32 whatever the input dtype. References: PAPERS.md §0 (Hinton et al.,
2015), §6 (Stanton et al., 2021, ensemble teacher); DKD (Zhao et al., CVPR 2022) and DIST (Huang
et al., NeurIPS 2022), baselines of the method zoo table.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0):
  """Cross-entropy with integer labels, per example.

  CE(y, z) = −Σ_c ỹ_c log σ(z)_c with ỹ = (1 − ε)·onehot(y) + ε/C (ε = label_smoothing).

  Args:
    logits: [..., classes].
    labels: integer class ids of shape [...].
    label_smoothing: ε in [0, 1).
  Returns:
    [...] float32.
  """
  checks.require_labels(logits, labels)
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
  logits = checks.as_float32(logits)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  if label_smoothing == 0.0:
    return nll
  uniform = -jnp.mean(log_probs, axis=-1)
  return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def kl_from_logits(teacher_logits, student_logits, *, temperature: float = 1.0):
  """KL(σ(t/τ) ‖ σ(s/τ)) per example, in float32, from logits (no τ² factor)."""
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  checks.require_positive("temperature", temperature)
  teacher_logits, student_logits = checks.as_float32(teacher_logits, student_logits)
  log_p_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  log_p_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  # exp(log p_t) underflows to exactly 0 where p_t is negligible, so 0·(finite) = 0: no NaN.
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
  return checks.nan_unless_positive(kl, temperature)


def hinton_kd(student_logits, teacher_logits, *, temperature: float):
  """Hinton et al. (2015) distillation term, per example.

  L_KD = τ² · KL(σ(z_t/τ) ‖ σ(z_s/τ)) = τ² Σ_c p_t,c (log p_t,c − log p_s,c).

  τ is applied once to each side's logits; the τ² factor keeps the gradient scale independent of
  τ. The result is summed over classes (not averaged: averaging would scale gradients by 1/C, a
  pitfall of `KLDivLoss(reduction='mean')` in other libraries). The full objective of PAPERS.md §0,
  α·CE + (1−α)·L_KD, is combined by the method.

  Args:
    student_logits: [..., classes].
    teacher_logits: [..., classes], same shape; it is *not* stop-gradient'ed here (the trainer
      freezes the teacher).
    temperature: τ > 0.
  Returns:
    [...] float32, ≥ 0, zero iff the two softened distributions are equal.
  """
  return temperature**2 * kl_from_logits(teacher_logits, student_logits, temperature=temperature)


def ensemble_logits(member_logits):
  """Logits of an ensemble's mean prediction (Stanton et al., PAPERS.md §6).

  z_ens = log( (1/m) Σ_i σ(z_i) ), computed as logsumexp_i(log σ(z_i)) − log m so that it stays
  finite when some member probabilities underflow. softmax(z_ens) is the ensemble's mean
  prediction; these are log-probabilities, so temperature scaling z_ens/τ of them is what the
  paper distils.

  Args:
    member_logits: [members, ..., classes], member axis first.
  Returns:
    [..., classes] float32.
  """
  if jnp.ndim(member_logits) < 2:
    raise ValueError(
        "member_logits must be [members, ..., classes] (member axis first), got shape "
        f"{tuple(jnp.shape(member_logits))}."
    )
  member_logits = checks.as_float32(member_logits)
  members = member_logits.shape[0]
  log_probs = jax.nn.log_softmax(member_logits, axis=-1)
  return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(float(members))


# ------------------------------------------------------------------ DKD (Zhao et al., CVPR 2022)
def _target_mask(logits, labels):
  """[..., classes] bool, True at each example's label."""
  return jnp.arange(logits.shape[-1]) == labels[..., None]


def _binary_log_probs(logits, is_target, temperature):
  """[..., 2]: log b = (log p_y, log(1 − p_y)) of σ(z/τ), both in log space (no 1 − p_y
  cancellation when p_y → 1): log(1 − p_y) = logsumexp_{c≠y}(z_c/τ) − logsumexp_c(z_c/τ)."""
  scaled = logits / temperature
  everything = jax.nn.logsumexp(scaled, axis=-1)
  target = jnp.sum(jnp.where(is_target, scaled, 0.0), axis=-1)
  others = jax.nn.logsumexp(jnp.where(is_target, -jnp.inf, scaled), axis=-1)
  return jnp.stack([target - everything, others - everything], axis=-1)


def _non_target_log_probs(logits, is_target, temperature):
  """log p̂_c = log softmax over the non-target classes c ≠ y of z/τ; 0 at the target (unused)."""
  log_probs = jax.nn.log_softmax(jnp.where(is_target, -jnp.inf, logits / temperature), axis=-1)
  return jnp.where(is_target, 0.0, log_probs)


def _check_dkd(student_logits, teacher_logits, labels, temperature):
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  checks.require_labels(student_logits, labels)
  if jnp.shape(student_logits)[-1] < 2:
    raise ValueError(
        f"DKD needs at least 2 classes, got logits of shape {tuple(jnp.shape(student_logits))}."
    )
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")


def tckd(student_logits, teacher_logits, labels, *, temperature: float):
  """Target-class knowledge distillation (DKD, Zhao et al., CVPR 2022, Eq. 5), per example.

  b = [p_y, 1 − p_y] with p = σ(z/τ) and y the label: the binary "target vs. all others"
  distribution; TCKD = τ²·KL(b^T ‖ b^S) (the τ² of Hinton KD, as in the paper's code).

  Args:
    student_logits, teacher_logits: [..., classes]; labels: integer ids [...].
  Returns:
    [...] float32, ≥ 0.
  """
  _check_dkd(student_logits, teacher_logits, labels, temperature)
  student_logits, teacher_logits = checks.as_float32(student_logits, teacher_logits)
  is_target = _target_mask(student_logits, labels)
  log_b_t = _binary_log_probs(teacher_logits, is_target, temperature)
  log_b_s = _binary_log_probs(student_logits, is_target, temperature)
  return temperature**2 * jnp.sum(jnp.exp(log_b_t) * (log_b_t - log_b_s), axis=-1)


def nckd(student_logits, teacher_logits, labels, *, temperature: float):
  """Non-target-class knowledge distillation (DKD, Eq. 5), per example.

  p̂_c = exp(z_c/τ) / Σ_{k≠y} exp(z_k/τ) for c ≠ y (the prediction among the non-target classes);
  NCKD = τ²·KL(p̂^T ‖ p̂^S). Identity: KD = TCKD + (1 − p^T_y)·NCKD (Eq. 4), which DKD decouples.

  Returns:
    [...] float32, ≥ 0.
  """
  _check_dkd(student_logits, teacher_logits, labels, temperature)
  student_logits, teacher_logits = checks.as_float32(student_logits, teacher_logits)
  is_target = _target_mask(student_logits, labels)
  log_p_t = _non_target_log_probs(teacher_logits, is_target, temperature)
  log_p_s = _non_target_log_probs(student_logits, is_target, temperature)
  terms = jnp.where(is_target, 0.0, jnp.exp(log_p_t) * (log_p_t - log_p_s))
  return temperature**2 * jnp.sum(terms, axis=-1)


def dkd(student_logits, teacher_logits, labels, *, alpha: float, beta: float, temperature: float):
  """Decoupled KD (Zhao et al., CVPR 2022, Eq. 6), per example: α·TCKD + β·NCKD.

  The paper's CIFAR-100 values: α = 1, τ = 4, β = 8 (β = 2 for resnet56 → resnet20); the method
  adds CE and warms the weight up (`kd_jax.methods.dkd`).
  """
  return alpha * tckd(student_logits, teacher_logits, labels, temperature=temperature) + (
      beta * nckd(student_logits, teacher_logits, labels, temperature=temperature)
  )


# ------------------------------------------------------------------ DIST (Huang et al., NeurIPS 2022)
def _pearson(a, b, axis):
  """Pearson correlation along `axis`: ⟨a − ā, b − b̄⟩ / (‖a − ā‖ ‖b − b̄‖).

  Each squared norm is clamped to ε² = 1e-16 before its square root, so a constant vector (a
  class nobody predicts) gives a correlation of 0 and finite gradients, where √0 would give NaN.
  """
  a = a - jnp.mean(a, axis=axis, keepdims=True)
  b = b - jnp.mean(b, axis=axis, keepdims=True)
  scale = jax.lax.rsqrt(jnp.maximum(jnp.sum(a * a, axis=axis), 1e-16)) * jax.lax.rsqrt(
      jnp.maximum(jnp.sum(b * b, axis=axis), 1e-16)
  )
  return jnp.sum(a * b, axis=axis) * scale


def _check_dist(student_logits, teacher_logits, temperature):
  checks.require_rank("student_logits", student_logits, 2)
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")


def dist_inter_class(student_logits, teacher_logits, *, temperature: float):
  """DIST's inter-class relation (Huang et al., NeurIPS 2022, Eq. 7), per example.

  Y = σ(Z/τ) row-wise; L_i = τ²·(1 − ρ(Y^S_i,:, Y^T_i,:)), ρ the Pearson correlation over the
  classes of example i: the student matches how the teacher ranks classes, not its exact
  probabilities. mean_i L_i is the paper's L_inter (with τ² as in the official code).

  Args:
    student_logits, teacher_logits: [batch, classes].
  Returns:
    [batch] float32 in [0, 2τ²].
  """
  _check_dist(student_logits, teacher_logits, temperature)
  student_logits, teacher_logits = checks.as_float32(student_logits, teacher_logits)
  y_s = jax.nn.softmax(student_logits / temperature, axis=-1)
  y_t = jax.nn.softmax(teacher_logits / temperature, axis=-1)
  return temperature**2 * (1.0 - _pearson(y_s, y_t, axis=-1))


def dist_intra_class(student_logits, teacher_logits, *, temperature: float):
  """DIST's intra-class relation (Eq. 8), per *class*: it couples the examples of a batch.

  L_c = τ²·(1 − ρ(Y^S_:,c, Y^T_:,c)), ρ over the batch's examples of the probabilities of class c
  (Y = σ(Z/τ) row-wise): which examples look most like class c. mean_c L_c is the paper's
  L_intra; it needs a batch of ≥ 2 examples.

  Args:
    student_logits, teacher_logits: [batch, classes].
  Returns:
    [classes] float32 in [0, 2τ²].
  """
  _check_dist(student_logits, teacher_logits, temperature)
  if jnp.shape(student_logits)[0] < 2:
    raise ValueError(
        "dist_intra_class correlates examples of a batch: it needs at least 2, got logits of "
        f"shape {tuple(jnp.shape(student_logits))}."
    )
  student_logits, teacher_logits = checks.as_float32(student_logits, teacher_logits)
  y_s = jax.nn.softmax(student_logits / temperature, axis=-1)
  y_t = jax.nn.softmax(teacher_logits / temperature, axis=-1)
  return temperature**2 * (1.0 - _pearson(y_s, y_t, axis=0))
