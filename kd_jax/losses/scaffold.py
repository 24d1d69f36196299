"""DiSK: a help (gate) network scaffolds a low-capacity student (Kag et al., ICLR 2023; PAPERS.md §4).

g(x) ∈ (0, 1) is computed from teacher features only and used in training only. It adds
probability mass to the student's prediction on the teacher's plausible classes, which censors
examples the student cannot fit; a budget term stops g from helping everywhere.

`disk_loss` / `disk_budget` follow the official code; `disk_poster_loss` / `disk_poster_budget`
the poster's objective. Schedules (λ, δ), the alternating student/gate updates and the extra
`mean(log(1 + K·g))` term belong to the DiSK method, which combines these pieces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.logits import cross_entropy


def _check_disk_inputs(student_logits, teacher_logits, gate, labels):
  checks.require_rank("student_logits", student_logits, 2)
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  checks.require_labels(student_logits, labels)
  gate = jnp.asarray(gate)
  if gate.shape not in ((student_logits.shape[0],), (student_logits.shape[0], 1)):
    raise ValueError(
        f"gate has shape {tuple(gate.shape)} but must be [batch] or [batch, 1] with "
        f"batch = {student_logits.shape[0]} (student_logits {tuple(student_logits.shape)})."
    )
  return checks.as_float32(jnp.reshape(gate, (-1,)))


def plausible_class_mask(teacher_logits, labels, *, top_k: int):
  """m = top-K teacher classes ∪ {true label}, as a {0, 1} float mask [batch, classes]."""
  classes = teacher_logits.shape[-1]
  if not 1 <= top_k <= classes:
    raise ValueError(f"top_k must be in [1, {classes}] for {classes} classes, got {top_k}.")
  _, top = jax.lax.top_k(checks.as_float32(teacher_logits), top_k)
  mask = jnp.max(jax.nn.one_hot(top, classes), axis=-2)
  return jnp.maximum(mask, jax.nn.one_hot(labels, classes))


def disk_loss(
    student_logits,
    teacher_logits,
    gate,
    labels,
    *,
    student_temperature: float,
    teacher_temperature: float,
    top_k: int,
):
  """DiSK's scaffolded distillation term (official code), per example.

  m = top-K(l_T) ∪ {y};  t̃ = softmax((l_T/τ_t)·m + min_c(l_T)·(1 − m)) ⊙ m;
  z = softmax(l_S/τ_s) + g·m;  L_i = τ_s τ_t Σ_c −t̃_c log z_c.
  min_c(l_T) is taken over the raw teacher logits, as in the code. With g = 0 and K = C this is
  τ_s τ_t · CE(softmax(l_T/τ_t), softmax(l_S/τ_s)). Only the plausible classes carry teacher mass,
  and g lifts the student's probability there: large g means "this example is being helped".

  Args:
    student_logits, teacher_logits: [batch, classes].
    gate: g(x) ∈ (0, 1), [batch] or [batch, 1].
    labels: [batch] int.
    student_temperature: τ_s (CIFAR: 3.5); teacher_temperature: τ_t (CIFAR: 4); top_k: K (10).
  Returns:
    [batch] float32.
  """
  gate = _check_disk_inputs(student_logits, teacher_logits, gate, labels)
  student_logits, teacher_logits = checks.as_float32(student_logits, teacher_logits)
  mask = plausible_class_mask(teacher_logits, labels, top_k=top_k)
  floor = jnp.min(teacher_logits, axis=-1, keepdims=True)
  teacher = jax.nn.softmax(teacher_logits / teacher_temperature * mask + floor * (1 - mask)) * mask
  helped = jax.nn.softmax(student_logits / student_temperature) + gate[:, None] * mask
  # z ≥ softmax(·) > 0 wherever t̃ > 0, so the log is finite; clamp only guards underflow.
  log_helped = jnp.log(jnp.maximum(helped, 1e-30))
  return student_temperature * teacher_temperature * jnp.sum(-teacher * log_helped, axis=-1)


def disk_budget(student_logits, teacher_logits, gate, labels, *, delta: float, max_ce: float = 5.0):
  """DiSK's budget penalty on the gate (official code): a batch-level scalar.

  b_i = min(CE(l_S(x_i), argmax l_T(x_i)), max_ce);  n_err = #{i : argmax l_S(x_i) ≠ y_i};
  reg = ReLU((1/n_err) Σ_i g_i b_i − δ).
  A batch with no misclassified example (n_err = 0) makes the code's 1/n_err infinite; here the
  normaliser is max(n_err, 1), so the penalty stays finite and continues to push g down (it is
  what n_err = 1 would give). b_i is a constant weight: no gradient flows into the student here.

  Returns:
    scalar float32.
  """
  gate = _check_disk_inputs(student_logits, teacher_logits, gate, labels)
  teacher_class = jnp.argmax(teacher_logits, axis=-1)
  hardness = jnp.minimum(cross_entropy(student_logits, teacher_class), max_ce)
  hardness = jax.lax.stop_gradient(hardness)
  errors = jnp.sum((jnp.argmax(student_logits, axis=-1) != labels).astype(jnp.float32))
  return jax.nn.relu(jnp.sum(gate * hardness) / jnp.maximum(errors, 1.0) - delta)


def disk_poster_loss(student_logits, teacher_logits, gate, *, eps: float = 1e-12):
  """The poster's distillation term, per example: −Σ_y t_y log[(s_y + g) / t_y].

  t = softmax(l_T), s = softmax(l_S); the gate adds g to every class's student probability.

  Returns:
    [batch] float32.
  """
  checks.require_rank("student_logits", student_logits, 2)
  checks.require_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
  gate = checks.as_float32(jnp.reshape(gate, (-1,)))
  checks.require_dim("gate", gate, 0, "student_logits", student_logits, 0, "Batch sizes")
  log_t = jax.nn.log_softmax(checks.as_float32(teacher_logits))
  s = jax.nn.softmax(checks.as_float32(student_logits))
  return -jnp.sum(jnp.exp(log_t) * (jnp.log(s + gate[:, None] + eps) - log_t), axis=-1)


def disk_poster_budget(student_logits, gate, labels, *, delta: float):
  """The poster's budget, a batch scalar: max(0, −(1/N) Σ_i g(x_i) log s_{y_i}(x_i) − δ)."""
  checks.require_labels(student_logits, labels)
  gate = checks.as_float32(jnp.reshape(gate, (-1,)))
  checks.require_dim("gate", gate, 0, "labels", labels, 0, "Batch sizes")
  nll = jax.lax.stop_gradient(cross_entropy(student_logits, labels))
  return jax.nn.relu(jnp.mean(gate * nll) - delta)
