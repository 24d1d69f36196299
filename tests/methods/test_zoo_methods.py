"""The method zoo (DKD, DIST, PKT, SP, NST, VID, ReviewKD, OFD): each objective against NumPy
written from its paper, warm-ups, bad inputs, and which parameters its gradient reaches."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.methods import base
from kd_jax.models import get_model
from kd_jax.train import forward as forward_lib
from tests.losses import numpy_reference as ref
from tests.losses import numpy_zoo_reference as zoo

BATCH, CLASSES = 4, 5
SIZES = (8, 4, 2)
CONTEXT = base.RunContext(
    total_steps=100, steps_per_epoch=5, num_train_examples=20, batch_size=BATCH, num_classes=CLASSES
)


def _side(rng, channels):
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  maps = [f32(BATCH, s, s, c) for s, c in zip(SIZES, channels)]
  return {
      "logits": f32(BATCH, CLASSES) * 2,
      "embedding": f32(BATCH, channels[-1]),
      "features": [jax.nn.relu(m) for m in maps],
      "preact_features": maps,
      "preact_bn": [
          {
              "scale": jnp.broadcast_to(f32(c), (BATCH, c)),
              "bias": jnp.broadcast_to(f32(c), (BATCH, c)),
          }
          for c in channels
      ],
  }


def _io(seed=0, step=0, train=True):
  rng = np.random.default_rng(seed)
  return base.StepIO(
      student=_side(rng, (3, 4, 6)),
      teachers=(_side(rng, (5, 7, 9)),),
      batch={"label": jnp.asarray(rng.integers(0, CLASSES, BATCH))},
      context=CONTEXT,
      step=jnp.asarray(step, jnp.int32),
      train=train,
  )


def _np(x):
  return np.asarray(x, np.float64)


def _ce(io):
  return ref.cross_entropy(_np(io.student["logits"]), np.asarray(io.batch["label"])).mean()


def _run(name, io=None, **hyper):
  io = io or _io()
  method = methods.get_method(name, **hyper)
  variables = method.init(jax.random.key(0), io)
  state = dataclasses.replace(io, model_state=variables.model_state)
  loss, aux = method.loss(variables.params, variables.state, state)
  return method, variables, io, float(loss), aux


# ------------------------------------------------------------------ logit methods
def test_dkd_matches_reference_and_warms_up():
  io = _io(step=50)  # epoch 10 of a 20-epoch warm-up: half the weight
  _, _, _, loss, aux = _run("dkd", io, alpha=1.0, beta=2.0, temperature=4.0)
  s, t, y = _np(io.student["logits"]), _np(io.teachers[0]["logits"]), np.asarray(io.batch["label"])
  distill = zoo.tckd(s, t, y, 4.0).mean() + 2.0 * zoo.nckd(s, t, y, 4.0).mean()
  np.testing.assert_allclose(loss, _ce(io) + 0.5 * distill, rtol=1e-4)
  np.testing.assert_allclose(float(aux.metrics["dkd_warmup"]), 0.5)
  at_start = _run("dkd", _io(step=0))[3]
  np.testing.assert_allclose(at_start, _ce(io), rtol=1e-5)  # the ramp starts at 0
  after = _run("dkd", _io(step=120), warmup_epochs=20.0)[4]
  assert float(after.metrics["dkd_warmup"]) == 1.0


def test_dist_matches_reference():
  _, _, io, loss, aux = _run("dist", beta=1.0, gamma=0.5, temperature=4.0, weight=2.0)
  s, t = _np(io.student["logits"]), _np(io.teachers[0]["logits"])
  inter, intra = zoo.dist_inter(s, t, 4.0).mean(), zoo.dist_intra(s, t, 4.0).mean()
  np.testing.assert_allclose(float(aux.metrics["intra_class"]), intra, rtol=1e-4)
  np.testing.assert_allclose(loss, 2.0 * (inter + 0.5 * intra) + _ce(io), rtol=1e-4)


# ------------------------------------------------------------------ relational / feature methods
def test_pkt_and_sp_match_reference():
  _, _, io, loss, _ = _run("pkt", weight=30.0)
  s, t = _np(io.student["embedding"]), _np(io.teachers[0]["embedding"])
  np.testing.assert_allclose(loss, 30.0 * zoo.pkt(s, t).mean() + _ce(io), rtol=1e-4)
  _, _, io, loss, _ = _run("sp", weight=3.0, pairs=((-1, -1), (0, 1)))
  sf, tf = io.student["features"], io.teachers[0]["features"]
  sp = sum(zoo.similarity_preserving(_np(sf[i]), _np(tf[j])).mean() for i, j in ((2, 2), (0, 1)))
  np.testing.assert_allclose(loss, 3.0 * sp + _ce(io), rtol=1e-4)


def test_nst_matches_reference_on_every_stage():
  _, _, io, loss, aux = _run("nst", weight=50.0, kd_weight=0.5)
  pairs = zip(io.student["features"], io.teachers[0]["features"])
  nst = sum(zoo.nst(_np(s), _np(t)).mean() for s, t in pairs)
  kd = ref.hinton_kd(_np(io.student["logits"]), _np(io.teachers[0]["logits"]), 4.0).mean()
  np.testing.assert_allclose(float(aux.metrics["nst"]), nst, rtol=1e-4)
  np.testing.assert_allclose(loss, 50.0 * nst + 0.5 * kd + _ce(io), rtol=1e-4)


def test_vid_matches_reference_and_starts_at_the_initial_variance():
  _, variables, io, loss, _ = _run("vid", initial_variance=5.0)
  total = 0.0
  for k, (s, t) in enumerate(zip(io.student["features"], io.teachers[0]["features"])):
    part = variables.params[f"{k}_{k}"]
    kernels = [_np(part["regressor"][f"Dense_{n}"]["kernel"]) for n in range(3)]
    assert kernels[0].shape == (s.shape[-1], t.shape[-1])  # m = the teacher's channels
    mean = np.maximum(np.maximum(_np(s) @ kernels[0], 0) @ kernels[1], 0) @ kernels[2]
    np.testing.assert_allclose(np.log1p(np.exp(_np(part["raw_variance"]))) + 1e-5, 5.0, rtol=1e-5)
    total += zoo.vid(mean, _np(t), _np(part["raw_variance"])).mean()
  np.testing.assert_allclose(loss, total + _ce(io), rtol=1e-4)


def _batch_norm(x):  # train mode, scale 1, bias 0: statistics over batch and positions
  x = _np(x)
  return (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-5)


def test_ofd_matches_reference_with_stage_weights_and_updates_its_statistics():
  _, variables, io, loss, aux = _run("ofd", weight=1e-3)
  teacher, total = io.teachers[0], 0.0
  for k, s in enumerate(io.student["preact_features"]):
    kernel = _np(variables.params["connectors"][f"conv{k}"]["kernel"])
    bn = teacher["preact_bn"][k]
    margin = zoo.ofd_margin(_np(bn["scale"][0]), _np(bn["bias"][0]))
    distance = zoo.ofd_partial_l2(
        _batch_norm(_np(s) @ kernel), _np(teacher["preact_features"][k]), margin
    )
    total += distance.mean() / 2.0 ** (2 - k)  # the last stage weighs 1, earlier ones 1/2, 1/4
  np.testing.assert_allclose(float(aux.metrics["ofd"]), total, rtol=1e-4)
  np.testing.assert_allclose(loss, 1e-3 * total + _ce(io), rtol=1e-4)
  before = variables.model_state["batch_stats"]["bn0"]["mean"]
  assert not np.allclose(aux.model_state["batch_stats"]["bn0"]["mean"], before)


def _conv3x3(x, kernel):
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  return sum(padded[:, a : a + h, b : b + w] @ kernel[a, b] for a in range(3) for b in range(3))


def test_reviewkd_fusion_and_hcl_match_reference():
  io = _io(step=200)  # past the warm-up
  _, variables, io, loss, aux = _run("reviewkd", io, weight=0.6)
  p = jax.tree.map(_np, variables.params["fusion"])
  student = [*io.student["features"], io.student["embedding"][:, None, None, :]]
  teacher = [*io.teachers[0]["preact_features"], io.teachers[0]["embedding"][:, None, None, :]]
  fused, residual, review = [None] * 4, None, 0.0
  for level in (3, 2, 1, 0):
    x = _batch_norm(_np(student[level]) @ p[f"in{level}"]["kernel"][0, 0])
    assert x.shape[-1] == 6  # m = min(512, the student's embedding width)
    if residual is not None:
      factor = x.shape[1] // residual.shape[1]  # nearest upsampling by an integer factor
      residual = residual.repeat(factor, 1).repeat(factor, 2)
      logits = np.concatenate([x, residual], -1) @ p[f"gate{level}"]["kernel"][0, 0]
      gates = 1 / (1 + np.exp(-(logits + p[f"gate{level}"]["bias"])))
      x = x * gates[..., :1] + residual * gates[..., 1:]
    fused[level] = _batch_norm(_conv3x3(x, p[f"out{level}"]["kernel"]))
    residual = x
    review += zoo.hcl(fused[level], _np(teacher[level])).mean()
  np.testing.assert_allclose(float(aux.metrics["review"]), review, rtol=1e-4)
  np.testing.assert_allclose(loss, 0.6 * review + _ce(io), rtol=1e-4)


def test_zoo_methods_name_bad_inputs():
  io = _io()
  no_preact = dataclasses.replace(
      io, student={k: v for k, v in io.student.items() if k != "preact_features"}
  )
  with pytest.raises(ValueError, match="ofd: the student returns no 'preact_features'"):
    methods.get_method("ofd").init(jax.random.key(0), no_preact)
  short = dataclasses.replace(io, student={**io.student, "features": io.student["features"][:2]})
  with pytest.raises(ValueError, match="nst: the student has 2 feature maps and the teacher 3"):
    methods.get_method("nst").loss({}, {}, short)
  with pytest.raises(ValueError, match="reviewkd: the student has 2 stage maps"):
    methods.get_method("reviewkd").init(jax.random.key(0), short)
  with pytest.raises(ValueError, match="vid: student map 0 .* same spatial size"):
    methods.get_method("vid", pairs=((0, 1),)).init(jax.random.key(0), io)
  with pytest.raises(ValueError, match="pkt: ce_weight must be >= 0"):
    methods.get_method("pkt", ce_weight=-1.0)
  with pytest.raises(ValueError, match="dkd: temperature"):
    methods.get_method("dkd", temperature=0.0)
  assert methods.get_method("dist").batch_dependent and methods.get_method("sp").batch_dependent
  assert methods.get_method("ofd").requested_outputs() == (
      frozenset({"logits", "preact_features"}),
      frozenset({"logits", "preact_features", "preact_bn"}),
  )
  assert methods.get_method("reviewkd", teacher_preact=False).requested_outputs()[1] == frozenset(
      {"logits", "embedding", "features"}
  )


# ------------------------------------------------------------------ gradients through real models
ZOO = ("dkd", "dist", "pkt", "sp", "nst", "vid", "reviewkd", "ofd")
NO_CE = {"ce_weight": 0.0}  # the distillation term alone must reach the student


@pytest.fixture(scope="module")
def tiny_pair():
  """A resnet8 teacher and a narrower resnet8 student on 16×16 images (real pre-ReLU outputs)."""
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(BATCH, 16, 16, 1)), jnp.float32)
  teacher = get_model("resnet8", num_classes=CLASSES, widths=(4, 6, 8, 8))
  student = get_model("resnet8", num_classes=CLASSES, widths=(4, 4, 4, 6))
  return (
      x,
      teacher,
      student,
      teacher.init(jax.random.key(1), x, train=False),
      (student.init(jax.random.key(2), x, train=False)),
  )


@pytest.mark.parametrize("name", ZOO)
def test_gradient_reaches_the_student_and_method_params_never_the_teacher(name, tiny_pair):
  x, teacher, student, teacher_vars, student_vars = tiny_pair
  method = methods.get_method(
      name, **({"warmup_epochs": 0.0} if name in ("dkd", "reviewkd") else {}), **NO_CE
  )
  student_outputs, teacher_outputs = method.requested_outputs()
  forward = forward_lib.Forward(
      student,
      (teacher,),
      jnp.float32,
      student_outputs=student_outputs,
      teacher_outputs=teacher_outputs,
  )
  labels = jnp.arange(BATCH) % CLASSES
  context = dataclasses.replace(CONTEXT, batch_size=BATCH)

  def io_for(student_params, teacher_variables, model_state=None):
    out, _ = forward.student_train(
        student_params, {"batch_stats": student_vars["batch_stats"]}, x, jax.random.key(0)
    )
    return base.StepIO(
        student=out,
        teachers=forward.teachers_eval((teacher_variables,), x),
        batch={"label": labels},
        context=context,
        step=jnp.asarray(0, jnp.int32),
        train=True,
        model_state=model_state or {},
    )

  variables = method.init(jax.random.key(3), io_for(student_vars["params"], teacher_vars))

  def loss(method_params, student_params, teacher_variables):
    io = io_for(student_params, teacher_variables, variables.model_state)
    return method.loss(method_params, variables.state, io)[0]

  g_method, g_student, g_teacher = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(
      variables.params, student_vars["params"], teacher_vars
  )
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_teacher))
  leaves = jax.tree.leaves(g_student)
  assert all(np.all(np.isfinite(g)) for g in leaves) and any(np.any(g != 0) for g in leaves)
  method_leaves = jax.tree.leaves(g_method)
  assert (len(method_leaves) > 0) == (name in ("vid", "reviewkd", "ofd"))
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in method_leaves)
