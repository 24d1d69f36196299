"""Every registered model honours the output contract (docs in kd_jax/models/__init__.py)."""

import jax
import jax.numpy as jnp
import pytest

from kd_jax.models import get_model, model_names
from kd_jax.models.bert import BertConfig
from kd_jax.models.summary import abstract_variables

TRANSFORMERS = {"bert", "minilm_l6", "vit_micro", "vit_tiny", "vit_small"}
# One per family and block type: tracing all 41 takes ~40 s on two shared cores; the rest differ
# only in widths and depths (their sizes are checked in test_resnet / test_audio / test_vit).
TRACED = (
    "resnet8",
    "resnet8x4",
    "resnet10_xxxs",
    "wrn_16_1",
    "preact_resnet20",
    "preact_resnet56",
    "vit_micro",
    "bert",
    "sea_student3",
)


def example_input(name):
  if name in ("bert", "minilm_l6"):
    return jax.ShapeDtypeStruct((2, 8), jnp.int32)
  if name.startswith(("l3_", "sea_")):
    return jax.ShapeDtypeStruct((2, get_model(name).mel.sample_rate), jnp.float32)
  return jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)


def test_every_name_builds():
  for name in model_names():
    assert callable(get_model(name, num_classes=7)), name
  assert set(TRACED) <= set(model_names())


@pytest.mark.parametrize("name", TRACED)
def test_output_contract(name):
  """Shapes only (`eval_shape`): logits, pooled embedding, per-stage features, attentions."""
  kwargs = {"config": BertConfig(num_layers=2)} if name == "bert" else {}
  model = get_model(name, num_classes=7, **kwargs)
  x = example_input(name)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), abstract_variables(model, x), x)
  assert out["logits"].shape == (2, 7) and out["logits"].dtype == jnp.float32
  assert out["embedding"].ndim == 2 and out["embedding"].shape[0] == 2
  assert len(out["features"]) >= 2 and all(f.shape[0] == 2 for f in out["features"])
  if name in TRANSFORMERS:
    assert len(out["attentions"]) == len(out["features"])
    batch, _heads, q, k = out["attentions"][0].shape
    assert batch == 2 and q == k
