"""Configs for the engine's subprocess tests (TinyCNN on an MNIST-5k subset).

  python -m experiments.main --config=tests/train/tiny_run_config.py:VARIANT --workdir=DIR

Variants: "resume" (a method that sleeps in a host callback, so the run can be killed mid-way),
"devices" (stages `plain` and `accum`, the latter with grad_accum_steps=2), "engine_v2" (the toy
method of tests/train/toy_method.py, slowed down), "init_from=PATH" ("resume" starting from the
finished run in PATH, its start evaluated on validation and competing for the best state).
"""

import ml_collections

from tests.train import helpers


def get_config(arg: str = "resume"):
  if arg == "resume":
    c = helpers.tiny_config(total_steps=24, checkpoint_every=4, max_to_keep=2)
    c.method = ml_collections.ConfigDict({"name": "tests.train.helpers:SlowSupervised"})
    return c
  if arg == "devices":
    config = ml_collections.ConfigDict()
    config.stages = ml_collections.ConfigDict()
    config.stages.plain = helpers.tiny_config(total_steps=8, checkpoint_every=8)
    config.stages.accum = helpers.tiny_config(total_steps=8, checkpoint_every=8, grad_accum_steps=2)
    config.stage_order = ("plain", "accum")
    return config
  if arg == "engine_v2":  # the toy method using every extension point, slowed down
    from tests.train import toy_method  # pylint: disable=g-import-not-at-top

    c = toy_method.toy_config(total_steps=16)
    c.method.seconds_per_step = 0.15
    return c
  if arg.startswith("init_from="):
    c = get_config("resume")
    c.validation_split = "validation"
    c.init_from = ml_collections.ConfigDict({"workdir": arg.partition("=")[2]})
    c.evals = ml_collections.ConfigDict(
        {"validation": {"split": "validation", "every": 4, "first": 0}}
    )
    c.model_selection = ml_collections.ConfigDict(
        dict(evaluator="validation", metric="accuracy", mode="max", patience=0)
    )
    return c
  raise ValueError(f"Unknown variant {arg!r}.")
