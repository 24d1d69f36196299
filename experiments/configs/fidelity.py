"""Fidelity study (Stanton et al., NeurIPS 2021, "Does knowledge distillation really work?").

Six findings of the paper (PAPERS.md §6), each a row group of one table, with students trained
to convergence: independent teachers are trained with cross-entropy; every student has the
teachers' architecture (self-distillation) and is distilled with τ = 4, α = 0, the teacher queried
on exactly the student's augmented / mixed batch. Student rows, each with 3 seeds (seed s
distils teacher s, or the ensemble of teachers s, s + 1, ... mod the number of teachers):
  m1 / m3 / m5   ensembles of 1, 3, 5 teachers, baseline augmentation (pad-crop-flip); m1 is the
                 self-distillation row and the baseline of the augmentation and init rows;
  mixup, noise   one teacher, MixUp (λ ~ Beta(1, 1) = U[0, 1], the teacher labels the mixed
                 input) or Gaussian input noise on top of the baseline augmentation;
  data           one teacher, a distillation set of another size than the teachers' train set
                 (the same number of student updates);
  init_λ         one teacher, the student starting at θ = λ·θ_teacher + (1 − λ)·θ_random
                 (`config.init_from`), for each λ of `interpolation`;
  pair           a reference, not a student: teacher s + 1 evaluated against teacher s (0 steps),
                 the agreement of two independently trained models.
Every student (and teacher) is also evaluated on the teachers' train set through the eval
transforms (evaluator "train_split"): agreement on the data it was distilled on, beside the test split.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce fidelity --variant=cpu --workdir=/tmp/kd_fidelity_cpu

Variants:
  cpu    Fashion-MNIST (real data) at 14 × 14 (2 × 2 average pooling after pad-crop-flip):
         teachers trained on train[:5000], tested on the 10 000 test images; teachers and
         students PreAct ResNet-8 with 8/16/32 filters (about 20 000 parameters); 5 teachers
         (100 epochs of batch 256, SGD lr 0.1 cosine, wd 1e-4), students 40 epochs of batch 128
         (SGD Nesterov lr 0.05 → 1e-6 cosine, wd 1e-4): the paper's recipe on a smaller set and
         network, so that the train losses flatten out (the report plots them and checks for a
         plateau). The data row distils on train[:10000] (the teachers' 5 000 images and 5 000
         they never saw); init rows λ ∈ {0.25, 0.5, 0.75}. Runtime: 66 min measured on 2 cores
         (teachers ~3 min each, students ~1.6 min per stage, two other jobs sharing the cores);
         the estimate from pilots' CPU time was 2 h 15 min. Pilots at a fifth of these lengths
         (teacher 20 epochs, student 8) were not yet on their plateau by the report's check for
         the student (its loss fell 17 % over its last quarter; the teacher's 6 %).
  smoke  the same rows on a few MNIST-5k digits with 2 teachers, 1 seed and a few steps: the
         CI test.
  paper  CIFAR-100, PreAct ResNet-56 teachers (200 epochs, batch 256, SGD lr 0.1 cosine,
         wd 1e-4) and students (300 epochs, batch 128, SGD Nesterov lr 5e-2 → 1e-6 cosine),
         m ∈ {1, 3, 5}; the data row distils on half of the train set; needs a GPU/TPU host with
         the CIFAR-100 TFDS data.
"""

from __future__ import annotations

import ml_collections

from kd_jax.train.config import default_config

