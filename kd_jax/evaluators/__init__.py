"""Evaluations of a trained run on whole splits, declared in `config.evals`.

    c.evals = {"validation": {"kind": "metrics", "split": "validation"},
               "val_reaug": {"kind": "retrieval_augmented", "split": "validation"},
               "test_reaug": {"kind": "retrieval_augmented", "split": "test",
                              "select_on": "val_reaug"}}

Kinds: "metrics" (the method's per-example metrics: accuracy, teacher accuracy, agreement,
predictive KL), "retrieval_augmented" (ReAugKD inference over its knowledge base), or
"package.module:Class" for an evaluator defined elsewhere. Every run also has the evaluator
"eval": per-example metrics on `config.eval_split` every `config.eval_every` steps.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from kd_jax.evaluators.attention_alignment import AttentionAlignment
from kd_jax.evaluators.base import EvalRun, PerExampleMetrics
from kd_jax.evaluators.cluster_alignment import ClusterAlignment
from kd_jax.evaluators.downstream import Downstream
from kd_jax.evaluators.linear_probe import LinearProbe
from kd_jax.evaluators.nearest_neighbour import NearestNeighbour
from kd_jax.evaluators.retrieval_augmented import RetrievalAugmented

EVALUATORS: dict[str, type] = {
    "metrics": PerExampleMetrics,
    "retrieval_augmented": RetrievalAugmented,
    "linear_probe": LinearProbe,
    "nearest_neighbour": NearestNeighbour,
    "cluster_alignment": ClusterAlignment,
    "downstream": Downstream,
    "attention_alignment": AttentionAlignment,
}


def get_evaluator(kind: str, **options: Any) -> Callable[[EvalRun], dict]:
  """Builds the evaluator `kind` with its options; unknown kinds / options fail by name."""
  if ":" in kind:
    module_name, _, class_name = kind.partition(":")
    try:
      cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
      raise ValueError(f"Cannot import evaluator {kind!r}: {error}") from error
  elif kind in EVALUATORS:
    cls = EVALUATORS[kind]
  else:
    raise ValueError(
        f"Unknown evaluator kind {kind!r}; known: {sorted(EVALUATORS)} (or "
        "'package.module:Class')."
    )
  if dataclasses.is_dataclass(cls):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
      raise ValueError(
          f"Unknown option(s) {unknown} for evaluator {kind!r}; it accepts " f"{sorted(known)}."
      )
  return cls(**options)


__all__ = [
    "AttentionAlignment",
    "ClusterAlignment",
    "Downstream",
    "EVALUATORS",
    "EvalRun",
    "LinearProbe",
    "NearestNeighbour",
    "PerExampleMetrics",
    "RetrievalAugmented",
    "get_evaluator",
]
