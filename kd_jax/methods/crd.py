"""CRD: contrastive representation distillation (Tian, Krishnan, Isola; ICLR 2020), a baseline
of the CompRess and CIFAR-100 tables (PAPERS.md "Baselines").

Both embeddings go through their own linear head (method params) to `feature_dim` = 128 and are
L2-normalised: z^S_i = n(g_S(s_i)), z^T_i = n(g_T(t_i)). The pair (z^S_i, z^T_i) of one input is
the positive; the negatives are K earlier embeddings of the *other* side, kept in fixed-size
FIFO queues in the method state (Q^T for teacher negatives, Q^S for student ones), not the paper's
N×d memory bank indexed by example:

    L_i = −log e^{z^S_i·z^T_i/τ} / (e^{z^S_i·z^T_i/τ} + Σ_k e^{z^S_i·Q^T_k/τ})
          −log e^{z^T_i·z^S_i/τ} / (e^{z^T_i·z^S_i/τ} + Σ_k e^{z^T_i·Q^S_k/τ})   (`crd_info_nce`)

Form: InfoNCE (softmax over one positive and K negatives), in both directions as the paper's
symmetric objective (student anchor against teacher negatives, teacher anchor against student
negatives). Not the paper's NCE form h = e^{z·z'/τ}/(e^{z·z'/τ} + K/N·Z): that needs the dataset
size N and a normaliser Z estimated on the first batch, both tied to the N×d bank that a queue
replaces, whereas InfoNCE is the form a FIFO queue of negatives is normally paired with (MoCo).
Numbers are therefore "CRD (InfoNCE, queue)", not the paper's exact objective. The queues hold the heads' stop-gradient outputs of past batches (the
paper's bank holds them too, updated with momentum 0.5 instead of FIFO); they start as random unit
vectors and are written after the optimiser step (`kd_jax.methods.compress.enqueue`). τ = 0.07,
K = 16 384 by default (the paper's negatives count).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import checks
from kd_jax.losses import embedding as embedding_losses
from kd_jax.losses import relational
from kd_jax.methods import base
from kd_jax.methods import compress
from kd_jax.methods import fitnets


def _one_direction(anchor, positive, negatives, temperature):
  """−log softmax of the positive among [positive, negatives] for each anchor row."""
  positive_logit = jnp.sum(anchor * positive, axis=-1, keepdims=True) / temperature
  negative_logits = anchor @ negatives.T / temperature
  logits = jnp.concatenate([positive_logit, negative_logits], axis=-1)
  return -jax.nn.log_softmax(logits, axis=-1)[:, 0]


def crd_info_nce(student_z, teacher_z, student_queue, teacher_queue, *, temperature: float):
  """CRD's symmetric InfoNCE per example (equation in the module docstring).

  Every argument is L2-normalised inside. Args: student_z, teacher_z [batch, m] (the heads'
  outputs), student_queue, teacher_queue [K, m] (negatives). Returns [batch] float32, ≥ 0.
  """
  checks.require_rank("student_z", student_z, 2)
  checks.require_same_shape("student_z", student_z, "teacher_z", teacher_z)
  checks.require_rank("student_queue", student_queue, 2)
  checks.require_same_shape("student_queue", student_queue, "teacher_queue", teacher_queue)
  checks.require_dim("student_z", student_z, -1, "student_queue", student_queue, -1, "Dimensions")
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")
  z_s, z_t, q_s, q_t = (
      relational.l2_normalize(x)
      for x in checks.as_float32(student_z, teacher_z, student_queue, teacher_queue)
  )
  return _one_direction(z_s, z_t, q_t, temperature) + _one_direction(z_t, z_s, q_s, temperature)


@dataclasses.dataclass(frozen=True)
class CRD(base.Method):
  """Attributes:
  feature_dim: m, the heads' output width (paper: 128).
  queue_size: K negatives per side (paper: 16 384); must be ≥ the global batch size.
  temperature: τ (paper: 0.07).
  weight: of the CRD term; kd_weight, kd_temperature, ce_weight: the optional logit terms
    (RepDistiller's CIFAR-100 CRD uses weight 0.8 with KD; 0 by default for label-free runs).
  teacher: index of the teacher whose embedding is distilled.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"embedding"})
  feature_dim: int = 128
  queue_size: int = 16_384
  temperature: float = 0.07
  weight: float = 1.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 0.0
  teacher: int = 0

  def __post_init__(self):
    for name in ("feature_dim", "queue_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"crd: {name} must be >= 1, got {getattr(self, name)}.")
    if self.temperature <= 0 or self.kd_temperature <= 0:
      raise ValueError("crd: temperatures must be positive.")
    if min(self.weight, self.kd_weight, self.ce_weight) < 0:
      raise ValueError("crd: weights must be >= 0.")

  def _embeddings(self, io):
    if not 0 <= self.teacher < len(io.teachers):
      raise ValueError(f"crd: teacher={self.teacher} but the run has {len(io.teachers)}.")
    return io.student["embedding"], io.teachers[self.teacher]["embedding"]

  def init(self, rng, io):
    s, t = self._embeddings(io)
    if io.context.batch_size > self.queue_size:
      raise ValueError(
          f"crd: queue_size={self.queue_size} is smaller than the batch size "
          f"{io.context.batch_size}."
      )
    keys = jax.random.split(rng, 4)

    def head(key, width):  # PyTorch's nn.Linear scale, zero bias
      return {
          "kernel": jax.random.normal(key, (width, self.feature_dim)) / np.sqrt(width),
          "bias": jnp.zeros((self.feature_dim,)),
      }

    params = {
        "student_head": head(keys[0], s.shape[-1]),
        "teacher_head": head(keys[1], t.shape[-1]),
    }
    state = {
        "student_queue": compress.random_queue(keys[2], self.queue_size, self.feature_dim),
        "teacher_queue": compress.random_queue(keys[3], self.queue_size, self.feature_dim),
        "pointer": jnp.zeros((), jnp.int32),
    }
    return base.Variables(params=params, state=state)

  def project(self, params, io):
    """(z^S, z^T) [b, m], L2-normalised."""
    s, t = self._embeddings(io)
    z_s = embedding_losses.apply_adapter(s, params["student_head"])
    z_t = embedding_losses.apply_adapter(t, params["teacher_head"])
    return relational.l2_normalize(z_s), relational.l2_normalize(z_t)

  def loss(self, params, state, io):
    z_s, z_t = self.project(params, io)
    value = jnp.mean(
        crd_info_nce(
            z_s, z_t, state["student_queue"], state["teacher_queue"], temperature=self.temperature
        )
    )
    terms = fitnets.task_terms(self, io)
    loss = self.weight * value
    loss += self.kd_weight * terms.get("kd", 0.0) + self.ce_weight * terms.get("ce", 0.0)
    state_inputs = {
        "student": jax.lax.stop_gradient(z_s),
        "teacher": jax.lax.stop_gradient(z_t),
    }
    return loss, base.Aux(metrics={"crd": value, **terms}, state_inputs=state_inputs)

  def update_state(self, state, io):
    rows, pointer = io.state_inputs, state["pointer"]
    return {
        "student_queue": compress.enqueue(state["student_queue"], pointer, rows["student"]),
        "teacher_queue": compress.enqueue(state["teacher_queue"], pointer, rows["teacher"]),
        "pointer": compress.advance(pointer, rows["student"].shape[0], self.queue_size),
    }
