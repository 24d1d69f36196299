"""AMAD and its attention baselines (PAPERS.md §3) as methods, against NumPy written from the
equations (float64, loops over layers and examples), and one short run of each through the
engine: ViTs with 4 teacher heads and 2 student heads on real digits."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax.losses import attention as losses_attention
from kd_jax.methods import base
from kd_jax.methods.amad import AMAD, uniform_layer_map
from kd_jax.methods.attention_kd import AttentionKD
from kd_jax.train import loop
from kd_jax.train import writers
from tests.losses import numpy_reference as ref
from tests.train import helpers

BATCH, CLASSES, QUERIES = 3, 5, 4
CONTEXT = base.RunContext(
    total_steps=10, steps_per_epoch=5, num_train_examples=20, batch_size=BATCH, num_classes=CLASSES
)
# Text-style padding: example 0 has 2 real positions, example 1 has 3, example 2 all 4.
MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], np.int32)


def _maps(rng, layers, heads, q=QUERIES, k=QUERIES):
  return [
      rng.dirichlet(np.ones(k), size=(BATCH, heads, q)).astype(np.float32) for _ in range(layers)
  ]


def _io(rng, teacher_maps, student_maps, mask=None, **extra):
  def side(maps, **more):
    logits = jnp.asarray(rng.normal(size=(BATCH, CLASSES)), jnp.float32)
    return {"logits": logits, "attentions": [jnp.asarray(m) for m in maps], **more}

  batch = {"label": jnp.asarray(rng.integers(0, CLASSES, BATCH))}
  if mask is not None:
    batch["attention_mask"] = jnp.asarray(mask)
  teacher_extra, student_extra = extra.get("teacher", {}), extra.get("student", {})
  return base.StepIO(
      student=side(student_maps, **student_extra),
      teachers=(side(teacher_maps, **teacher_extra),),
      batch=batch,
      context=CONTEXT,
  )


# ------------------------------------------------------------------ NumPy references, one example
def _rows(maps):  # [H, ...] -> [H, n] float64
  return np.asarray(maps, np.float64).reshape(len(maps), -1)


def _soft_alignment(t_rows, s_rows):
  """Eq. 2: a_ij = exp(cos(t_i, s_j)) / Σ_m exp(cos(t_i, s_m))."""
  unit = lambda r: r / np.linalg.norm(r, axis=1, keepdims=True)
  weights = np.exp(unit(t_rows) @ unit(s_rows).T)
  return weights / weights.sum(axis=1, keepdims=True)


def _kl(p, q):
  return sum(pi * np.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def np_amad(variant, t, s, real_queries):
  """One example's AMAD: t [H_t, q, k], s [H_s, q, k]; padded query rows are left out."""
  t, s = np.asarray(t, np.float64)[:, :real_queries], np.asarray(s, np.float64)[:, :real_queries]
  if variant == "mse":  # Eq. 4–6 on the L2-normalised flattened maps
    t_hat = _rows(t) / np.linalg.norm(_rows(t), axis=1, keepdims=True)
    s_hat = _rows(s) / np.linalg.norm(_rows(s), axis=1, keepdims=True)
    return np.sum((t_hat - _soft_alignment(t_hat, s_hat) @ s_hat) ** 2)
  if variant == "kl":  # Eq. 9
    a = _soft_alignment(_rows(t), _rows(s))
    mixture = np.einsum("ij,jqk->iqk", a, s)
    return sum(_kl(t[i, l], mixture[i, l]) for i in range(len(t)) for l in range(real_queries))
  total = 0.0  # "token_kl", Eq. 12: the alignment at each query position l
  for l in range(real_queries):
    mixture = _soft_alignment(t[:, l], s[:, l]) @ s[:, l]
    total += sum(_kl(t[i, l], mixture[i]) for i in range(len(t)))
  return total


def np_project(s, kernel, bias):
  """Eq. 11: S̃ = ReLU(S Wᵀ + b), rows renormalised to distributions."""
  out = np.maximum(np.asarray(s, np.float64) @ np.asarray(kernel, np.float64).T + bias, 0.0)
  return out / out.sum(-1, keepdims=True)


