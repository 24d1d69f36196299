"""Pure, unreduced distillation losses: `(arrays..., *, hyper-parameters) -> [batch]`.

One file per family (DESIGN.md): `logits` (Hinton KD, ensembles, CE), `relational` (similarity KL
for CompRess/ReAugKD, RKD, CC), `attention` (AMAD, one-to-one, head pooling), `embedding` (SEA MSE,
FitNets, cosine), `scaffold` (DiSK), `contrastive` (SupCon, ReAugKD's projection). Each docstring gives the equation and its docs/PAPERS.md section.
"""

from kd_jax.losses.attention import amad, head_pooled_attention, one_to_one_attention
from kd_jax.losses.contrastive import supervised_contrastive
from kd_jax.losses.embedding import (
    attention_transfer,
    cosine_distance,
    embedding_mse,
    fitnets_hint,
)
from kd_jax.losses.logits import cross_entropy, ensemble_logits, hinton_kd, kl_from_logits
from kd_jax.losses.relational import (
    correlation_congruence,
    rkd_angle,
    rkd_distance,
    similarity_kl,
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
    "embedding_mse",
    "ensemble_logits",
    "fitnets_hint",
    "head_pooled_attention",
    "hinton_kd",
    "kl_from_logits",
    "one_to_one_attention",
    "rkd_angle",
    "rkd_distance",
    "similarity_kl",
    "supervised_contrastive",
]
