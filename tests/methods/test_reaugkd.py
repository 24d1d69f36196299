"""ReAugKD (PAPERS.md §2) against a NumPy reference, on real MiniLM embeddings of real snippets.

The teacher is the real MiniLM-L6 (6 layers), the student its first 2 layers (DistilBERT-style
initialisation, before any training), both on Rotten Tomatoes snippets; logits come from fixed
random heads. The knowledge base is built by the method's own `prepare` (through the engine's
`PrepareContext`), so the loss is checked on exactly the constants a run would use.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import retrieval
from kd_jax.losses import contrastive
from kd_jax.methods import base
from kd_jax.methods import reaugkd
from kd_jax.methods.rkd import RelationalKD
from kd_jax.train import prepare
from tests.losses import numpy_reference as ref

NUM = 72  # snippets: all go into the KB; the first BATCH form the training batch
BATCH = 12
MAX_LENGTH = 32
CLASSES = 2
DIM = 384
CONTEXT = base.RunContext(
    total_steps=10,
    steps_per_epoch=6,
    num_train_examples=NUM,
    batch_size=BATCH,
    num_classes=CLASSES,
    seed=0,
)


@pytest.fixture(scope="module")
def real():
  from kd_jax.data import get_source
  from kd_jax.models import bert

  source = get_source("rotten_tomatoes", "train")
  texts = [str(source[i]["text"]) for i in range(NUM)]
  labels = np.array([int(source[i]["label"]) for i in range(NUM)], np.int32)
  directory = bert.minilm_directory()
  teacher, variables = bert.load_hf_bert(directory)
  student, student_variables = bert.select_layers(teacher, variables, [0, 1])
  tokens = bert.tokenize(bert.load_tokenizer(directory, max_length=MAX_LENGTH), texts)
  t_emb = np.asarray(teacher.apply(variables, tokens["input_ids"], train=False)["embedding"])
  s_out = student.apply(student_variables, tokens["input_ids"], train=False)
  s_emb = np.asarray(s_out["embedding"])
  rng = np.random.default_rng(0)
  t_logits = t_emb @ rng.normal(size=(DIM, CLASSES)) * 3.0
  s_logits = s_emb @ rng.normal(size=(DIM, CLASSES)) * 3.0
  return dict(
      t_emb=t_emb,
      s_emb=s_emb,
      t_logits=t_logits.astype(np.float32),
      s_logits=s_logits.astype(np.float32),
      labels=labels,
  )


def _prepare_context(real):
  batch_size = 40  # 72 = 40 + 32: the last batch is padded, and the padding must be dropped

  def batches(split):
    assert split == "train-split"
    for start in range(0, NUM, batch_size):
      index = np.arange(start, start + batch_size)
      mask = index < NUM
      index = np.where(mask, index, 0)
      yield {"index": index, "label": real["labels"][index], "mask": mask}

  t_emb, t_logits = jnp.asarray(real["t_emb"]), jnp.asarray(real["t_logits"])
  teacher_outputs = lambda b: ({"embedding": t_emb[b["index"]], "logits": t_logits[b["index"]]},)
  return prepare.make_context(
      context=CONTEXT,
      roles={"train": "train-split"},
      batches=batches,
      teacher_outputs=teacher_outputs,
      model_input=lambda b: b["index"],
  )


def _method(**kwargs):
  defaults = dict(
      projection_dim=DIM,
      num_neighbors=5,
      projection_steps=20,
      projection_batch_size=32,
      teacher_temperature=0.2,
      student_temperature=0.5,
      kd_temperature=3.0,
      kb_temperature=2.0,
      relational_weight=1.0,
      retrieval_weight=0.7,
      kd_weight=0.3,
      ce_weight=0.5,
  )
  return reaugkd.ReAugKD(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def constants(real):
  return _method().prepare(_prepare_context(real))


def _io(real, rows, constants, **kwargs):
  student_out = {
      "embedding": jnp.asarray(real["s_emb"][rows]),
      "logits": jnp.asarray(real["s_logits"][rows]),
  }
  teacher_out = (
      {
          "embedding": jnp.asarray(real["t_emb"][rows]),
          "logits": jnp.asarray(real["t_logits"][rows]),
      },
  )
  return base.StepIO(
      student=student_out,
      teachers=teacher_out,
      context=CONTEXT,
      batch={"label": jnp.asarray(real["labels"][rows])},
      constants=jax.tree.map(jnp.asarray, constants),
      **kwargs,
  )


def test_prepare_builds_the_knowledge_base_of_every_example_once(real, constants):
  assert constants["kb_embeddings"].shape == (NUM, DIM)
  np.testing.assert_array_equal(constants["kb_labels"], real["labels"])
  projection = constants["projection"]
  expected = real["t_emb"] @ projection["kernel"] + projection["bias"]
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  np.testing.assert_allclose(constants["kb_embeddings"], expected, atol=1e-5)
  np.testing.assert_allclose(
      constants["kb_soft_labels"], [ref.softmax(z / 2.0) for z in real["t_logits"]], atol=1e-6
  )


def test_prepare_context_never_reads_the_test_split(real):
  ctx = _prepare_context(real)
  with pytest.raises(ValueError, match="test split is never available"):
    ctx.batches("test")
  with pytest.raises(ValueError, match="set config.validation_split"):
    ctx.map_split(lambda b: b, "validation")
  with pytest.raises(ValueError, match="train and validation splits only"):
    prepare.make_context(
        context=CONTEXT,
        roles={"test": "test"},
        batches=None,
        teacher_outputs=None,
        model_input=None,
    )


def reference_terms(real, constants, method, rows):
  """Per-example relational, retrieval, KD and CE terms, written from the equations."""
  kb = retrieval.KnowledgeBase(
      constants["kb_embeddings"], constants["kb_soft_labels"], constants["kb_labels"], "test"
  )
  projection = constants["projection"]
  t = [ref.normalize(real["t_emb"][i] @ projection["kernel"] + projection["bias"]) for i in rows]
  y = [ref.softmax(real["t_logits"][i] / method.kb_temperature) for i in rows]
  terms = {"relational": [], "retrieval": [], "kd": [], "ce": []}
  for a, i in enumerate(rows):
    s = ref.normalize(real["s_emb"][i])
    anchors, anchor_labels = [], []
    if method.anchors in ("batch", "both"):
      anchors += [t[b] for b in range(len(rows)) if b != a]
      anchor_labels += [y[b] for b in range(len(rows)) if b != a]
    if method.anchors in ("retrieved", "both"):
      order = np.argsort(-(kb.embeddings.astype(np.float64) @ t[a]))
      assert order[0] == i  # its own entry is the nearest: the one the method must skip
      anchors += [kb.embeddings[j] for j in order[1 : method.num_neighbors + 1]]
      anchor_labels += [kb.soft_labels[j] for j in order[1 : method.num_neighbors + 1]]
    q = ref.softmax(
        np.array([t[a] @ ref.normalize(x) for x in anchors]) / method.teacher_temperature
    )
    p = ref.softmax(np.array([s @ ref.normalize(x) for x in anchors]) / method.student_temperature)
    terms["relational"].append(ref.kl(q, p))
    y_hat = sum(pj * yj for pj, yj in zip(p, anchor_labels))
    terms["retrieval"].append(ref.kl(y[a], y_hat))
  terms["kd"] = ref.hinton_kd(real["s_logits"][rows], real["t_logits"][rows], method.kd_temperature)
  terms["ce"] = ref.cross_entropy(real["s_logits"][rows], real["labels"][rows])
  return {k: float(np.mean(v)) for k, v in terms.items()}


@pytest.mark.parametrize("anchors", ["batch", "retrieved", "both"])
def test_loss_matches_numpy_reference(real, constants, anchors):
  method = _method(anchors=anchors)
  rows = np.arange(BATCH)
  io = _io(real, rows, constants)
  variables = method.init(jax.random.key(0), io)
  loss, aux = jax.jit(
      lambda student: method.loss(
          variables.params, variables.state, dataclasses.replace(io, student=student)
      )
  )(io.student)
  expected = reference_terms(real, constants, method, rows)
  for name, value in expected.items():
    np.testing.assert_allclose(float(aux.metrics[name]), value, rtol=2e-4, atol=1e-6, err_msg=name)
  weights = {"relational": 1.0, "retrieval": 0.7, "kd": 0.3, "ce": 0.5}
  np.testing.assert_allclose(
      float(loss), sum(weights[k] * v for k, v in expected.items()), rtol=2e-4
  )


def test_gradient_reaches_student_embedding_and_linear_map(real, constants):
  method = _method(student_map="linear")
  io = _io(real, np.arange(BATCH), constants)
  variables = method.init(jax.random.key(1), io)
  assert variables.params["student_map"]["kernel"].shape == (DIM, DIM)

  def loss_fn(params, embedding):
    student = {**io.student, "embedding": embedding}
    return method.loss(params, variables.state, dataclasses.replace(io, student=student))[0]

  g_params, g_emb = jax.grad(loss_fn, argnums=(0, 1))(variables.params, io.student["embedding"])
  for g in (g_params["student_map"]["kernel"], g_emb):
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_retrieval_augmented_inference_matches_reference(real, constants):
  method = _method()
  kb = retrieval.KnowledgeBase(
      constants["kb_embeddings"], constants["kb_soft_labels"], constants["kb_labels"], "test"
  )
  queries = np.arange(BATCH, 2 * BATCH)
  betas = (0.0, 0.3, 1.0)
  probs = reaugkd.retrieval_augmented_probs(
      jnp.asarray(real["s_logits"][queries]),
      jnp.asarray(real["s_emb"][queries]),
      jnp.asarray(kb.embeddings),
      jnp.asarray(kb.soft_labels),
      k=method.num_neighbors,
      temperature=method.student_temperature,
      beta=jnp.asarray(betas),
  )
  for b, beta in enumerate(betas):
    for row, i in enumerate(queries):
      s = ref.normalize(real["s_emb"][i])
      scores = kb.embeddings.astype(np.float64) @ s
      top = np.argsort(-scores)[: method.num_neighbors]
      weights = ref.softmax(scores[top] / method.student_temperature)
      expected = beta * sum(w * kb.soft_labels[j] for w, j in zip(weights, top)) + (
          1 - beta
      ) * ref.softmax(real["s_logits"][i])
      np.testing.assert_allclose(probs[b, row], expected, atol=1e-5)


def test_projection_training_lowers_supcon_on_real_embeddings(real):
  def supcon(projection):
    values, valid = contrastive.supervised_contrastive(
        real["t_emb"] @ projection["kernel"] + projection["bias"], real["labels"], temperature=0.1
    )
    return float(np.sum(values) / np.sum(valid))

  before = reaugkd.train_projection(real["t_emb"], real["labels"], dim=64, steps=0)
  after = reaugkd.train_projection(
      real["t_emb"], real["labels"], dim=64, steps=60, batch_size=NUM, learning_rate=3e-3
  )
  assert before["kernel"].shape == (DIM, 64)
  assert supcon(after) < supcon(before) - 0.05


def test_configuration_errors_are_clear(real, constants):
  with pytest.raises(ValueError, match="anchors"):
    reaugkd.ReAugKD(anchors="neighbours")
  with pytest.raises(ValueError, match="student_map"):
    reaugkd.ReAugKD(student_map="mlp")
  io = _io(real, np.arange(4), constants)
  narrow = {**io.student, "embedding": io.student["embedding"][:, :100]}
  with pytest.raises(ValueError, match="student_map='linear'"):
    _method().init(jax.random.key(0), dataclasses.replace(io, student=narrow))
  with pytest.raises(ValueError, match="projection_dim is 64"):
    _method(projection_dim=64).init(jax.random.key(0), io)
  with pytest.raises(ValueError, match="fewer than num_neighbors"):
    _method(num_neighbors=NUM).prepare(_prepare_context(real))


def test_relational_kd_baseline_matches_reference(real):
  rows = np.arange(8)
  method = RelationalKD(
      distance_weight=25.0, angle_weight=50.0, kd_weight=0.5, kd_temperature=2.0, ce_weight=1.0
  )
  loss, aux = method.loss({}, {}, _io(real, rows, {}))
  s, t = real["s_emb"][rows], real["t_emb"][rows]
  expected = (
      25 * ref.rkd_distance(s, t).mean()
      + 50 * ref.rkd_angle(s, t).mean()
      + 0.5 * ref.hinton_kd(real["s_logits"][rows], real["t_logits"][rows], 2.0).mean()
      + ref.cross_entropy(real["s_logits"][rows], real["labels"][rows]).mean()
  )
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  assert math.isfinite(float(aux.metrics["rkd_angle"]))
  assert dataclasses.is_dataclass(method)