def np_task(io, kd_weight, ce_weight, tau=4.0):
  s, t = np.asarray(io.student["logits"]), np.asarray(io.teachers[0]["logits"])
  return (
      kd_weight * ref.hinton_kd(s, t, tau).mean()
      + ce_weight * ref.cross_entropy(s, np.asarray(io.batch["label"])).mean()
  )


def _real(mask, b, q):
  return q if mask is None else int(mask[b].sum())


# ------------------------------------------------------------------ layer maps
def test_uniform_layer_map():
  assert uniform_layer_map(6, 3) == ((1, 0), (3, 1), (5, 2))  # teacher 2, 4, 6 -> student 1, 2, 3
  assert uniform_layer_map(4, 4) == ((0, 0), (1, 1), (2, 2), (3, 3))
  assert uniform_layer_map(5, 3) == ((1, 0), (3, 1), (4, 2))  # the last layers always meet
  assert uniform_layer_map(2, 4) == ((0, 0), (0, 1), (1, 2), (1, 3))
  with pytest.raises(ValueError, match="at least one layer"):
    uniform_layer_map(0, 3)


def test_explicit_layer_map_is_validated_against_both_depths():
  rng = np.random.default_rng(0)
  io = _io(rng, _maps(rng, 3, 2), _maps(rng, 2, 2))
  with pytest.raises(
      ValueError, match=r"\(teacher 3, student 0\).*teacher has 3 layers and the student 2"
  ):
    AMAD(layer_map=((3, 0),)).loss({}, {}, io)
  with pytest.raises(ValueError, match="teacher has 3 layers and the student 2"):
    AttentionKD(layer_map=((0, 2),)).loss({}, {}, io)
  with pytest.raises(ValueError, match="pairs of integers"):
    AMAD(layer_map=((0, 1, 2),))
  # Negative indices count from the end; lists (JSON configs) become tuples.
  negative, positive = AMAD(layer_map=[[-1, -2]]), AMAD(layer_map=((2, 0),))
  assert negative.layer_map == ((-1, -2),)
  assert float(negative.loss({}, {}, io)[0]) == float(positive.loss({}, {}, io)[0])


# ------------------------------------------------------------------ AMAD against the equations
@pytest.mark.parametrize("variant", ["mse", "kl", "token_kl", "learnable"])
@pytest.mark.parametrize("teacher_heads,student_heads", [(4, 2), (2, 3)])
@pytest.mark.parametrize("layer_map,mask", [((), None), (((0, 1), (2, 0)), MASK)])
def test_amad_matches_reference(variant, teacher_heads, student_heads, layer_map, mask):
  rng = np.random.default_rng(teacher_heads * 10 + student_heads)
  io = _io(rng, _maps(rng, 3, teacher_heads), _maps(rng, 2, student_heads), mask)
  method = AMAD(
      layer_map=layer_map, variant=variant, attention_weight=0.7, kd_weight=0.5, ce_weight=0.3
  )
  params = method.init(jax.random.key(0), io).params
  pairs = layer_map or uniform_layer_map(3, 2)
  students = [io.student["attentions"][s] for _, s in pairs]
  if variant == "learnable":  # move the projection away from its identity start
    params = {
        "projection": {
            "kernel": jnp.asarray(np.abs(rng.normal(size=(len(pairs), QUERIES, QUERIES)))),
            "bias": jnp.full((len(pairs), QUERIES), 0.05),
        }
    }
    students = [
        np_project(s, params["projection"]["kernel"][i], params["projection"]["bias"][i])
        for i, s in enumerate(students)
    ]
  loss, aux = method.loss(params, {}, io)
  equation = "kl" if variant == "learnable" else variant
  attention = np.mean(
      [
          sum(
              np_amad(
                  equation, io.teachers[0]["attentions"][t][b], s_maps[b], _real(mask, b, QUERIES)
              )
              for (t, _), s_maps in zip(pairs, students)
          )
          for b in range(BATCH)
      ]
  )
  np.testing.assert_allclose(float(aux.metrics["attention"]), attention, rtol=1e-4)
  np.testing.assert_allclose(float(loss), 0.7 * attention + np_task(io, 0.5, 0.3), rtol=1e-4)
  assert np.all(np.isfinite(method.eval_metrics(params, {}, io)["attention_alignment"]))


