"""Every public loss as a (function, input maker) pair, for the property tests.

Inputs are float arrays only; hyper-parameters and explicit parameters (adapters, projections)
are closed over, so `jit`, `vmap` and `grad` can be applied uniformly.
"""

import dataclasses
from typing import Callable

import numpy as np

import kd_jax.losses as L


@dataclasses.dataclass(frozen=True)
class Case:
  fn: Callable
  make: Callable  # (rng, batch) -> tuple of float arrays
  per_example: bool = True  # False for batch-level scalars (DiSK budgets)
  per_class: bool = False  # one value per class of the 7 (DIST's intra-class relation)


def _attn(rng, shape):
  return np.asarray(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]), np.float32)


def _logit_pair(rng, b, c=7):
  return rng.normal(size=(b, c)).astype(np.float32), 2 * rng.normal(size=(b, c)).astype(np.float32)


_LABELS = np.array([0, 3, 5, 6, 1, 2, 4, 0])
_ADAPTER = {
    "kernel": np.random.default_rng(7).normal(size=(3, 5)).astype(np.float32),
    "bias": np.linspace(-1, 1, 5).astype(np.float32),
}
_PROJECTION = {
    "kernel": np.abs(np.random.default_rng(8).normal(size=(6, 6))).astype(np.float32),
    "bias": np.full((6,), 0.01, np.float32),
}


def _maps(rng, b, c_s=3, c_t=5, size=4):
  return (
      rng.normal(size=(b, size, size, c_s)).astype(np.float32),
      rng.normal(size=(b, size, size, c_t)).astype(np.float32),
  )


def _gate(rng, b):
  return rng.uniform(0.05, 0.95, size=(b,)).astype(np.float32)


