"""AMAD: multi-head alignment distillation of attention maps (Zhao et al., AAAI-24, PAPERS.md §3).

L = w_attn·(1/B) Σ_b Σ_(t,s)∈layer_map amad(A^T_t, A^S_s)_b + w_kd·τ²KL(σ(z_t/τ)‖σ(z_s/τ)) + w_ce·CE,

where A^T_t [B, H_t, q, k] are the probabilities of teacher layer t, A^S_s those of student layer
s, and `amad` (`kd_jax.losses.attention.amad`) soft-aligns every teacher head to a mixture of
student heads, so H_t ≠ H_s needs no pooling and no dropped heads:

  "mse"        Eq. 4–6   Σ_i ‖t̂_i − Σ_j a_ij ŝ_j‖², a_ij = softmax_j cos(t_i, s_j)
  "kl"         Eq. 9     Σ_i KL(T_i ‖ Σ_j a_ij S_j), summed over query rows
  "learnable"  Eq. 11    "kl" on S̃ = ReLU(S Wᵀ + b): one (W [k_t, k_s], b [k_t]) per layer pair,
                         trained with the student (`init` creates them)
  "token_kl"   Eq. 12    Σ_l KL(T_l ‖ softmax(cos(T_l, S_l)) S_l), per query position l

The mapped layers are stacked and the alignment is `vmap`ped over them (the loss itself is
vmapped over the batch). Padded text positions (`batch["attention_mask"]`, when the batch has
one) are left out: their query rows are zeroed in both maps (after Eq. 11's projection), which
removes them exactly from the cosines of Eq. 2 and the sums of Eq. 4–6, 9 and 12, and the KL
variants also receive the mask as `query_mask`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import attention as attention_losses
from kd_jax.methods import base
from kd_jax.methods.fitnets import task_terms

VARIANTS = ("mse", "kl", "learnable", "token_kl")


def uniform_layer_map(n_teacher: int, n_student: int) -> tuple[tuple[int, int], ...]:
  """(teacher layer, student layer) pairs, 0-based: student layer j learns from teacher layer
  ⌈(j + 1)·n_teacher / n_student⌉ − 1, i.e. the last layer of the j-th of n_student equal
  blocks of the teacher (6 → 3: teacher layers 2, 4, 6 → student layers 1, 2, 3 in 1-based
  terms), so the last layers always meet. A deeper student repeats teacher layers."""
  if n_teacher < 1 or n_student < 1:
    raise ValueError(
        f"uniform_layer_map needs at least one layer on each side, got {n_teacher} teacher and "
        f"{n_student} student layers."
    )
  return tuple((-(-(j + 1) * n_teacher // n_student) - 1, j) for j in range(n_student))


def checked_layer_map_pairs(layer_map, method: str) -> tuple[tuple[int, int], ...]:
  """The config's layer_map as a tuple of int pairs (lists from JSON configs included)."""
  pairs = tuple(tuple(pair) for pair in layer_map)
  if any(
      len(pair) != 2 or not all(isinstance(i, (int, np.integer)) for i in pair) for pair in pairs
  ):
    raise ValueError(
        f"{method}: layer_map must be (teacher layer, student layer) pairs of integers, got "
        f"{layer_map!r}."
    )
  return tuple((int(t), int(s)) for t, s in pairs)


def resolve_layer_map(layer_map, n_teacher: int, n_student: int, method: str) -> tuple:
  """The explicit pairs, checked against both depths (negative indices count from the end), or
  `uniform_layer_map` when `layer_map` is empty."""
  if not layer_map:
    return uniform_layer_map(n_teacher, n_student)
  for t, s in layer_map:
    if not (-n_teacher <= t < n_teacher and -n_student <= s < n_student):
      raise ValueError(
          f"{method}: layer_map pair (teacher {t}, student {s}) is out of range: the teacher "
          f"has {n_teacher} layers and the student {n_student} (0-based indices)."
      )
  return tuple((t % n_teacher, s % n_student) for t, s in layer_map)


def stack_mapped_layers(io: base.StepIO, key: str, layer_map, method: str):
  """The mapped layers' `key` outputs ("attentions" or "features") of the teacher and the
  student, each stacked on a new leading layer axis, in float32; the teacher side is
  stop-gradient'ed here as well, so the method never trains a teacher even outside the trainer."""
  if len(io.teachers) != 1:
    raise ValueError(
        f"{method} distils the {key} of one teacher, but {len(io.teachers)} teachers were given."
    )
  teacher_layers, student_layers = io.teachers[0].get(key), io.student.get(key)
  if teacher_layers is None or student_layers is None:
    raise ValueError(
        f"{method} needs the models' {key!r} output (a transformer such as BertEncoder or "
        f"VisionTransformer); teacher keys {sorted(io.teachers[0])}, student keys "
        f"{sorted(io.student)}."
    )
  pairs = resolve_layer_map(layer_map, len(teacher_layers), len(student_layers), method)

  def stack(layers, indices, side):
    shapes = {tuple(jnp.shape(layers[i])) for i in indices}
    if len(shapes) != 1:  # e.g. layers with different head counts cannot share one vmap
      raise ValueError(
          f"{method}: the mapped {side} layers have different shapes {sorted(shapes)}."
      )
    return jnp.stack([jnp.asarray(layers[i], jnp.float32) for i in indices])

  teacher = jax.lax.stop_gradient(stack(teacher_layers, [t for t, _ in pairs], "teacher"))
  student = stack(student_layers, [s for _, s in pairs], "student")
  return teacher, student