AUGMENTATIONS = ("baseline", "mixup", "noise")
VARIANTS = {
    "cpu": dict(
        dataset="fashion_mnist",
        num_classes=10,
        train=("train[:5000]", 5000),  # the teachers' train set, the students' distillation set
        other_data=("train[:10000]", 10000),  # the data row's distillation set
        test_split="test",
        pool=2,
        padding=2,
        model=("preact_resnet8", dict(widths=(8, 16, 32))),
        teachers=5,
        ensemble_sizes=(1, 3, 5),
        interpolation=(0.25, 0.5, 0.75),
        seeds=(0, 1, 2),
        teacher_epochs=100,
        teacher_batch=256,
        student_epochs=40,
        student_batch=128,
        noise_stddev=0.1,
        weight_decay=1e-4,
    ),
    "smoke": dict(
        dataset="mnist5k",
        num_classes=10,
        train=("train[:64]", 64),
        other_data=("train[:128]", 128),
        test_split="test[:64]",
        pool=2,
        padding=2,
        model=("preact_resnet8", dict(widths=(4, 4, 8))),
        teachers=2,
        ensemble_sizes=(1, 2),
        interpolation=(0.5, 0.9),
        seeds=(0,),
        teacher_epochs=6,  # 12 and 10 logged steps: enough for the report's plateau check
        teacher_batch=32,
        student_epochs=5,
        student_batch=32,
        noise_stddev=0.1,
        weight_decay=1e-4,
    ),
    "paper": dict(
        dataset="cifar100",
        num_classes=100,
        train=("train", 50_000),
        other_data=("train[:25000]", 25_000),
        test_split="test",
        pool=None,
        padding=4,
        model=("preact_resnet56", {}),
        teachers=5,
        ensemble_sizes=(1, 3, 5),
        interpolation=(0.125, 0.25, 0.375, 0.5, 0.75),
        seeds=(0, 1, 2),
        teacher_epochs=200,
        teacher_batch=256,
        student_epochs=300,
        student_batch=128,
        noise_stddev=0.1,
        weight_decay=1e-4,
    ),
}


def settings(variant: str) -> dict:
  if variant not in VARIANTS:
    raise ValueError(f"fidelity.py variants are {sorted(VARIANTS)}, got {variant!r}.")
  return VARIANTS[variant]


def steps(s: dict, role: str) -> int:
  """Updates of a teacher or student run: its epochs of the teachers' train set."""
  return max(1, round(s[f"{role}_epochs"] * s["train"][1] / s[f"{role}_batch"]))


def teacher_stage(index: int) -> str:
  return f"teacher_{index}"


def interpolation_row(weight: float) -> str:
  return "init_" + f"{weight:g}".replace(".", "p")  # a stage name without dots


def student_rows(s: dict) -> list[str]:
  """Row names in table order: ensembles, augmentations, the data row, the init rows."""
  return (
      [f"m{m}" for m in s["ensemble_sizes"]]
      + list(AUGMENTATIONS[1:])
      + ["data"]
      + [interpolation_row(w) for w in s["interpolation"]]
  )


def stage(row: str, seed: int) -> str:
  return f"{row}_s{seed}"


def row_spec(s: dict, row: str, seed: int) -> dict:
  """What one student stage does: its teachers, augmentation, data and starting point."""
  members = int(row[1:]) if row[1:].isdigit() else 1  # "m3": 3 teachers
  teachers = [(seed + j) % s["teachers"] for j in range(members)]
  weights = {interpolation_row(w): w for w in s["interpolation"]}
  return {
      "teachers": teachers,
      "augmentation": row if row in AUGMENTATIONS else "baseline",
      "train_split": s["other_data"][0] if row == "data" else s["train"][0],
      "init_weight": weights.get(row),
  }


def pair_stage(seed: int) -> str:
  return f"pair_s{seed}"


def _transforms(s: dict, *, train: bool, noise: bool = False) -> tuple:
  out = ["NormalizeImage"]
  if train:
    out.append({"name": "PadCropFlip", "padding": s["padding"]})
  if s["pool"]:
    out.append({"name": "AveragePoolImage", "factor": s["pool"]})
  if noise:  # after pooling, so that σ is the noise on the pixels the network sees
    out.append({"name": "GaussianNoise", "stddev": s["noise_stddev"]})
  return tuple(out)


