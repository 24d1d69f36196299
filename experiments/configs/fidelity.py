"""Fidelity study (Stanton et al., NeurIPS 2021, "Does knowledge distillation really work?").

Reproduces the structure of the paper's Table 2 and its augmentation finding (docs/PAPERS.md §6):
independent teachers are trained with cross-entropy; students are distilled (τ = 4, α = 0, the
teacher is queried on exactly the student's augmented / mixed batch) from ensembles of the first
m ∈ {1, 3, 5} teachers, and — with one teacher — under three augmentation policies: baseline
(pad-crop-flip), MixUp (λ ~ Beta(1, 1) = U[0, 1], teacher relabels the mixed input) and Gaussian
input noise. Each student setting is run with 3 seeds; the report gives mean ± std of teacher
accuracy, student accuracy, top-1 agreement and predictive KL on the held-out test split.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce fidelity --variant=cpu --workdir=/tmp/kd_fidelity_cpu

Variants:
  cpu    Fashion-MNIST (60 000 / 10 000, real data), PreAct ResNet-8 with 16/32/64 filters as
         teacher and PreAct ResNet-8 with 8/16/32 filters as student: 5 teachers (500 steps of
         128, about one epoch) and 15 student runs (300 steps of 128), sized to fit one 2-core
         CPU session. Measured results, and which of the paper's findings they reproduce (not
         all do at this size): experiments/results/fidelity_cpu.md, written by the command.
  smoke  the same grid structure with 2 teachers, m ∈ {1, 2}, 1 seed and a few steps: the CI test.
  paper  CIFAR-100, PreAct ResNet-56 teachers (200 epochs, batch 256, SGD lr 0.1 cosine,
         wd 1e-4) and students (300 epochs, batch 128, SGD Nesterov lr 5e-2 → 1e-6 cosine),
         m ∈ {1, 3, 5}; needs a GPU/TPU host with the CIFAR-100 TFDS data.
"""

from __future__ import annotations

import ml_collections

from kd_jax.train.config import default_config

AUGMENTATIONS = ("baseline", "mixup", "noise")


def _settings(variant: str) -> dict:
  if variant == "cpu":
    return dict(
        dataset="fashion_mnist",
        num_classes=10,
        teachers=5,
        ensemble_sizes=(1, 3, 5),
        seeds=(0, 1, 2),
        teacher_model=("preact_resnet20", dict(depth=8, widths=(16, 32, 64))),
        student_model=("preact_resnet20", dict(depth=8, widths=(8, 16, 32))),
        teacher_steps=500,
        teacher_batch=128,
        student_steps=300,
        student_batch=128,
        padding=2,
        noise_stddev=0.1,
        teacher_lr=0.1,
        student_lr=0.05,
        weight_decay=1e-4,
    )
  if variant == "smoke":
    return dict(
        dataset="mnist5k",
        num_classes=10,
        teachers=2,
        ensemble_sizes=(1, 2),
        seeds=(0,),
        teacher_model=("preact_resnet20", dict(depth=8, widths=(4, 8, 8))),
        student_model=("preact_resnet20", dict(depth=8, widths=(4, 4, 8))),
        teacher_steps=12,
        teacher_batch=32,
        student_steps=8,
        student_batch=32,
        padding=2,
        noise_stddev=0.1,
        teacher_lr=0.1,
        student_lr=0.05,
        weight_decay=1e-4,
    )
  if variant == "paper":
    # 200 epochs of 50 000 images at batch 256 ≈ 39 000 steps; 300 epochs at 128 ≈ 117 000.
    return dict(
        dataset="cifar100",
        num_classes=100,
        teachers=5,
        ensemble_sizes=(1, 3, 5),
        seeds=(0, 1, 2),
        teacher_model=("preact_resnet56", {}),
        student_model=("preact_resnet56", {}),
        teacher_steps=39_063,
        teacher_batch=256,
        student_steps=117_188,
        student_batch=128,
        padding=4,
        noise_stddev=0.1,
        teacher_lr=0.1,
        student_lr=0.05,
        weight_decay=1e-4,
    )
  raise ValueError(f"fidelity.py variants are 'cpu', 'smoke' and 'paper', got {variant!r}.")


def _run(s: dict, *, steps: int, batch: int, seed: int) -> ml_collections.ConfigDict:
  c = default_config()
  c.seed = seed
  c.dataset = s["dataset"]
  c.num_classes = s["num_classes"]
  c.batch_size = batch
  c.eval_batch_size = 500
  c.total_steps = steps
  c.log_every = max(1, steps // 20)
  c.checkpoint_every = max(1, steps // 2)
  c.max_to_keep = 1
  c.optimizer.weight_decay = s["weight_decay"]
  c.eval_transforms = ("NormalizeImage",)
  c.train_transforms = ("NormalizeImage", {"name": "PadCropFlip", "padding": s["padding"]})
  return c


def teacher_stage(index: int) -> str:
  return f"teacher_{index}"


def student_stage(members: int, augmentation: str, seed: int) -> str:
  return f"student_m{members}_{augmentation}_s{seed}"


def student_grid(s: dict) -> list[tuple[int, str, int]]:
  """(m, augmentation, seed): every ensemble size with the baseline augmentation, plus MixUp
  and Gaussian noise with a single teacher (the paper's augmentation study distils one teacher)."""
  grid = []
  for seed in s["seeds"]:
    for members in s["ensemble_sizes"]:
      grid.append((members, "baseline", seed))
    for augmentation in AUGMENTATIONS[1:]:
      grid.append((s["ensemble_sizes"][0], augmentation, seed))
  return grid


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = _settings(variant)
  stages = ml_collections.ConfigDict()
  teacher_name, teacher_kwargs = s["teacher_model"]
  for index in range(s["teachers"]):
    c = _run(s, steps=s["teacher_steps"], batch=s["teacher_batch"], seed=1000 + index)
    c.model, c.model_kwargs = teacher_name, ml_collections.ConfigDict(teacher_kwargs)
    c.method = ml_collections.ConfigDict({"name": "supervised"})
    c.optimizer.learning_rate = s["teacher_lr"]
    stages[teacher_stage(index)] = c
  student_name, student_kwargs = s["student_model"]
  for members, augmentation, seed in student_grid(s):
    c = _run(s, steps=s["student_steps"], batch=s["student_batch"], seed=seed)
    c.model, c.model_kwargs = student_name, ml_collections.ConfigDict(student_kwargs)
    c.method = ml_collections.ConfigDict({"name": "vanilla_kd", "temperature": 4.0, "alpha": 0.0})
    c.optimizer.learning_rate = s["student_lr"]
    c.optimizer.nesterov = True
    c.optimizer.end_learning_rate = 1e-6
    if augmentation == "mixup":
      c.batch_transforms = ({"name": "mixup", "alpha": 1.0},)
    elif augmentation == "noise":
      c.train_transforms = c.train_transforms + (
          {"name": "GaussianNoise", "stddev": s["noise_stddev"]},
      )
    c.teachers = tuple(
        ml_collections.ConfigDict(
            {"model": teacher_name, "model_kwargs": teacher_kwargs, "workdir": teacher_stage(i)}
        )
        for i in range(members)
    )
    stages[student_stage(members, augmentation, seed)] = c
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(
      [teacher_stage(i) for i in range(s["teachers"])]
      + [student_stage(*cell) for cell in student_grid(s)]
  )
  return config
