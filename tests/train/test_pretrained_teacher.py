"""Teachers used as they come (`pretrained: True`) and runs of zero steps (evaluate as built)."""

import jax
import ml_collections
import pytest

from kd_jax.train import loop
from kd_jax.train import stages
from tests.train import helpers


class PretrainedTinyCNN(helpers.TinyCNN):
  """A TinyCNN whose `load_pretrained` supplies fixed weights (those of a seed-7 init)."""

  def load_pretrained(self, variables):
    x = jax.numpy.zeros((1, 28, 28, 1))
    return jax.jit(lambda key: self.init(key, x, train=False))(jax.random.key(7))


PRETRAINED = "tests.train.test_pretrained_teacher:PretrainedTinyCNN"


def test_pretrained_teacher_is_the_zero_step_model(tmp_path):
  as_built = helpers.tiny_config(total_steps=0)
  as_built.model = PRETRAINED
  student = helpers.tiny_config(total_steps=2, checkpoint_every=2)
  student.method = ml_collections.ConfigDict({"name": "vanilla_kd"})
  student.teachers = (ml_collections.ConfigDict({"model": PRETRAINED, "pretrained": True}),)
  config = ml_collections.ConfigDict(
      {"stages": {"as_built": as_built, "student": student}, "stage_order": ("as_built", "student")}
  )
  results = stages.run(config, str(tmp_path))
  # The 0-step run evaluates the pretrained weights; the teacher built from them agrees.
  assert results["student"]["teacher_accuracy"] == pytest.approx(results["as_built"]["accuracy"])
  assert not (tmp_path / "as_built" / "checkpoints").exists() or not any(
      (tmp_path / "as_built" / "checkpoints").iterdir()
  )
  # Rerunning returns the finished results.
  assert stages.run(config, str(tmp_path))["as_built"] == results["as_built"]


def test_teacher_specs_are_checked(tmp_path):
  config = helpers.tiny_config(total_steps=1)
  config.method = ml_collections.ConfigDict({"name": "vanilla_kd"})
  config.teachers = (
      ml_collections.ConfigDict({"model": PRETRAINED, "pretrained": True, "workdir": "/x"}),
  )
  with pytest.raises(ValueError, match="exactly one of a workdir"):
    loop.train_and_evaluate(config, str(tmp_path / "a"))
  config.teachers = (
      ml_collections.ConfigDict({"model": "tests.train.helpers:TinyCNN", "pretrained": True}),
  )
  with pytest.raises(ValueError, match="has no load_pretrained"):
    stages.run(
        ml_collections.ConfigDict({"stages": {"s": config}, "stage_order": ("s",)}),
        str(tmp_path / "b"),
    )
