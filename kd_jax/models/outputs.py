"""Requested outputs: a model's `__call__(x, *, train, outputs=None)` returns only what is asked.

A method declares what it reads (`Method.outputs`: "logits", "embedding", "features",
"attentions", or a model-specific extra such as BERT's "token_embeddings"); the trainer passes
that set as `outputs=` and the model returns a dict with exactly those keys. `outputs=None`
returns every output (what tests, notebooks and evaluators use).

Why a request rather than always returning everything: under `jit` XLA already drops outputs
nobody reads, but it cannot change *how* an output is computed. Attention maps are the case that
matters — when no one asks for them, BERT and ViT run the fused attention kernel instead of
materialising float32 [batch, heads, q, k] probabilities in every layer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


def requested(
    outputs: str | Collection[str] | None, available: Collection[str], model_name: str
) -> frozenset[str]:
  """The set of names to compute; raises ValueError naming any the model cannot produce."""
  if outputs is None:
    return frozenset(available)
  names = frozenset([outputs] if isinstance(outputs, str) else outputs)
  unknown = sorted(names - set(available))
  if unknown:
    raise ValueError(
        f"{model_name} cannot return {unknown}; it returns " f"{', '.join(sorted(available))}"
    )
  return names


def select(full: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
  """The entries of `full` named in `names`, in `full`'s order (a "logits" of None stays None)."""
  return {key: value for key, value in full.items() if key in names}
