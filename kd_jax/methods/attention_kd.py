"""Attention / hidden-state distillation baselines that AMAD (PAPERS.md §3) is compared with.

L = w_attn·(1/B) Σ_b Σ_(t,s)∈layer_map ℓ(teacher layer t, student layer s)_b + w_kd·τ²KL + w_ce·CE,

with ℓ chosen by `kind` (A^T [B, H_t, q, k], A^S [B, H_s, q, k] attention probabilities, H the
hidden states [B, tokens, d]; "mse" / "kl" by `distance`, means over heads, queries, keys):

  "one_to_one"  TinyBERT / MiniLM: head h ↔ head h, `one_to_one_attention`; needs H_t = H_s
  "head_mean"   TextBrewer: (1/H_t) Σ_h A^T_h vs (1/H_s) Σ_h A^S_h, `head_pooled_attention`
  "head_sum"    TextBrewer: Σ_h A^T_h vs Σ_h A^S_h (MSE only), `head_summed_attention`
  "head_pool"   Tunix: the teacher's heads averaged in contiguous groups of H_t / H_s, then one to
                one, `head_group_pooled_attention`; needs H_t divisible by H_s
  "hidden_mse"  TinyBERT's hidden-state loss: mean (H^S W + b − H^T)², through a learned linear
                map (one per layer pair, a `method` param) when the widths differ, else H^S itself

Layers are stacked and each ℓ `vmap`ped over them. Padded text positions
(`batch["attention_mask"]`) are left out: their query rows (tokens) are zeroed on both sides, so
they add nothing, and the mean is rescaled by q / (number of real positions) — the mean over the
real positions only.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import attention as attention_losses
from kd_jax.losses import embedding
from kd_jax.methods import base
from kd_jax.methods.amad import (
    batch_query_mask,
    checked_layer_map_pairs,
    stack_mapped_layers,
    zero_padded_queries,
)
from kd_jax.methods.fitnets import task_terms

KINDS = ("one_to_one", "head_mean", "head_sum", "head_pool", "hidden_mse")
DISTANCES = ("mse", "kl")


def _check_attention_shapes(kind, teacher, student):
  """Stacked maps [layers, batch, H, q, k]: what each kind can bridge, with one clear error."""
  t_shape, s_shape = teacher.shape[1:], student.shape[1:]
  (b_t, h_t, q_t, k_t), (b_s, h_s, q_s, k_s) = t_shape, s_shape
  where = (
      f"the teacher's attention maps [batch, heads, q, k] have shape {t_shape} and the "
      f"student's {s_shape}"
  )
  if (b_t, q_t, k_t) != (b_s, q_s, k_s):
    raise ValueError(
        f"attention_kd(kind={kind!r}): {where}; batch, query and key lengths must match."
    )
  if kind == "one_to_one" and h_t != h_s:
    raise ValueError(
        f"attention_kd(kind='one_to_one') needs equal head counts, but {where}; use "
        "kind='head_pool', 'head_mean' or the AMAD method."
    )
  if kind == "head_pool" and h_t % h_s:
    raise ValueError(
        f"attention_kd(kind='head_pool') needs the teacher's head count to be a multiple of the "
        f"student's, but {where}; use kind='head_mean' or the AMAD method."
    )


def _real_position_rescale(query_mask, length):
  """q / (number of real positions) per example: turns a mean over all positions whose padded
  terms are zero into the mean over the real positions (1 for a batch without padding)."""
  if query_mask is None:
    return 1.0
  return length / jnp.maximum(jnp.sum(query_mask, axis=-1), 1.0)


@dataclasses.dataclass(frozen=True)
class AttentionKD(base.Method):
  """Attributes:
  kind: one of KINDS (see the module docstring).
  layer_map: ((teacher layer, student layer), ...), 0-based; empty: `amad.uniform_layer_map`.
  distance: "mse" or "kl" between maps for one_to_one, head_mean and head_pool.
  attention_weight: w_attn, the weight of the attention (or, for hidden_mse, hidden-state) term;
  kd_weight, kd_temperature (τ), ce_weight: the logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "attentions"})
  kind: str = "head_mean"
  layer_map: tuple = ()
  distance: str = "mse"
  attention_weight: float = 1.0
  kd_weight: float = 1.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "layer_map", checked_layer_map_pairs(self.layer_map, "attention_kd"))
    if self.kind not in KINDS:
      raise ValueError(f"attention_kd: kind must be one of {KINDS}, got {self.kind!r}.")
    if self.distance not in DISTANCES:
      raise ValueError(f"attention_kd: distance must be one of {DISTANCES}, got {self.distance!r}.")
    if self.kind == "head_sum" and self.distance != "mse":
      raise ValueError("attention_kd: kind='head_sum' compares summed maps by MSE only.")
    if min(self.attention_weight, self.kd_weight, self.ce_weight) < 0 or self.kd_temperature <= 0:
      raise ValueError("attention_kd: weights must be >= 0 and kd_temperature > 0.")

  def requested_outputs(self):
    # hidden_mse reads hidden states only: not asking for attention maps keeps fused attention.
    if self.kind != "hidden_mse":
      return super().requested_outputs()
    return frozenset({"logits", "features"}), frozenset({"logits", "features"})

  def init(self, rng, io):
    if self.kind != "hidden_mse":
      return base.Variables()
    teacher, student = stack_mapped_layers(io, "features", self.layer_map, "attention_kd")
    layers, d_s, d_t = student.shape[0], student.shape[-1], teacher.shape[-1]
    if d_s == d_t:
      return base.Variables()  # equal widths are compared directly
    kernel = jax.random.normal(rng, (layers, d_s, d_t)) / np.sqrt(d_s)
    return base.Variables(
        params={"hidden_maps": {"kernel": kernel, "bias": jnp.zeros((layers, d_t))}}
    )

  def transfer(self, params, io):
    """The attention (or hidden-state) term per mapped layer and example, [layers, batch]."""
    if self.kind == "hidden_mse":
      return self._hidden_mse(params, io)
    teacher, student = stack_mapped_layers(io, "attentions", self.layer_map, "attention_kd")
    _check_attention_shapes(self.kind, teacher, student)
    query_mask = batch_query_mask(io.batch, teacher.shape[1], teacher.shape[3], "attention_kd")
    if query_mask is not None:
      teacher = zero_padded_queries(teacher, query_mask)
      student = zero_padded_queries(student, query_mask)
    if self.kind == "head_sum":
      per_layer = jax.vmap(attention_losses.head_summed_attention)(teacher, student)
    else:
      compare_maps = {
          "one_to_one": attention_losses.one_to_one_attention,
          "head_mean": attention_losses.head_pooled_attention,
          "head_pool": attention_losses.head_group_pooled_attention,
      }[self.kind]
      per_layer = jax.vmap(lambda t, s: compare_maps(t, s, kind=self.distance))(teacher, student)
    return per_layer * _real_position_rescale(query_mask, teacher.shape[-2])

  def _hidden_mse(self, params, io):
    teacher, student = stack_mapped_layers(io, "features", self.layer_map, "attention_kd")
    if teacher.shape[1:-1] != student.shape[1:-1]:
      raise ValueError(
          f"attention_kd(kind='hidden_mse'): the teacher's hidden states [batch, tokens, d] have "
          f"shape {teacher.shape[1:]} and the student's {student.shape[1:]}; batch and token "
          "counts must match."
      )
    if "hidden_maps" in params:
      student = jax.vmap(embedding.apply_adapter)(student, params["hidden_maps"])
    layers, batch, tokens, _ = teacher.shape
    token_mask = batch_query_mask(io.batch, batch, tokens, "attention_kd")
    if token_mask is not None:
      teacher, student = teacher * token_mask[:, :, None], student * token_mask[:, :, None]
    flat = lambda x: jnp.reshape(x, (layers, batch, -1))
    per_layer = jax.vmap(embedding.embedding_mse)(flat(student), flat(teacher))
    return per_layer * _real_position_rescale(token_mask, tokens)

  def loss(self, params, state, io):
    del state
    transfer = jnp.mean(jnp.sum(self.transfer(params, io), axis=0))
    terms = task_terms(self, io)
    loss = (
        self.attention_weight * transfer
        + self.kd_weight * terms.get("kd", 0.0)
        + self.ce_weight * terms.get("ce", 0.0)
    )
    name = "hidden" if self.kind == "hidden_mse" else "attention"
    return loss, base.Aux(metrics={name: transfer, **terms})
