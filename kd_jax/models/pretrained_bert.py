"""BERT classifiers initialised from pretrained encoder weights.

The trainer initialises every model through its module's `init` and then, when the module has
one, calls `load_pretrained(variables)`; `PretrainedBert`'s copies a Hugging Face BERT checkpoint
(MiniLM-L6 by default), optionally only chosen layers (DistilBERT-style students initialised
from teacher layers), and leaves the classifier head random.
`get_model("bert_classifier", num_classes=..., ...)` builds one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from kd_jax.models import bert

_PRETRAINED: dict[str, dict[str, Any]] = {}


def _pretrained_params(source: str) -> tuple[bert.BertConfig, dict[str, Any]]:
  """(config, encoder params) of "minilm" or a HF BERT directory, loaded once per process."""
  directory = str(bert.minilm_directory()) if source == "minilm" else source
  if directory not in _PRETRAINED:
    model, variables = bert.load_hf_bert(directory)
    _PRETRAINED[directory] = {"config": model.config, "params": variables["params"]}
  return _PRETRAINED[directory]["config"], _PRETRAINED[directory]["params"]


class PretrainedBert(bert.BertEncoder):
  """A `BertEncoder` whose `load_pretrained` copies pretrained encoder weights (head stays random).

  The trainer calls `variables = module.init(...)` (jitted) and then, on the host,
  `module.load_pretrained(variables)`: the checkpoint never becomes a constant baked into a
  compiled function. `init_layers[i]` is the source layer copied into layer i (DistilBERT's
  initialisation from teacher layers); the embeddings are copied too. With `init_source=""` the
  weights stay random.
  """

  init_source: str = ""
  init_layers: tuple = ()

  def load_pretrained(self, variables):
    """`variables` with the encoder params replaced by the checkpoint's (dtypes kept)."""
    if not self.init_source:
      return variables
    source_config, source = _pretrained_params(self.init_source)
    # parent=None: a detached module, used only as a config holder.
    _, selected = bert.select_layers(
        bert.BertEncoder(source_config, parent=None), {"params": source}, list(self.init_layers)
    )
    params = dict(variables["params"])
    for name in params:
      if name != "classifier":  # the head is new for the task
        # A copy (jnp.array), never the cached array itself: the train step donates the state,
        # which would delete the process-wide cache under the next stage that loads it.
        params[name] = jax.tree.map(
            lambda new, old: jnp.array(old, new.dtype), params[name], selected["params"][name]
        )
    return {**variables, "params": params}


def bert_classifier(
    num_classes: int,
    *,
    num_layers: int = 6,
    init_from: str = "minilm",
    init_layers=(),
    hidden_size: int = 384,
    num_heads: int = 12,
    intermediate_size: int = 1536,
    dropout: float | None = None,
    dtype=jnp.float32,
) -> PretrainedBert:
  """A BERT classifier: `init_from` "minilm", a HF BERT directory, or "scratch".

  Pretrained: the architecture comes from the checkpoint's config.json, `num_layers` of them
  initialised from source layers `init_layers` (default: the first `num_layers`). Scratch: a
  BERT of the given sizes with MiniLM's vocabulary, initialised N(0, 0.02²). `dropout` overrides
  the hidden and attention dropout rates (0 also removes the RNG work from the compiled step).
  """
  rates = {} if dropout is None else {"hidden_dropout": dropout, "attention_dropout": dropout}
  if init_from == "scratch":
    config = bert.BertConfig(
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        **rates,
    )
    return PretrainedBert(config, num_classes=num_classes, dtype=dtype)
  if not init_from:
    raise ValueError(
        "bert_classifier: init_from is empty; give 'minilm', 'scratch' or a Hugging "
        "Face BERT directory (the paper variant reads it from $KD_JAX_BERT_BASE)."
    )
  source_config, _ = _pretrained_params(init_from)
  layers = tuple(init_layers) or tuple(range(num_layers))
  if len(layers) != num_layers or not all(0 <= i < source_config.num_layers for i in layers):
    raise ValueError(
        f"bert_classifier: init_layers {layers} must list {num_layers} layer indices "
        f"of the {source_config.num_layers}-layer checkpoint {init_from!r}."
    )
  config = dataclasses.replace(source_config, num_layers=num_layers, **rates)
  return PretrainedBert(
      config, num_classes=num_classes, dtype=dtype, init_source=init_from, init_layers=layers
  )
