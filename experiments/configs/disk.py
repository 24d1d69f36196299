"""DiSK table (Kag et al., ICLR 2023; PAPERS.md §4): CE / KD / FitNets / AT / DiSK for students of
decreasing capacity distilled from one ResNet10-family teacher.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce disk --variant=cpu --workdir=/tmp/kd_disk_cpu

Protocol: a validation split is held out of train. Each method's key hyper-parameter has two
candidate values, run with seed 0 for every student; the other seeds take the candidate with the
best validation accuracy (`choices`, kd_jax.train.choices), and the report gives mean ± std over
seeds on the test split. CE has nothing to tune. Every distilled student gets the same number of
student updates; DiSK adds its gate-only steps on top (a frozen student costs a forward pass).

Variants:
  cpu    Fashion-MNIST (real data): teacher ResNet10_m trained on train[:54000]; students
         ResNet10_s, _xxs, _xxxs distilled on train[:12800] (100 steps of 128 per epoch, 400
         student updates), validation train[54000:], test = the 10 000 test images. DiSK: gate
         width 64 on the teacher's stage-3 map, 1 gate warm-up epoch then alternating single
         student / gate epochs, K = 2 for 10 classes, a constant λ ∈ {5, 20} (see GRIDS).
         Sized for ~90 minutes on 2 cores.
  smoke  the same structure on a few MNIST-5k digits and a handful of steps: the CI test.
  paper  CIFAR-100 with the paper's settings (PAPERS.md §4): teacher ResNet10_l, students
         ResNet10_m / _s / _xs / _xxs / _xxxs, 200 epochs of batch 200, SGD lr 0.1 cosine (the
         code restarts every 50 epochs; here one cosine), τ_t = 4, τ_s = 3.5, K = 10, λ = 5
         (λ_min 1, T_i 50), δ ∈ [0.4, 0.6], gate width 256, 5 warm-up epochs, 3 + 3 passes per
         round; needs an accelerator host with the CIFAR-100 TFDS data.
"""

from __future__ import annotations

import ml_collections

from kd_jax.train import choices as choices_lib
from kd_jax.train.config import default_config

METHODS = ("ce", "kd", "fitnets", "at", "disk")
# The hyper-parameter each method tunes on validation, and its candidates.
GRIDS = {
    "kd": ("temperature", (2.0, 4.0)),
    "fitnets": ("hint_weight", (10.0, 100.0)),
    "at": ("weight", (100.0, 1000.0)),
    # λ, constant over the run (λ_min = λ): at the paper's λ_min = 1 the gate saturated at g = 1
    # during warm-up on 10 classes in a first cpu run (budget pull λ·b_i/n_err below the push of
    # L_DiSK), so λ is what is tuned here; K = 2 is what validation chose in that run among {2, 5}.
    "disk": ("lambda", (5.0, 20.0)),
}

VARIANTS = {
    "cpu": dict(
        dataset="fashion_mnist",
        num_classes=10,
        teacher=("resnet10_m", 1200, "train[:54000]"),
        students=("resnet10_s", "resnet10_xxs", "resnet10_xxxs"),
        distill_split="train[:12800]",
        validation_split="train[54000:]",
        test_split="test",
        seeds=(0, 1, 2),
        batch=128,
        student_updates=400,
        padding=2,
        weight_decay=5e-4,
        disk=dict(
            gate_width=64,
            gate_warmup_epochs=1,
            student_epochs=1,
            gate_epochs=1,
            lambda_period=4,
            budget_period=2,
            top_k=2,
        ),
    ),
    "smoke": dict(
        dataset="mnist5k",
        num_classes=10,
        teacher=("resnet10_xxs", 10, "train[:512]"),
        students=("resnet10_xxxs",),
        distill_split="train[:64]",
        validation_split="validation[:128]",
        test_split="test[:128]",
        seeds=(0, 1),
        batch=32,
        student_updates=4,
        padding=2,
        weight_decay=5e-4,
        disk=dict(
            gate_width=8,
            gate_warmup_epochs=1,
            student_epochs=1,
            gate_epochs=1,
            lambda_period=2,
            budget_period=2,
            top_k=2,
        ),
    ),
    "paper": dict(
        dataset="cifar100",
        num_classes=100,
        teacher=("resnet10_l", 50_000, "train[:45000]"),
        students=("resnet10_m", "resnet10_s", "resnet10_xs", "resnet10_xxs", "resnet10_xxxs"),
        distill_split="train[:45000]",
        validation_split="train[45000:]",
        test_split="test",
        seeds=(0, 1, 2),
        batch=200,
        student_updates=45_000,  # 200 epochs of 225 steps
        padding=4,
        weight_decay=5e-4,
        disk=dict(
            gate_width=256,
            gate_warmup_epochs=5,
            student_epochs=3,
            gate_epochs=3,
            lambda_period=50,
            budget_period=20,
        ),
    ),
}
PAPER_GRIDS = {"disk": ("top_k", (10,))}  # the paper's K for 100 classes


