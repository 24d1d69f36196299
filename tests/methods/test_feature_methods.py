"""FitNets and AT (the DiSK table's feature baselines) against NumPy written from their equations,
and one short run of each of them and of the method zoo's methods through the engine (TinyCNN or
narrow resnet8 teachers and students on real digits)."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.methods import base
from kd_jax.train import loop, writers
from tests.losses import numpy_reference as ref
from tests.train import helpers

RNG = np.random.default_rng(3)
BATCH, CLASSES = 4, 5
CONTEXT = base.RunContext(
    total_steps=10, steps_per_epoch=5, num_train_examples=20, batch_size=BATCH, num_classes=CLASSES
)


def _io(step=0):
  student = {
      "logits": jnp.asarray(RNG.normal(size=(BATCH, CLASSES)), jnp.float32),
      "features": [jnp.asarray(RNG.normal(size=(BATCH, 8, 8, c)), jnp.float32) for c in (3, 4, 6)],
  }
  teacher = {
      "logits": jnp.asarray(RNG.normal(size=(BATCH, CLASSES)), jnp.float32),
      "features": [jnp.asarray(RNG.normal(size=(BATCH, 8, 8, c)), jnp.float32) for c in (5, 7, 9)],
  }
  return base.StepIO(
      student=student,
      teachers=(teacher,),
      context=CONTEXT,
      batch={"label": jnp.asarray(RNG.integers(0, CLASSES, BATCH))},
      step=jnp.asarray(step, jnp.int32),
  )


def _task(io, kd_weight, ce_weight, tau=4.0):
  s, t = np.asarray(io.student["logits"]), np.asarray(io.teachers[0]["logits"])
  return (
      kd_weight * ref.hinton_kd(s, t, tau).mean()
      + ce_weight * ref.cross_entropy(s, np.asarray(io.batch["label"])).mean()
  )


@pytest.mark.parametrize("pairs", [(), ((0, 1), (2, 2))])
def test_fitnets_matches_reference(pairs):
  method = methods.get_method("fitnets", pairs=pairs, hint_weight=2.0, kd_weight=0.5, ce_weight=0.3)
  io = _io()
  variables = method.init(jax.random.key(0), io)
  loss, aux = method.loss(variables.params, {}, io)
  used = pairs or ((1, 1),)  # the middle maps by default
  assert set(variables.params["adapters"]) == {f"{i}_{j}" for i, j in used}
  hint = 0.0
  for i, j in used:
    adapter = variables.params["adapters"][f"{i}_{j}"]
    assert adapter["kernel"].shape == (
        io.student["features"][i].shape[-1],
        io.teachers[0]["features"][j].shape[-1],
    )
    hint += ref.fitnets(
        np.asarray(io.student["features"][i]),
        np.asarray(io.teachers[0]["features"][j]),
        np.asarray(adapter["kernel"]),
        np.asarray(adapter["bias"]),
    ).mean()
  np.testing.assert_allclose(float(aux.metrics["hint"]), hint, rtol=1e-4)
  np.testing.assert_allclose(float(loss), 2.0 * hint + _task(io, 0.5, 0.3), rtol=1e-4)


def test_fitnets_two_stage_schedule_switches_at_hint_steps():
  method = methods.get_method("fitnets", hint_steps=3, hint_weight=1.0, kd_weight=1.0)
  io = _io()
  variables = method.init(jax.random.key(1), io)
  stage_1, aux = method.loss(variables.params, {}, dataclasses.replace(io, step=jnp.asarray(2)))
  stage_2, _ = method.loss(variables.params, {}, dataclasses.replace(io, step=jnp.asarray(3)))
  np.testing.assert_allclose(float(stage_1), float(aux.metrics["hint"]), rtol=1e-6)
  np.testing.assert_allclose(float(stage_2), _task(io, 1.0, 1.0), rtol=1e-4)


def test_attention_transfer_matches_reference():
  method = methods.get_method("at", weight=1000.0, p=2.0, ce_weight=1.0)
  io = _io()
  loss, aux = method.loss({}, {}, io)
  at = sum(
      ref.attention_transfer(np.asarray(s), np.asarray(t)).mean()
      for s, t in zip(io.student["features"], io.teachers[0]["features"])
  )
  np.testing.assert_allclose(float(aux.metrics["at"]), at, rtol=1e-4)
  np.testing.assert_allclose(float(loss), 1000.0 * at + _task(io, 0.0, 1.0), rtol=1e-4)


def test_feature_methods_name_bad_pairs():
  io = _io()
  with pytest.raises(ValueError, match=r"feature pair \(5, 0\) is out of range.*3 feature maps"):
    methods.get_method("fitnets", pairs=((5, 0),)).init(jax.random.key(0), io)
  with pytest.raises(ValueError, match="student has 2 feature maps and the teacher 3"):
    short = base.StepIO(
        student={**io.student, "features": io.student["features"][:2]},
        teachers=io.teachers,
        batch=io.batch,
        context=CONTEXT,
    )
    methods.get_method("at").loss({}, {}, short)


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory):
  """Two-step teachers shared by the engine runs: a TinyCNN and a narrow resnet8 (whose pre-ReLU
  outputs OFD and ReviewKD read)."""
  out = {}
  for name, model, kwargs in (
      ("tiny_cnn", "tests.train.helpers:TinyCNN", {"width": 8}),
      ("resnet8", "resnet8", {"widths": (4, 6, 8, 8)}),
  ):
    workdir = str(tmp_path_factory.mktemp(name))
    config = helpers.tiny_config(total_steps=2, checkpoint_every=2, model=model)
    config.model_kwargs = ml_collections.ConfigDict(kwargs)
    loop.train_and_evaluate(config, workdir)
    out[name] = (model, kwargs, workdir)
  return out


# Every feature / logit method of the DiSK table and of the method zoo through the real trainer:
# (method hyper-parameters, the teacher-student family, the method's own terms in the train log).
ENGINE_RUNS = {
    "fitnets": ({}, "tiny_cnn", ("hint",)),
    "at": ({}, "tiny_cnn", ("at",)),
    "dkd": ({}, "tiny_cnn", ("tckd", "nckd")),
    "dist": ({}, "tiny_cnn", ("inter_class", "intra_class")),
    "pkt": ({}, "tiny_cnn", ("pkt",)),
    "sp": ({}, "tiny_cnn", ("sp",)),
    "nst": ({}, "tiny_cnn", ("nst",)),
    "vid": ({}, "tiny_cnn", ("vid",)),
    "reviewkd": ({"warmup_epochs": 0.0}, "resnet8", ("review",)),
    "ofd": ({}, "resnet8", ("ofd",)),
}


@pytest.mark.parametrize("name", sorted(ENGINE_RUNS))
def test_feature_methods_train_through_the_engine(name, tiny_teachers, tmp_path):
  hyper, family, terms = ENGINE_RUNS[name]
  teacher_model, teacher_kwargs, teacher_dir = tiny_teachers[family]
  config = helpers.tiny_config(total_steps=3, checkpoint_every=3, model=teacher_model)
  config.model_kwargs = ml_collections.ConfigDict(
      {"width": 4} if family == "tiny_cnn" else {"widths": (4, 4, 4, 6)}
  )
  config.method = ml_collections.ConfigDict({"name": name, **hyper})
  config.teachers = (
      ml_collections.ConfigDict(
          {"model": teacher_model, "model_kwargs": teacher_kwargs, "workdir": teacher_dir}
      ),
  )
  results = loop.train_and_evaluate(config, str(tmp_path / "student"))
  assert {"accuracy", "agreement"} <= set(results)
  assert np.isfinite(results["accuracy"])
  # The method's own loss ran in every logged step (not only the CE it adds), and is finite.
  train_rows = [r for r in writers.read_metrics(str(tmp_path / "student")) if r["split"] == "train"]
  assert [r["step"] for r in train_rows] == [1, 2, 3]
  for term in terms:
    assert all(np.isfinite(r[term]) and r[term] >= 0 for r in train_rows), term
    assert any(r[term] > 0 for r in train_rows), term