def batch_query_mask(batch, batch_size: int, length: int, method: str):
  """The batch's attention mask as a float32 [batch, length] mask of real positions, or None
  (images have no padding)."""
  mask = batch.get("attention_mask")
  if mask is None:
    return None
  if tuple(jnp.shape(mask)) != (batch_size, length):
    raise ValueError(
        f"{method}: batch['attention_mask'] has shape {tuple(jnp.shape(mask))} but the models' "
        f"outputs need [batch, positions] = {(batch_size, length)}."
    )
  return jnp.asarray(mask, jnp.float32)


def zero_padded_queries(maps, query_mask):
  """Maps [..., batch, H, q, k] with the rows of padded queries set to zero."""
  return maps * query_mask[:, None, :, None]


def key_interpolation(k_teacher: int, k_student: int) -> np.ndarray:
  """W [k_t, k_s] that resamples a row of k_s keys to k_t by linear interpolation: the identity
  when k_s = k_t. Non-negative, so ReLU(S Wᵀ) starts as the resampled S: with equal key lengths
  "learnable" starts from the "kl" objective and moves away from it only where that helps."""
  positions = np.arange(k_teacher) * ((k_student - 1) / max(k_teacher - 1, 1))
  return np.maximum(0.0, 1.0 - np.abs(positions[:, None] - np.arange(k_student)[None, :]))


@dataclasses.dataclass(frozen=True)
class AMAD(base.Method):
  """Attributes:
  layer_map: ((teacher layer, student layer), ...), 0-based; empty: `uniform_layer_map`.
  variant: "mse", "kl", "learnable" (Eq. 11 projection, then "kl") or "token_kl".
  attention_weight: w_attn; kd_weight, kd_temperature (τ), ce_weight: the logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "attentions"})
  layer_map: tuple = ()
  variant: str = "kl"
  attention_weight: float = 1.0
  kd_weight: float = 1.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "layer_map", checked_layer_map_pairs(self.layer_map, "amad"))
    if self.variant not in VARIANTS:
      raise ValueError(f"amad: variant must be one of {VARIANTS}, got {self.variant!r}.")
    if min(self.attention_weight, self.kd_weight, self.ce_weight) < 0 or self.kd_temperature <= 0:
      raise ValueError("amad: weights must be >= 0 and kd_temperature > 0.")

  def _mapped_maps(self, io):
    teacher, student = stack_mapped_layers(io, "attentions", self.layer_map, "amad")
    # [layers, batch, H, q, k]: AMAD bridges head counts, nothing else.
    (_, b_t, _, q_t, k_t), (_, b_s, _, q_s, k_s) = teacher.shape, student.shape
    keys_bridged = k_t == k_s or self.variant == "learnable"
    if b_t != b_s or q_t != q_s or not keys_bridged:
      hint = (
          "; variant='learnable' maps the student's keys to the teacher's"
          if (b_t, q_t) == (b_s, q_s)
          else ""
      )
      raise ValueError(
          f"amad aligns heads, not positions: the teacher's attention maps [batch, heads, q, k] "
          f"have shape {teacher.shape[1:]} and the student's {student.shape[1:]}; batch, query "
          f"and key lengths must match{hint}."
      )
    return teacher, student

  def init(self, rng, io):
    del rng  # the projection starts deterministic (`key_interpolation`)
    if self.variant != "learnable":
      return base.Variables()
    teacher, student = self._mapped_maps(io)
    layers, k_t, k_s = teacher.shape[0], teacher.shape[-1], student.shape[-1]
    kernel = np.broadcast_to(key_interpolation(k_t, k_s), (layers, k_t, k_s))
    projection = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.zeros((layers, k_t))}
    return base.Variables(params={"projection": projection})

  def alignment(self, params, io):
    """The AMAD term per mapped layer and example, [layers, batch] float32."""
    teacher, student = self._mapped_maps(io)
    if self.variant == "learnable":  # Eq. 11 first, so S̃'s padded rows are dropped like S's
      student = jax.vmap(attention_losses.project_student_maps)(student, params["projection"])
    query_mask = batch_query_mask(io.batch, teacher.shape[1], teacher.shape[3], "amad")
    if query_mask is not None:
      # Zero rows add nothing to the norms and cosines of Eq. 2 nor to Eq. 4–6 / 9 / 12, so the
      # alignment sees the real positions only; the KL variants also take the mask itself.
      teacher = zero_padded_queries(teacher, query_mask)
      student = zero_padded_queries(student, query_mask)
    equation = "kl" if self.variant == "learnable" else self.variant
    query_mask = None if equation == "mse" else query_mask
    align = lambda t, s: attention_losses.amad(t, s, variant=equation, query_mask=query_mask)
    return jax.vmap(align)(teacher, student)

  def loss(self, params, state, io):
    del state
    attention = jnp.mean(jnp.sum(self.alignment(params, io), axis=0))
    terms = task_terms(self, io)
    loss = (
        self.attention_weight * attention
        + self.kd_weight * terms.get("kd", 0.0)
        + self.ce_weight * terms.get("ce", 0.0)
    )
    return loss, base.Aux(metrics={"attention": attention, **terms})

  def eval_metrics(self, params, state, io):
    out = super().eval_metrics(params, state, io)
    if io.teachers:  # how well the student's heads match the teacher's on held-out data
      out["attention_alignment"] = jnp.sum(self.alignment(params, io), axis=0)
    return out
