"""Staged configs: named run configs executed in the order of `stage_order`, each in
WORKDIR/<stage name>, where a teacher's (or `init_from`'s) relative `workdir` names an earlier
stage — how one command trains a teacher and then distils it.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from kd_jax.train import choices
from kd_jax.train import config as config_lib
from kd_jax.train import config_validation
from kd_jax.train import init_from as init_from_lib


def is_staged(config: ml_collections.ConfigDict) -> bool:
  return "stages" in config


def validate_stages(
    config: ml_collections.ConfigDict, *, resolve: bool = True
) -> list[tuple[str, Any]]:
  """Validates every stage and the teacher references between them; returns [(name, config)].

  With `resolve` (the default), every stage's datasets, transforms and models are also resolved
  (`kd_jax.train.preflight`), so a mistake in the last stage fails before the first one trains.
  A top-level `settings` dict may hold values the stages share by reference (FieldReferences),
  so that one `--config.settings.<key>=...` override reaches every stage; it is not run.
  """
  unknown = set(config.keys()) - {"stages", "stage_order", "settings", "choices"}
  if unknown:
    raise ValueError(
        f"A staged config holds only `stages`, `stage_order`, `settings` and `choices`; "
        f"unknown top-level key(s) {sorted(unknown)} (put them inside a stage)."
    )
  # ConfigDict iterates keys sorted, so the run order is explicit.
  order = list(config.get("stage_order", ()))
  if sorted(order) != sorted(config.stages.keys()):
    raise ValueError(
        f"stage_order {order} must list every stage of `stages` "
        f"{sorted(config.stages.keys())} exactly once."
    )
  stages = [
      (stage, config_validation.validate(config.stages[stage], name=f"stage {stage!r}"))
      for stage in order
  ]
  seen = {}
  for stage, stage_config in stages:
    for index, teacher in enumerate(config_lib.teacher_specs(stage_config)):
      if teacher.get("pretrained", False):
        continue
      if teacher.workdir in seen:
        _check_teacher_matches_stage(
            stage,
            index,
            teacher,
            teacher.workdir,
            seen[teacher.workdir],
            num_classes=stage_config.num_classes,
        )
      elif teacher.workdir in dict(stages):
        raise ValueError(
            f"stage {stage!r}: teachers[{index}] uses stage {teacher.workdir!r}, "
            "which runs later; order the stages so teachers come first."
        )
    init = init_from_lib.spec(stage_config)
    if init and init["workdir"] in dict(stages) and init["workdir"] not in seen:
      raise ValueError(
          f"stage {stage!r}: init_from uses stage {init['workdir']!r}, which does not run "
          "before it; order the stages so the run it starts from comes first."
      )
    seen[stage] = stage_config
  choices.validate(config, order, dict(stages))
  if resolve:
    from kd_jax.train import preflight  # pylint: disable=g-import-not-at-top  (import cycle)

    preflight.check_stages(stages)
  return stages


def _check_teacher_matches_stage(
    stage: str, index: int, teacher, teacher_stage: str, teacher_config, *, num_classes: int
) -> None:
  problems = []
  if teacher_config.num_classes != num_classes:
    problems.append(f"num_classes {num_classes} vs {teacher_config.num_classes}")
  if teacher.model != teacher_config.model:
    problems.append(f"model {teacher.model!r} vs {teacher_config.model!r}")
  if dict(teacher.model_kwargs) != dict(teacher_config.model_kwargs):
    problems.append(
        f"model_kwargs {dict(teacher.model_kwargs)} vs " f"{dict(teacher_config.model_kwargs)}"
    )
  if problems:
    raise ValueError(
        f"stage {stage!r}: teachers[{index}] does not match the run of stage "
        f"{teacher_stage!r} that trains it: " + "; ".join(problems) + "."
    )