def test_learnable_projection_starts_as_the_identity():
  rng = np.random.default_rng(1)
  io = _io(rng, _maps(rng, 2, 4), _maps(rng, 2, 2), MASK)
  learnable = AMAD(variant="learnable")
  params = learnable.init(jax.random.key(0), io).params
  assert params["projection"]["kernel"].shape == (2, QUERIES, QUERIES)
  np.testing.assert_array_equal(params["projection"]["kernel"][0], np.eye(QUERIES))
  np.testing.assert_allclose(
      float(learnable.loss(params, {}, io)[0]),
      float(AMAD(variant="kl").loss({}, {}, io)[0]),
      rtol=1e-6,
  )
  assert AMAD(variant="kl").init(jax.random.key(0), io).params == {}


@pytest.mark.parametrize("variant", ["mse", "kl", "token_kl", "learnable"])
def test_gradients_reach_only_the_student_and_the_projection(variant):
  rng = np.random.default_rng(2)
  io = _io(rng, _maps(rng, 2, 4), _maps(rng, 2, 2), MASK)
  method = AMAD(variant=variant, kd_weight=0.0, ce_weight=0.0)
  params = method.init(jax.random.key(0), io).params

  def objective(params, student_maps, teacher_maps):
    student = {**io.student, "attentions": student_maps}
    teacher = {**io.teachers[0], "attentions": teacher_maps}
    return method.loss(params, {}, dataclasses.replace(io, student=student, teachers=(teacher,)))[0]

  grads = jax.grad(objective, argnums=(0, 1, 2))(
      params, io.student["attentions"], io.teachers[0]["attentions"]
  )
  method_grads, student_grads, teacher_grads = grads
  assert all(np.all(np.asarray(g) == 0) for g in teacher_grads)
  assert all(np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0) for g in student_grads)
  if variant == "learnable":
    assert np.any(np.asarray(method_grads["projection"]["kernel"]) != 0)
  else:
    assert method_grads == {}


@pytest.mark.parametrize("variant", ["mse", "kl", "token_kl", "learnable"])
def test_amad_is_invariant_to_permuting_the_student_heads(variant):
  rng = np.random.default_rng(3)
  teacher, student = _maps(rng, 2, 4), _maps(rng, 2, 3)
  io = _io(rng, teacher, student, MASK)
  permuted = dataclasses.replace(
      io, student={**io.student, "attentions": [jnp.asarray(m[:, [2, 0, 1]]) for m in student]}
  )
  method = AMAD(variant=variant)
  params = method.init(jax.random.key(0), io).params
  np.testing.assert_allclose(
      float(method.loss(params, {}, permuted)[0]), float(method.loss(params, {}, io)[0]), rtol=1e-5
  )


def test_amad_mismatches_raise_one_clear_error():
  rng = np.random.default_rng(4)
  teacher = _maps(rng, 2, 4)
  with pytest.raises(ValueError, match=r"\(3, 4, 4, 4\).*\(3, 2, 5, 5\).*query and key lengths"):
    AMAD().loss({}, {}, _io(rng, teacher, _maps(rng, 2, 2, q=5, k=5)))
  keys_differ = _io(rng, teacher, _maps(rng, 2, 2, k=6))
  with pytest.raises(ValueError, match=r"\(3, 2, 4, 6\).*variant='learnable'"):
    AMAD(variant="kl").loss({}, {}, keys_differ)
  # Eq. 11's W [k_t, k_s] bridges key lengths (e.g. cross-attention over other inputs).
  learnable = AMAD(variant="learnable")
  params = learnable.init(jax.random.key(0), keys_differ).params
  assert params["projection"]["kernel"].shape == (2, QUERIES, 6)
  assert np.isfinite(float(learnable.loss(params, {}, keys_differ)[0]))
  with pytest.raises(ValueError, match="attention_mask'] has shape \\(3, 5\\)"):
    AMAD().loss({}, {}, _io(rng, teacher, _maps(rng, 2, 2), np.ones((3, 5))))
  io = _io(rng, teacher, _maps(rng, 2, 2))
  with pytest.raises(ValueError, match="one teacher, but 2 teachers"):
    AMAD().loss({}, {}, dataclasses.replace(io, teachers=io.teachers * 2))
  with pytest.raises(ValueError, match="'attentions' output"):
    AMAD().loss({}, {}, dataclasses.replace(io, student={"logits": io.student["logits"]}))
  with pytest.raises(ValueError, match="variant must be one of"):
    AMAD(variant="cosine")