CASES = {
    "hinton_kd": Case(lambda s, t: L.hinton_kd(s, t, temperature=4.0), _logit_pair),
    "kl_from_logits": Case(lambda s, t: L.kl_from_logits(t, s, temperature=2.0), _logit_pair),
    "cross_entropy": Case(
        lambda s: L.cross_entropy(s, _LABELS[: s.shape[0]], label_smoothing=0.1),
        lambda rng, b: _logit_pair(rng, b)[:1],
    ),
    "ensemble_logits": Case(
        lambda m: L.ensemble_logits(m).sum(-1),
        lambda rng, b: (rng.normal(size=(3, b, 7)).astype(np.float32),),
    ),
    "similarity_kl": Case(
        lambda s, sa, t, ta: L.similarity_kl(
            s, sa, t, ta, temperature=0.1, student_temperature=0.2
        ),
        lambda rng, b: (
            rng.normal(size=(b, 4)).astype(np.float32),
            rng.normal(size=(9, 4)).astype(np.float32),
            rng.normal(size=(b, 6)).astype(np.float32),
            rng.normal(size=(9, 6)).astype(np.float32),
        ),
    ),
    "rkd_distance": Case(
        L.rkd_distance,
        lambda rng, b: (
            rng.normal(size=(b, 4)).astype(np.float32),
            rng.normal(size=(b, 6)).astype(np.float32),
        ),
    ),
    "rkd_angle": Case(
        L.rkd_angle,
        lambda rng, b: (
            rng.normal(size=(b, 4)).astype(np.float32),
            rng.normal(size=(b, 6)).astype(np.float32),
        ),
    ),
    "correlation_congruence": Case(
        L.correlation_congruence,
        lambda rng, b: (
            rng.normal(size=(b, 4)).astype(np.float32),
            rng.normal(size=(b, 6)).astype(np.float32),
        ),
    ),
    "amad_mse": Case(
        lambda t, s: L.amad(t, s, variant="mse"),
        lambda rng, b: (_attn(rng, (b, 4, 5, 6)), _attn(rng, (b, 2, 5, 6))),
    ),
    "amad_kl": Case(
        lambda t, s: L.amad(t, s, variant="kl"),
        lambda rng, b: (_attn(rng, (b, 4, 5, 6)), _attn(rng, (b, 2, 5, 6))),
    ),
    "amad_token_kl": Case(
        lambda t, s: L.amad(t, s, variant="token_kl"),
        lambda rng, b: (_attn(rng, (b, 4, 5, 6)), _attn(rng, (b, 2, 5, 6))),
    ),
    "amad_projected": Case(
        lambda t, s: L.amad(t, s, variant="kl", projection=_PROJECTION),
        lambda rng, b: (_attn(rng, (b, 4, 5, 6)), _attn(rng, (b, 2, 5, 6))),
    ),
    "one_to_one_attention": Case(
        lambda t, s: L.one_to_one_attention(t, s, kind="kl"),
        lambda rng, b: (_attn(rng, (b, 3, 5, 6)), _attn(rng, (b, 3, 5, 6))),
    ),
    "head_pooled_attention": Case(
        lambda t, s: L.head_pooled_attention(t, s, kind="mse"),
        lambda rng, b: (_attn(rng, (b, 4, 5, 6)), _attn(rng, (b, 2, 5, 6))),
    ),
    "supervised_contrastive": Case(
        lambda e: L.supervised_contrastive(
            e, np.array([0, 1, 0, 1, 2, 0, 1, 2])[: e.shape[0]], temperature=0.1
        )[0],
        lambda rng, b: (rng.normal(size=(b, 6)).astype(np.float32),),
    ),
    "embedding_mse": Case(
        L.embedding_mse,
        lambda rng, b: (
            rng.normal(size=(b, 8)).astype(np.float32),
            rng.normal(size=(b, 8)).astype(np.float32),
        ),
    ),
    "fitnets_hint": Case(
        lambda s, t: L.fitnets_hint(s, t, _ADAPTER),
        lambda rng, b: (
            rng.normal(size=(b, 2, 2, 3)).astype(np.float32),
            rng.normal(size=(b, 2, 2, 5)).astype(np.float32),
        ),
    ),
    "attention_transfer": Case(
        L.attention_transfer,
        lambda rng, b: (
            rng.normal(size=(b, 3, 3, 4)).astype(np.float32),
            rng.normal(size=(b, 3, 3, 6)).astype(np.float32),
        ),
    ),
    "cosine_distance": Case(
        L.cosine_distance,
        lambda rng, b: (
            rng.normal(size=(b, 8)).astype(np.float32),
            rng.normal(size=(b, 8)).astype(np.float32),
        ),
    ),
    "disk_loss": Case(
        lambda s, t, g: L.disk_loss(
            s,
            t,
            g,
            _LABELS[: s.shape[0]],
            student_temperature=3.5,
            teacher_temperature=4.0,
            top_k=3,
        ),
        lambda rng, b: (*_logit_pair(rng, b), _gate(rng, b)),
    ),
    "disk_budget": Case(
        lambda s, t, g: L.disk_budget(s, t, g, _LABELS[: s.shape[0]], delta=0.1, max_ce=5.0),
        lambda rng, b: (*_logit_pair(rng, b), _gate(rng, b)),
        per_example=False,
    ),
    "disk_poster_loss": Case(
        L.disk_poster_loss, lambda rng, b: (*_logit_pair(rng, b), _gate(rng, b))
    ),
    "disk_poster_budget": Case(
        lambda s, g: L.disk_poster_budget(s, g, _LABELS[: s.shape[0]], delta=0.1),
        lambda rng, b: (_logit_pair(rng, b)[0], _gate(rng, b)),
        per_example=False,
    ),
    "tckd": Case(lambda s, t: L.tckd(s, t, _LABELS[: s.shape[0]], temperature=4.0), _logit_pair),
    "nckd": Case(lambda s, t: L.nckd(s, t, _LABELS[: s.shape[0]], temperature=4.0), _logit_pair),
    "dkd": Case(
        lambda s, t: L.dkd(s, t, _LABELS[: s.shape[0]], alpha=1.0, beta=8.0, temperature=4.0),
        _logit_pair,
    ),
    "dist_inter_class": Case(lambda s, t: L.dist_inter_class(s, t, temperature=4.0), _logit_pair),
    "dist_intra_class": Case(
        lambda s, t: L.dist_intra_class(s, t, temperature=4.0), _logit_pair, per_class=True
    ),
    "pkt": Case(
        L.pkt,
        lambda rng, b: (
            rng.normal(size=(b, 4)).astype(np.float32),
            rng.normal(size=(b, 6)).astype(np.float32),
        ),
    ),
    "similarity_preserving": Case(L.similarity_preserving, _maps),
    "nst_mmd": Case(L.nst_mmd, _maps),
    "vid_nll": Case(
        L.vid_nll,
        lambda rng, b: (*_maps(rng, b, 5, 5), rng.normal(size=(5,)).astype(np.float32)),
    ),
    "ofd_partial_l2": Case(
        L.ofd_partial_l2,
        lambda rng, b: (*_maps(rng, b, 5, 5), -np.abs(rng.normal(size=(5,))).astype(np.float32)),
    ),
    "hcl": Case(L.hcl, lambda rng, b: _maps(rng, b, 5, 5, size=7)),
}
