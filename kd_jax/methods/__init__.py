"""Distillation methods: one module per method, all behind the `base.Method` interface.

`get_method(name, **hyper_parameters)` builds one by the name used in configs.
"""

from __future__ import annotations

import dataclasses
import importlib

from kd_jax.methods.base import (
    Aux,
    Method,
    PrepareContext,
    RunContext,
    StepIO,
    UpdateIO,
    Variables,
    teacher_ensemble_logits,
)
from kd_jax.methods.amad import AMAD
from kd_jax.methods.attention_kd import AttentionKD
from kd_jax.methods.attention_transfer import AttentionTransfer
from kd_jax.methods.compress import CompRess
from kd_jax.methods.crd import CRD
from kd_jax.methods.disk import DiSK
from kd_jax.methods.dist import DIST
from kd_jax.methods.dkd import DKD
from kd_jax.methods.embedding_baselines import CorrelationCongruence, Regression, RegressionBN
from kd_jax.methods.fitnets import FitNets
from kd_jax.methods.nst import NST
from kd_jax.methods.ofd import OFD
from kd_jax.methods.pkt import PKT
from kd_jax.methods.reaugkd import ReAugKD
from kd_jax.methods.reviewkd import ReviewKD
from kd_jax.methods.rkd import RelationalKD
from kd_jax.methods.sea import SEA
from kd_jax.methods.sp import SimilarityPreserving
from kd_jax.methods.supervised import Supervised
from kd_jax.methods.vanilla_kd import VanillaKD
from kd_jax.methods.vid import VID

METHODS: dict[str, type[Method]] = {
    "supervised": Supervised,
    "vanilla_kd": VanillaKD,
    "reaugkd": ReAugKD,
    "rkd": RelationalKD,
    "fitnets": FitNets,
    "at": AttentionTransfer,
    "disk": DiSK,
    "amad": AMAD,
    "attention_kd": AttentionKD,
    "compress": CompRess,
    "crd": CRD,
    "reg": Regression,
    "reg_bn": RegressionBN,
    "cc": CorrelationCongruence,
    "sea": SEA,
    # The method zoo table's baselines (experiments/configs/zoo.py).
    "dkd": DKD,
    "dist": DIST,
    "pkt": PKT,
    "sp": SimilarityPreserving,
    "nst": NST,
    "vid": VID,
    "reviewkd": ReviewKD,
    "ofd": OFD,
}


def get_method(name: str, **hyper_parameters) -> Method:
  """Builds the method called `name`; unknown names or hyper-parameters fail with the valid ones.

  `name` may also be "package.module:ClassName" for a `Method` defined outside this package.
  """
  if ":" in name:
    module_name, _, class_name = name.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
      raise ValueError(f"{name!r} does not name a kd_jax.methods.Method subclass.")
  elif name in METHODS:
    cls = METHODS[name]
  else:
    raise ValueError(
        f"Unknown method {name!r}; known methods: {sorted(METHODS)} (or give "
        "'package.module:ClassName')."
    )
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(hyper_parameters) - known)
  if unknown:
    raise ValueError(
        f"Unknown hyper-parameter(s) {unknown} for method {name!r}; " f"it accepts {sorted(known)}."
    )
  return cls(**hyper_parameters)


__all__ = [
    "VID",
    "SimilarityPreserving",
    "ReviewKD",
    "PKT",
    "OFD",
    "NST",
    "DKD",
    "DIST",
    "AMAD",
    "AttentionKD",
    "CRD",
    "CompRess",
    "CorrelationCongruence",
    "Regression",
    "RegressionBN",
    "AttentionTransfer",
    "Aux",
    "DiSK",
    "FitNets",
    "METHODS",
    "Method",
    "PrepareContext",
    "ReAugKD",
    "RelationalKD",
    "SEA",
    "RunContext",
    "StepIO",
    "Supervised",
    "UpdateIO",
    "VanillaKD",
    "Variables",
    "get_method",
    "teacher_ensemble_logits",
]
