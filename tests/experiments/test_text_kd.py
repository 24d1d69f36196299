"""experiments/configs/text_kd.py: one `settings` override reaches every stage."""

from experiments.configs import text_kd
from kd_jax.train import staged_config


def test_settings_reach_every_stage_and_keep_test_out_of_choices():
  config = text_kd.get_config("cpu")
  config.settings.update(
      dataset="csv:reviews.csv?text=review&label=sentiment",
      num_classes=3,
      max_length=32,
      student_layers=2,
      student_steps=7,
  )
  stages = dict(staged_config.validate_stages(config, resolve=False))
  assert list(stages) == ["teacher", "student_kd", "student_ce"]
  for name, stage in stages.items():
    assert stage.dataset.startswith("csv:reviews.csv") and stage.num_classes == 3
    assert stage.train_transforms[0]["max_length"] == 32
    assert stage.evals["validation"]["split"] == stage.validation_split != stage.eval_split
    if name != "teacher":
      assert stage.total_steps == 7 and stage.model_kwargs["num_layers"] == 2
      assert stage.teachers[0]["workdir"] == "teacher"
  assert stages["student_kd"].method.name == "vanilla_kd"
  assert stages["student_ce"].method.name == "supervised"