def _run(s: dict, *, steps_: int, batch: int, seed: int) -> ml_collections.ConfigDict:
  c = default_config()
  c.seed = seed
  c.dataset = s["dataset"]
  c.num_classes = s["num_classes"]
  c.train_split, c.eval_split = s["train"][0], s["test_split"]
  # Agreement (and accuracy) on the teachers' train set, clean views: the data distilled on.
  c.evals = ml_collections.ConfigDict({"train_split": {"kind": "metrics", "split": s["train"][0]}})
  model, kwargs = s["model"]
  c.model, c.model_kwargs = model, ml_collections.ConfigDict(kwargs)
  c.batch_size = batch
  c.eval_batch_size = 500
  c.total_steps = steps_
  c.log_every = max(1, steps_ // 100)  # the report's training curves
  c.checkpoint_every = max(1, steps_ // 4)
  c.max_to_keep = 1
  c.progress_bar = False
  c.optimizer.weight_decay = s["weight_decay"]
  c.eval_transforms = _transforms(s, train=False)
  c.train_transforms = _transforms(s, train=True)
  return c


def _teacher_specs(s: dict, indices) -> tuple:
  model, kwargs = s["model"]
  return tuple(
      ml_collections.ConfigDict(
          {"model": model, "model_kwargs": kwargs, "workdir": teacher_stage(i)}
      )
      for i in indices
  )


def student_config(s: dict, row: str, seed: int) -> ml_collections.ConfigDict:
  spec = row_spec(s, row, seed)
  c = _run(s, steps_=steps(s, "student"), batch=s["student_batch"], seed=seed)
  c.train_split = spec["train_split"]
  c.method = ml_collections.ConfigDict({"name": "vanilla_kd", "temperature": 4.0, "alpha": 0.0})
  c.optimizer.learning_rate = 0.05
  c.optimizer.nesterov = True
  c.optimizer.end_learning_rate = 1e-6
  if spec["augmentation"] == "mixup":
    c.batch_transforms = ({"name": "mixup", "alpha": 1.0},)
  elif spec["augmentation"] == "noise":
    c.train_transforms = _transforms(s, train=True, noise=True)
  c.teachers = _teacher_specs(s, spec["teachers"])
  if spec["init_weight"] is not None:
    c.init_from = ml_collections.ConfigDict(
        {
            "workdir": teacher_stage(spec["teachers"][0]),
            "interpolate": {"with": "random", "weight": spec["init_weight"]},
        }
    )
  return c


def pair_config(s: dict, seed: int) -> ml_collections.ConfigDict:
  """Teacher seed + 1 evaluated as the 'student' of teacher seed: no training (0 steps)."""
  c = _run(s, steps_=0, batch=s["student_batch"], seed=seed)
  c.method = ml_collections.ConfigDict({"name": "vanilla_kd", "temperature": 4.0, "alpha": 0.0})
  c.teachers = _teacher_specs(s, [seed % s["teachers"]])
  c.init_from = ml_collections.ConfigDict({"workdir": teacher_stage((seed + 1) % s["teachers"])})
  return c


def build(s: dict) -> ml_collections.ConfigDict:
  """The staged config of settings `s` (teachers, then per seed the pair and every row)."""
  stages = ml_collections.ConfigDict()
  order = []
  for index in range(s["teachers"]):
    c = _run(s, steps_=steps(s, "teacher"), batch=s["teacher_batch"], seed=1000 + index)
    c.method = ml_collections.ConfigDict({"name": "supervised"})
    c.optimizer.learning_rate = 0.1
    stages[teacher_stage(index)] = c
    order.append(teacher_stage(index))
  for seed in s["seeds"]:
    stages[pair_stage(seed)] = pair_config(s, seed)
    order.append(pair_stage(seed))
    for row in student_rows(s):
      stages[stage(row, seed)] = student_config(s, row, seed)
      order.append(stage(row, seed))
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  return config


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  return build(settings(variant))