# ------------------------------------------------------------------ baselines
def np_baseline(kind, distance, t, s, real_queries):
  """One example's baseline term over the real query rows: means over heads, queries, keys."""
  t, s = np.asarray(t, np.float64)[:, :real_queries], np.asarray(s, np.float64)[:, :real_queries]
  if kind == "head_sum":
    return np.mean((t.sum(0) - s.sum(0)) ** 2)
  if kind == "head_mean":
    t, s = t.mean(0, keepdims=True), s.mean(0, keepdims=True)
  if kind == "head_pool":  # contiguous groups of H_t / H_s teacher heads
    t = t.reshape(len(s), len(t) // len(s), *t.shape[1:]).mean(1)
  if distance == "mse":
    return np.mean((t - s) ** 2)
  return np.mean([[_kl(t[h, l], s[h, l]) for l in range(real_queries)] for h in range(len(t))])


@pytest.mark.parametrize(
    "kind,distance,student_heads",
    [
        ("one_to_one", "mse", 4),
        ("one_to_one", "kl", 4),
        ("head_mean", "mse", 3),
        ("head_mean", "kl", 3),
        ("head_sum", "mse", 3),
        ("head_pool", "mse", 2),
        ("head_pool", "kl", 2),
    ],
)
@pytest.mark.parametrize("mask", [None, MASK])
def test_attention_baselines_match_reference(kind, distance, student_heads, mask):
  rng = np.random.default_rng(5)
  io = _io(rng, _maps(rng, 4, 4), _maps(rng, 2, student_heads), mask)
  method = AttentionKD(kind=kind, distance=distance, attention_weight=2.0, kd_weight=0.5)
  loss, aux = method.loss({}, {}, io)
  pairs = uniform_layer_map(4, 2)
  expected = np.mean(
      [
          sum(
              np_baseline(
                  kind,
                  distance,
                  io.teachers[0]["attentions"][t][b],
                  io.student["attentions"][s][b],
                  _real(mask, b, QUERIES),
              )
              for t, s in pairs
          )
          for b in range(BATCH)
      ]
  )
  np.testing.assert_allclose(float(aux.metrics["attention"]), expected, rtol=1e-4)
  np.testing.assert_allclose(float(loss), 2.0 * expected + np_task(io, 0.5, 1.0), rtol=1e-4)


@pytest.mark.parametrize("width", [6, 8])
def test_hidden_mse_matches_reference(width):
  rng = np.random.default_rng(6)
  hidden = lambda d: [
      jnp.asarray(rng.normal(size=(BATCH, QUERIES, d)), jnp.float32) for _ in range(2)
  ]
  io = _io(rng, [], [], MASK, teacher={"features": hidden(8)}, student={"features": hidden(width)})
  method = AttentionKD(kind="hidden_mse", layer_map=((1, 0), (0, 1)), kd_weight=0.0)
  params = method.init(jax.random.key(0), io).params
  assert method.requested_outputs()[0] == {"logits", "features"}  # fused attention stays on
  expected = np.zeros(BATCH)
  for i, (t, s) in enumerate(((1, 0), (0, 1))):
    student = np.asarray(io.student["features"][s], np.float64)
    if width != 8:  # the learned map W_h, one per layer pair
      student = student @ np.asarray(params["hidden_maps"]["kernel"][i]) + np.asarray(
          params["hidden_maps"]["bias"][i]
      )
    teacher = np.asarray(io.teachers[0]["features"][t], np.float64)
    for b in range(BATCH):
      n = MASK[b].sum()
      expected[b] += np.mean((student[b, :n] - teacher[b, :n]) ** 2)
  assert ("hidden_maps" in params) == (width != 8)
  _, aux = method.loss(params, {}, io)
  np.testing.assert_allclose(float(aux.metrics["hidden"]), expected.mean(), rtol=1e-4)


def test_baselines_refuse_what_they_cannot_bridge():
  rng = np.random.default_rng(7)
  io = _io(rng, _maps(rng, 2, 4), _maps(rng, 2, 3))
  with pytest.raises(ValueError, match=r"equal head counts.*\(3, 4, 4, 4\).*\(3, 3, 4, 4\)"):
    AttentionKD(kind="one_to_one").loss({}, {}, io)
  with pytest.raises(
      ValueError, match=r"multiple of the student's.*\(3, 4, 4, 4\).*\(3, 3, 4, 4\)"
  ):
    AttentionKD(kind="head_pool").loss({}, {}, io)
  with pytest.raises(ValueError, match=r"\(3, 4, 4, 4\).*\(3, 3, 5, 5\)"):
    AttentionKD(kind="head_mean").loss({}, {}, _io(rng, _maps(rng, 2, 4), _maps(rng, 2, 3, 5, 5)))
  with pytest.raises(ValueError, match="MSE only"):
    AttentionKD(kind="head_sum", distance="kl")
  with pytest.raises(ValueError, match="kind must be one of"):
    AttentionKD(kind="pkd")


# ------------------------------------------------------------------ through the engine
VIT = {"patch_size": 7, "mlp_dim": 16, "dropout_rate": 0.0}  # 28×28 digits -> 1 + 16 tokens


@pytest.fixture(scope="module")
def vit_teacher(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("vit_teacher"))
  config = helpers.tiny_config(total_steps=2, checkpoint_every=2, model="vit_micro")
  config.model_kwargs = ml_collections.ConfigDict(
      {**VIT, "hidden_size": 16, "num_layers": 2, "num_heads": 4}
  )
  loop.train_and_evaluate(config, workdir)
  return workdir, config.model_kwargs


@pytest.mark.parametrize(
    "name,hyper_parameters",
    [
        ("kd_jax.methods.amad:AMAD", {"variant": "learnable", "attention_weight": 0.1}),
        ("kd_jax.methods.attention_kd:AttentionKD", {"kind": "head_pool"}),
    ],
)
def test_methods_train_through_the_engine(vit_teacher, name, hyper_parameters, tmp_path):
  teacher_dir, teacher_kwargs = vit_teacher
  config = helpers.tiny_config(total_steps=6, checkpoint_every=6, model="vit_micro")
  config.model_kwargs = ml_collections.ConfigDict(
      {**VIT, "hidden_size": 8, "num_layers": 1, "num_heads": 2}
  )
  config.method = ml_collections.ConfigDict({"name": name, **hyper_parameters})
  config.teachers = (
      ml_collections.ConfigDict(
          {"model": "vit_micro", "model_kwargs": teacher_kwargs, "workdir": teacher_dir}
      ),
  )
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert {"accuracy", "agreement"} <= set(results)
  rows = [r for r in writers.read_metrics(str(tmp_path)) if r["split"] == "train"]
  losses, attention = [r["loss"] for r in rows], [r["attention"] for r in rows]
  assert len(losses) == 6 and np.all(np.isfinite(losses)) and np.all(np.isfinite(attention))
  # The total is dominated by the CE of a 6-step run; the attention term is what must improve.
  assert attention[-1] < attention[0]


def test_head_alignment_matches_reference_with_padding():
  rng = np.random.default_rng(11)
  t = rng.dirichlet(np.ones(5), size=(2, 4, 5))  # [batch, H_t, q, k]
  s = rng.dirichlet(np.ones(5), size=(2, 3, 5))
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  a = np.asarray(losses_attention.head_alignment(t, s, mask))
  for b in range(2):
    rows = lambda maps: (maps[b] * mask[b][None, :, None]).reshape(maps.shape[1], -1)
    np.testing.assert_allclose(a[b], ref._soft_alignment(rows(t), rows(s)), rtol=1e-5)
