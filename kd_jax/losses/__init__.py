"""Pure, unreduced distillation losses: `(arrays..., *, hyper-parameters) -> [batch]`.

One file per family (DESIGN.md): `logits` (Hinton KD, ensembles, CE, DKD, DIST), `relational`
(similarity KL for CompRess/ReAugKD, RKD, CC, PKT, SP), `attention` (AMAD, one-to-one, head
pooling), `embedding` (SEA MSE, FitNets, AT, cosine), `feature_maps` (NST, VID, OFD, ReviewKD's
HCL), `scaffold` (DiSK), `contrastive` (SupCon, ReAugKD's projection). Each docstring gives the
equation and its paper.
"""

from kd_jax.losses.attention import amad, head_pooled_attention, one_to_one_attention
from kd_jax.losses.contrastive import supervised_contrastive
from kd_jax.losses.embedding import (
    attention_transfer,
    cosine_distance,
    embedding_mse,
    fitnets_hint,
)
from kd_jax.losses.feature_maps import hcl, nst_mmd, ofd_partial_l2, vid_nll
from kd_jax.losses.logits import (
    cross_entropy,
    dist_inter_class,
    dist_intra_class,
    dkd,
    ensemble_logits,
    hinton_kd,
    kl_from_logits,
    nckd,
    tckd,
)
from kd_jax.losses.relational import (
    correlation_congruence,
    pkt,
    rkd_angle,
    rkd_distance,
    similarity_kl,
    similarity_preserving,
)
from kd_jax.losses.scaffold import (disk_budget, disk_loss, disk_poster_budget, disk_poster_loss)

__all__ = [
    "amad",
    "attention_transfer",
    "correlation_congruence",
    "cosine_distance",
    "cross_entropy",
    "disk_budget",
    "disk_loss",
    "disk_poster_budget",
    "disk_poster_loss",
    "dist_inter_class",
    "dist_intra_class",
    "dkd",
    "embedding_mse",
    "ensemble_logits",
    "fitnets_hint",
    "hcl",
    "head_pooled_attention",
    "hinton_kd",
    "kl_from_logits",
    "nckd",
    "nst_mmd",
    "ofd_partial_l2",
    "one_to_one_attention",
    "pkt",
    "rkd_angle",
    "rkd_distance",
    "similarity_kl",
    "similarity_preserving",
    "supervised_contrastive",
    "tckd",
    "vid_nll",
]
