"""Model zoo: teachers and students that return what distillation needs.

Every model is a plain flax.linen module whose `__call__(x, *, train, outputs=None)` returns a
dict with "logits" (float32, or None for a headless encoder), "embedding" (pooled), "features"
(one entry per stage / layer) and, for transformers, "attentions" (one [batch, heads, q, k] per
layer); `outputs=("logits", ...)` returns only those (`kd_jax.models.outputs`), and BERT / ViT
then use fused attention unless "attentions" is among them.

    model = get_model("resnet20", num_classes=100)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
    out = model.apply(variables, images, train=False)
    summary(model, jnp.zeros((1, 32, 32, 3)))   # params, MACs, bytes, activation memory

Names (see `model_names()`): resnet8 … resnet110, resnet8x4, resnet32x4 (RepDistiller CIFAR);
wrn_<depth>_<width> (any 6n+4 depth); preact_resnet20/56/110 (Stanton et al.); resnet10_l … _xxxs,
resnet10, resnet18, resnet34 (DiSK); vit_micro, vit_tiny, vit_small; bert (any size via
`config=BertConfig(...)`), minilm_l6 and bert_classifier (pretrained all-MiniLM-L6-v2 weights,
loaded by `model.load_pretrained(variables)` after `init`; `pretrained=False`: random init);
l3_teacher, sea_student0 … sea_student3 (SEA).
"""

from __future__ import annotations

import numbers
import re
from typing import Any

import flax.linen as nn

from kd_jax.models import audio, preact, pretrained_bert, resnet, vit
from kd_jax.models.audio import L3AudioNet, MelConfig, mel_spectrogram
from kd_jax.models.bert import (
    BertConfig,
    BertEncoder,
    load_hf_bert,
    load_tokenizer,
    minilm_directory,
)
from kd_jax.models.preact import PreActResNet
from kd_jax.models.resnet import ResNet
from kd_jax.models.summary import summary
from kd_jax.models.vit import VisionTransformer

_CONV_NETS = {
    **resnet.CIFAR_RESNETS,
    **resnet.DISK_RESNETS,
    **preact.WIDE_RESNETS,
    **preact.PREACT_RESNETS,
}


def model_names() -> list[str]:
  """Every name `get_model` accepts without extra arguments (wrn_d_k also takes any d, k)."""
  return sorted([*_CONV_NETS, *vit.VITS, "bert", "bert_classifier", "minilm_l6", *audio.AUDIO_NETS])


def get_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds a model by name; `kwargs` override its fields (num_classes, dtype, ...).

  Image classifiers default to 100 classes (the CIFAR-100 tables); BERT and audio encoders
  default to no head (num_classes=None).
  """
  classes = kwargs.get("num_classes", 1)
  if classes is not None and (
      not isinstance(classes, numbers.Integral) or isinstance(classes, bool) or classes < 1
  ):
    raise ValueError(
        f"num_classes must be a positive integer (or None for a headless encoder), "
        f"got {classes!r}."
    )
  key = name.lower().replace("-", "_")
  if key in _CONV_NETS:
    constructor, arguments = _CONV_NETS[key]
    return constructor(**{**arguments, **kwargs})
  wide = re.fullmatch(r"wrn_(\d+)_(\d+)", key)
  if wide:
    return preact.wide_resnet(int(wide.group(1)), int(wide.group(2)), **kwargs)
  if key in vit.VITS:
    return VisionTransformer(**{**vit.VITS[key], **kwargs})
  if key == "bert":
    return BertEncoder(**kwargs)
  # `pretrained` is the one switch between a checkpoint's weights and a random init (same
  # architecture); the weights are copied by `model.load_pretrained(variables)` after `init`,
  # which the trainer calls.
  if key == "bert_classifier":
    if not kwargs.pop("pretrained", True):
      kwargs["init_from"] = "scratch"
    return pretrained_bert.bert_classifier(**kwargs)
  if key == "minilm_l6":
    if kwargs.pop("pretrained", True):  # all six layers of all-MiniLM-L6-v2, head optional
      return pretrained_bert.bert_classifier(
          **{"num_classes": None, "init_from": "minilm", "num_layers": 6, **kwargs}
      )
    return BertEncoder(**{"config": BertConfig(), **kwargs})
  if key in audio.AUDIO_NETS:
    return L3AudioNet(**{**audio.AUDIO_NETS[key], **kwargs})
  raise KeyError(f"unknown model {name!r}; known: {', '.join(model_names())}, wrn_<d>_<k>")


__all__ = [
    "BertConfig",
    "BertEncoder",
    "L3AudioNet",
    "MelConfig",
    "PreActResNet",
    "ResNet",
    "VisionTransformer",
    "get_model",
    "load_hf_bert",
    "load_tokenizer",
    "mel_spectrogram",
    "minilm_directory",
    "model_names",
    "summary",
]
