"""ReAugKD (PAPERS.md §2) against a NumPy reference, on real MiniLM embeddings of real snippets.

The teacher is the real MiniLM-L6 (6 layers), the student its first 2 layers (DistilBERT-style
initialisation, before any training), both on Rotten Tomatoes snippets; logits come from fixed
random heads. The knowledge base is built by `prepare_knowledge_base` itself, so the loss is
checked on exactly what a run would use.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import retrieval
from kd_jax.losses import contrastive
from kd_jax.methods import reaugkd
from kd_jax.methods.rkd import RelationalKD
from tests.losses import numpy_reference as ref

NUM = 72          # snippets: all go into the KB; the first BATCH form the training batch
BATCH = 12
MAX_LENGTH = 32
CLASSES = 2
DIM = 384


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
  return dict(t_emb=t_emb, s_emb=s_emb, t_logits=t_logits.astype(np.float32),
              s_logits=s_logits.astype(np.float32), labels=labels)


@pytest.fixture(scope="module")
def kb_dir(real, tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("kb"))
  batch_size = 40  # 72 = 40 + 32: the last batch is padded, and the padding must be dropped

  def batches():
    for start in range(0, NUM, batch_size):
      index = np.arange(start, start + batch_size)
      mask = index < NUM
      index = np.where(mask, index, 0)
      yield {"index": index, "label": real["labels"][index], "mask": mask}

  teacher_fn = lambda b: (real["t_emb"][b["index"]], real["t_logits"][b["index"]])
  reaugkd.prepare_knowledge_base(teacher_fn, batches, directory=directory, teacher_id="minilm@0",
                                 projection_dim=DIM, projection_steps=20, projection_batch_size=32,
                                 kb_temperature=2.0)
  return directory


def _method(kb_dir, **kwargs):
  defaults = dict(knowledge_base=kb_dir, projection_dim=DIM, num_neighbors=5,
                  teacher_temperature=0.2, student_temperature=0.5, kd_temperature=3.0,
                  kb_temperature=2.0, relational_weight=1.0, retrieval_weight=0.7, kd_weight=0.3,
                  ce_weight=0.5)
  return reaugkd.ReAugKD(**{**defaults, **kwargs})


def _outputs(real, rows):
  student_out = {"embedding": jnp.asarray(real["s_emb"][rows]),
                 "logits": jnp.asarray(real["s_logits"][rows])}
  teacher_out = ({"embedding": jnp.asarray(real["t_emb"][rows]),
                  "logits": jnp.asarray(real["t_logits"][rows])},)
  return student_out, teacher_out, {"label": jnp.asarray(real["labels"][rows])}


def test_knowledge_base_holds_every_example_once(real, kb_dir):
  kb = retrieval.load_knowledge_base(kb_dir, teacher_id="minilm@0", embedding_dim=DIM,
                                     num_classes=CLASSES)
  assert kb.size == NUM
  np.testing.assert_array_equal(kb.labels, real["labels"])
  projection = reaugkd.load_projection(kb_dir, teacher_id="minilm@0")
  expected = real["t_emb"] @ projection["kernel"] + projection["bias"]
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  np.testing.assert_allclose(kb.embeddings, expected, atol=1e-5)
  np.testing.assert_allclose(kb.soft_labels, [ref.softmax(z / 2.0) for z in real["t_logits"]],
                             atol=1e-6)
  with pytest.raises(retrieval.KnowledgeBaseError, match="another|trained for teacher"):
    reaugkd.load_projection(kb_dir, teacher_id="some_other_teacher@5")


def reference_terms(real, kb_dir, method, rows):
  """Per-example relational, retrieval, KD and CE terms, written from the equations."""
  kb = retrieval.load_knowledge_base(kb_dir)
  projection = reaugkd.load_projection(kb_dir, teacher_id=kb.teacher_id)
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
      anchors += [kb.embeddings[j] for j in order[1:method.num_neighbors + 1]]
      anchor_labels += [kb.soft_labels[j] for j in order[1:method.num_neighbors + 1]]
    q = ref.softmax(np.array([t[a] @ ref.normalize(x) for x in anchors])
                    / method.teacher_temperature)
    p = ref.softmax(np.array([s @ ref.normalize(x) for x in anchors]) / method.student_temperature)
    terms["relational"].append(ref.kl(q, p))
    y_hat = sum(pj * yj for pj, yj in zip(p, anchor_labels))
    terms["retrieval"].append(ref.kl(y[a], y_hat))
  terms["kd"] = ref.hinton_kd(real["s_logits"][rows], real["t_logits"][rows],
                              method.kd_temperature)
  terms["ce"] = ref.cross_entropy(real["s_logits"][rows], real["labels"][rows])
  return {k: float(np.mean(v)) for k, v in terms.items()}


@pytest.mark.parametrize("anchors", ["batch", "retrieved", "both"])
def test_loss_matches_numpy_reference(real, kb_dir, anchors):
  method = _method(kb_dir, anchors=anchors)
  rows = np.arange(BATCH)
  student_out, teacher_out, batch = _outputs(real, rows)
  variables = method.init(jax.random.key(0), student_out=student_out, teacher_out=teacher_out,
                          batch=batch)
  loss, aux = jax.jit(lambda o: method.loss(
      variables.params, variables.state, student_out=o, teacher_out=teacher_out, batch=batch,
      rng=None, step=0, apply_student=None))(student_out)
  expected = reference_terms(real, kb_dir, method, rows)
  for name, value in expected.items():
    np.testing.assert_allclose(float(aux.metrics[name]), value, rtol=2e-4, atol=1e-6,
                               err_msg=name)
  weights = {"relational": 1.0, "retrieval": 0.7, "kd": 0.3, "ce": 0.5}
  np.testing.assert_allclose(float(loss), sum(weights[k] * v for k, v in expected.items()),
                             rtol=2e-4)


def test_gradient_reaches_student_embedding_and_linear_map(real, kb_dir):
  method = _method(kb_dir, student_map="linear")
  student_out, teacher_out, batch = _outputs(real, np.arange(BATCH))
  variables = method.init(jax.random.key(1), student_out=student_out, teacher_out=teacher_out,
                          batch=batch)
  assert variables.params["student_map"]["kernel"].shape == (DIM, DIM)

  def loss_fn(params, embedding):
    return method.loss(params, variables.state, student_out={**student_out, "embedding": embedding},
                       teacher_out=teacher_out, batch=batch, rng=None, step=0,
                       apply_student=None)[0]

  g_params, g_emb = jax.grad(loss_fn, argnums=(0, 1))(variables.params, student_out["embedding"])
  for g in (g_params["student_map"]["kernel"], g_emb):
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0


def test_retrieval_augmented_inference_matches_reference(real, kb_dir):
  method = _method(kb_dir)
  kb = retrieval.load_knowledge_base(kb_dir)
  queries = np.arange(BATCH, 2 * BATCH)
  betas = (0.0, 0.3, 1.0)
  probs = reaugkd.retrieval_augmented_probs(
      jnp.asarray(real["s_logits"][queries]), jnp.asarray(real["s_emb"][queries]),
      jnp.asarray(kb.embeddings), jnp.asarray(kb.soft_labels), k=method.num_neighbors,
      temperature=method.student_temperature, beta=jnp.asarray(betas))
  for b, beta in enumerate(betas):
    for row, i in enumerate(queries):
      s = ref.normalize(real["s_emb"][i])
      scores = kb.embeddings.astype(np.float64) @ s
      top = np.argsort(-scores)[:method.num_neighbors]
      weights = ref.softmax(scores[top] / method.student_temperature)
      expected = (beta * sum(w * kb.soft_labels[j] for w, j in zip(weights, top))
                  + (1 - beta) * ref.softmax(real["s_logits"][i]))
      np.testing.assert_allclose(probs[b, row], expected, atol=1e-5)


def test_eval_metrics_report_accuracy_per_beta(real, kb_dir):
  method = _method(kb_dir, eval_betas=(0.0, 0.5, 1.0))
  rows = np.arange(BATCH, 3 * BATCH)
  student_out, teacher_out, batch = _outputs(real, rows)
  variables = method.init(jax.random.key(0), student_out=student_out, teacher_out=teacher_out,
                          batch=batch)
  out = method.eval_metrics(variables.params, variables.state, student_out=student_out,
                            teacher_out=teacher_out, batch=batch)
  kb = retrieval.load_knowledge_base(kb_dir)
  np.testing.assert_array_equal(
      out["reaug_accuracy_beta0.00"], np.argmax(real["s_logits"][rows], 1) == real["labels"][rows])
  probs = reaugkd.retrieval_augmented_probs(
      student_out["logits"], student_out["embedding"], jnp.asarray(kb.embeddings),
      jnp.asarray(kb.soft_labels), k=5, temperature=0.5, beta=1.0)
  np.testing.assert_array_equal(out["reaug_accuracy_beta1.00"],
                                np.argmax(probs, 1) == real["labels"][rows])
  assert {"accuracy", "teacher_accuracy", "agreement", "reaug_accuracy_beta0.50"} <= set(out)


def test_projection_training_lowers_supcon_on_real_embeddings(real):
  def supcon(projection):
    values, valid = contrastive.supervised_contrastive(
        real["t_emb"] @ projection["kernel"] + projection["bias"], real["labels"],
        temperature=0.1)
    return float(np.sum(values) / np.sum(valid))

  before = reaugkd.train_projection(real["t_emb"], real["labels"], dim=64, steps=0)
  after = reaugkd.train_projection(real["t_emb"], real["labels"], dim=64, steps=60,
                                   batch_size=NUM, learning_rate=3e-3)
  assert before["kernel"].shape == (DIM, 64)
  assert supcon(after) < supcon(before) - 0.05


def test_configuration_errors_are_clear(real, kb_dir, tmp_path):
  with pytest.raises(ValueError, match="anchors"):
    reaugkd.ReAugKD(anchors="neighbours")
  with pytest.raises(ValueError, match="student_map"):
    reaugkd.ReAugKD(student_map="mlp")
  with pytest.raises(ValueError, match="eval_betas"):
    reaugkd.ReAugKD(eval_betas=(0.5, 1.5))
  student_out, teacher_out, batch = _outputs(real, np.arange(4))
  with pytest.raises(retrieval.KnowledgeBaseError, match="missing"):
    _method(str(tmp_path / "nowhere")).init(jax.random.key(0), student_out=student_out,
                                            teacher_out=teacher_out, batch=batch)
  narrow = {**student_out, "embedding": student_out["embedding"][:, :100]}
  with pytest.raises(ValueError, match="student_map='linear'"):
    _method(kb_dir).init(jax.random.key(0), student_out=narrow, teacher_out=teacher_out,
                         batch=batch)
  with pytest.raises(retrieval.KnowledgeBaseError, match="embedding_dim"):
    _method(kb_dir, projection_dim=64).init(jax.random.key(0), student_out=student_out,
                                            teacher_out=teacher_out, batch=batch)


def test_relational_kd_baseline_matches_reference(real):
  rows = np.arange(8)
  method = RelationalKD(distance_weight=25.0, angle_weight=50.0, kd_weight=0.5,
                                kd_temperature=2.0, ce_weight=1.0)
  student_out, teacher_out, batch = _outputs(real, rows)
  loss, aux = method.loss({}, {}, student_out=student_out, teacher_out=teacher_out, batch=batch,
                          rng=None, step=0, apply_student=None)
  s, t = real["s_emb"][rows], real["t_emb"][rows]
  expected = (25 * ref.rkd_distance(s, t).mean() + 50 * ref.rkd_angle(s, t).mean()
              + 0.5 * ref.hinton_kd(real["s_logits"][rows], real["t_logits"][rows], 2.0).mean()
              + ref.cross_entropy(real["s_logits"][rows], real["labels"][rows]).mean())
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  assert math.isfinite(float(aux.metrics["rkd_angle"]))
  assert dataclasses.is_dataclass(method)
