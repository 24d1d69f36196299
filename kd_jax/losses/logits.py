"""Logit-level distillation losses: Hinton KD, teacher ensembles, cross-entropy.

All functions are pure and unreduced: they return one value per example (every leading axis of
the logits is kept, the class axis is the last one) and the caller reduces. Computation is in
float32 whatever the input dtype. Reference: PAPERS.md §0 (Hinton et al., 2015) and §6
(Stanton et al., 2021, ensemble teacher).
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
