"""A model name that means a pretrained checkpoint loads it; `pretrained=False` says random."""

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.models import get_model, load_hf_bert, minilm_directory


def _word_embeddings(variables):
  return np.asarray(variables["params"]["word_embeddings"]["embedding"])


def test_minilm_l6_loads_the_checkpoint_and_pretrained_false_does_not():
  _, reference = load_hf_bert(minilm_directory())
  x = jnp.zeros((1, 8), jnp.int32)
  model = get_model("minilm_l6", num_classes=3)
  variables = jax.jit(lambda r: model.init(r, x, train=False))(jax.random.key(0))
  loaded = model.load_pretrained(variables)
  np.testing.assert_array_equal(_word_embeddings(loaded), _word_embeddings(reference))
  assert loaded["params"]["classifier"]["kernel"].shape == (384, 3)  # the head is new
  # The train step donates its state: a later stage in the same process must still load.
  jax.jit(lambda v: jax.tree.map(lambda a: a + 1, v), donate_argnums=0)(loaded)
  np.testing.assert_array_equal(
      _word_embeddings(model.load_pretrained(variables)), _word_embeddings(reference)
  )

  scratch = get_model("minilm_l6", num_classes=3, pretrained=False)
  assert not hasattr(scratch, "load_pretrained")
  random = jax.jit(lambda r: scratch.init(r, x, train=False))(jax.random.key(0))
  assert _word_embeddings(random).shape == _word_embeddings(reference).shape
  assert not np.allclose(_word_embeddings(random), _word_embeddings(reference))


def test_bert_classifier_switch():
  assert get_model("bert_classifier", num_classes=2).init_source == "minilm"
  assert get_model("bert_classifier", num_classes=2, pretrained=False).init_source == ""