def settings(variant: str) -> dict:
  if variant not in VARIANTS:
    raise ValueError(f"disk.py variants are {sorted(VARIANTS)}, got {variant!r}.")
  return VARIANTS[variant]


def grid(variant: str, method: str) -> tuple[str, tuple]:
  if variant == "paper" and method in PAPER_GRIDS:
    return PAPER_GRIDS[method]
  return GRIDS[method]


def candidate_stage(student: str, method: str, value) -> str:
  return f"{student}_{method}_{value:g}_s0"


def seed_stage(student: str, method: str, seed: int) -> str:
  return f"{student}_{method}_s{seed}"


def disk_total_steps(s: dict, steps_per_epoch: int) -> int:
  """Steps that give DiSK's student `student_updates` updates: warm-up, then student and gate
  epochs in alternation (a final gate phase would not change the student, so it is left out)."""
  d = s["disk"]
  student_epochs = s["student_updates"] // steps_per_epoch
  rounds, rest = divmod(student_epochs, d["student_epochs"])
  gate_epochs = d["gate_warmup_epochs"] + d["gate_epochs"] * (rounds - (rest == 0))
  return (student_epochs + gate_epochs) * steps_per_epoch


def _split_size(split: str) -> int:
  """Examples of a "train[:N]" split (the distillation splits here are written that way)."""
  return int(split.split("[:")[1].rstrip("]"))


def _run(s: dict, model: str, steps: int, train_split: str, seed: int) -> ml_collections.ConfigDict:
  c = default_config()
  c.seed = seed
  c.dataset = s["dataset"]
  c.num_classes = s["num_classes"]
  c.train_split, c.validation_split, c.eval_split = (
      train_split,
      s["validation_split"],
      s["test_split"],
  )
  c.evals = ml_collections.ConfigDict(
      {"validation": {"kind": "metrics", "split": s["validation_split"]}}
  )
  c.model = model
  c.batch_size = s["batch"]
  c.eval_batch_size = 500
  c.total_steps = steps
  c.log_every = max(1, steps // 10)
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = s["weight_decay"]
  c.train_transforms = ("NormalizeImage", {"name": "PadCropFlip", "padding": s["padding"]})
  c.eval_transforms = ("NormalizeImage",)
  return c


def method_config(variant: str, method: str, value=None) -> dict:
  s = settings(variant)
  if method == "ce":
    return {"name": "supervised"}
  key, _ = grid(variant, method)
  if method == "kd":  # RepDistiller's KD baseline: 0.9 KD + 0.1 CE
    return {"name": "vanilla_kd", "alpha": 0.1, key: value}
  if method == "fitnets":
    return {"name": "fitnets", "ce_weight": 1.0, key: value}
  if method == "at":
    return {"name": "at", "ce_weight": 1.0, key: value}
  if key == "lambda":  # a constant λ: both ends of the cosine schedule
    return {
        "name": "disk",
        "teacher_stage": 2,
        **s["disk"],
        "lambda_min": value,
        "lambda_max": value,
    }
  return {"name": "disk", "teacher_stage": 2, **s["disk"], key: value}


def student_run(variant: str, student: str, method: str, seed: int, value=None):
  s = settings(variant)
  steps_per_epoch = _split_size(s["distill_split"]) // s["batch"]
  steps = s["student_updates"]
  if method == "disk":
    steps = disk_total_steps(s, steps_per_epoch)
  c = _run(s, student, steps, s["distill_split"], seed)
  c.method = ml_collections.ConfigDict(method_config(variant, method, value))
  c.teachers = (
      ml_collections.ConfigDict(
          {"model": s["teacher"][0], "model_kwargs": {}, "workdir": "teacher"}
      ),
  )
  return c


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = settings(variant)
  teacher_model, teacher_steps, teacher_split = s["teacher"]
  stages = ml_collections.ConfigDict()
  teacher = _run(s, teacher_model, teacher_steps, teacher_split, seed=1000)
  teacher.method = ml_collections.ConfigDict({"name": "supervised"})
  stages["teacher"] = teacher
  order, choices = ["teacher"], {}
  for student in s["students"]:
    for method in METHODS:
      if method == "ce":
        for seed in s["seeds"]:
          stages[seed_stage(student, method, seed)] = student_run(variant, student, method, seed)
          order.append(seed_stage(student, method, seed))
        continue
      _, values = grid(variant, method)
      candidates = []
      for value in values:
        name = candidate_stage(student, method, value)
        stages[name] = student_run(variant, student, method, 0, value)
        candidates.append(name)
      order += candidates
      for seed in s["seeds"][1:]:
        name = seed_stage(student, method, seed)
        # The method is replaced by the best candidate's before the stage runs.
        stages[name] = student_run(variant, student, method, seed, values[0])
        order.append(name)
        choices[name] = choices_lib.best_validation_accuracy(candidates)
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  config.choices = ml_collections.ConfigDict(choices)
  return config
