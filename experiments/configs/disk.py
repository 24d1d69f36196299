"""DiSK table (Kag et al., ICLR 2023; PAPERS.md §4): students of decreasing capacity, each first
trained with CE, then continued from that CE checkpoint by CE, KD, FitNets, AT and DiSK.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce disk --variant=cpu --workdir=/tmp/kd_disk_cpu

Protocol (the official recipe, PAPERS.md §4 and its code): a validation split is held out of
train. Per student and seed, a CE run from scratch gives the CE checkpoint (its final state; the
"CE" row and the starting line). Every other row starts from that checkpoint (`init_from`:
params and BatchNorm statistics, optimiser fresh) and trains the student for the same number of
epochs, in rounds: DiSK warms its gate up for a few epochs with the student frozen, then
alternates `student_epochs` student epochs and `gate_epochs` gate epochs per round; the baselines
train `student_epochs` epochs per round. Every row has the same student optimiser: SGD lr 0.1,
weight decay 1e-5, a cosine stepped once per round with warm restarts every quarter of the
rounds. The student is evaluated on validation after every round and before the first (round 0 =
the CE checkpoint); the best round is the row's model (the official code chose it on the test
set). "CE continued" trains the CE checkpoint on labels for the same rounds, so a gain over it is
the teacher's, not the extra epochs'. Tuned methods run their candidate values (GRIDS) with seed 0;
the other seeds take the one best on validation (`choices`), and the report gives mean ± std over
seeds on the test split. DiSK's gate steps come on top of the student's (a frozen student costs
one forward pass).

Variants:
  cpu    Fashion-MNIST (real data): teacher ResNet10_m trained on train[:54000]; students
         ResNet10_s and ResNet10_xxxs (the middle one of the earlier table dropped) on
         train[:12800] (100 steps of 128 per epoch): CE 8 epochs from scratch (weight decay 5e-4,
         one cosine), then 8 rounds of 1 student epoch (+ 1 gate epoch for DiSK, after a 1-epoch
         gate warm-up): 16 student epochs per row, 4x the earlier table's 4; learning-rate
         restarts every 2 rounds; validation train[54000:], test the 10 000 test images; seeds
         0, 1, 2. DiSK: gate width 64 on the teacher's stage-3 map, K = 2 of 10 classes, λ cosine
         between λ_min = 1 and λ ∈ {5, 20} (tuned) over 2 rounds, δ ∈ [0.4, 0.6] over 2 rounds
         with δ_max × 0.9 every 2 (the code: 50 and 20 of its 200 rounds). FitNets and AT run
         the value validation chose for every student of the earlier table (hint_weight 10 —
         100 collapsed to chance —, weight 100). Runtime, estimated from timed short runs of
         every stage type (process CPU seconds per step, e.g. ResNet10_s: CE 0.22, KD 0.32,
         FitNets 0.28, AT 0.30, DiSK gate step 0.20) against the same costs of the earlier table
         (about an hour on 2 shared cores): about 1.35x its training work plus ~13 validation
         passes per row, i.e. 1.5 to 2 hours on 2 CPU cores.
  smoke  the same structure on a few MNIST-5k digits and a handful of steps, one DiSK candidate
         (SMOKE_GRIDS): the CI test.
  paper  CIFAR-100 as the paper and its code: teacher ResNet10_l; students ResNet10_m / _s / _xs
         / _xxs / _xxxs; CE 200 epochs (batch 200, lr 0.1, weight decay 5e-4, cosine); then 200
         rounds of 3 student + 3 gate epochs after 5 gate warm-up epochs, student and gate SGD lr
         0.1 with weight decay 1e-5 and per-round cosine restarts every 50 rounds; τ_t = 4,
         τ_s = 3.5, K = 10, λ cosine 1 → 5 over 50 rounds, δ ∈ [0.4, 0.6] over 20 rounds with
         δ_max × 0.9 every 20, gate width 256, l_aux 0.1, l_nll 0.9, max_ce 5; train transforms
         as the code: crop padded by 4 with grey 128, flip, AutoAugment (CIFAR-10 policy), Cutout
         16, normalisation by the CIFAR-100 mean and std. Needs an accelerator host with the
         CIFAR-100 TFDS data. Remaining deviations from the code: the CE checkpoint is the final
         CE state (the code kept the best on test), the best round is chosen on a 5 000-image
         validation split held out of train (the code: on test, training on all 50 000), weight
         decay on kernels only, no fresh gate momentum after the warm-up, and the λ / δ /
         learning-rate cosines are indexed by round r where the code's schedulers lag one round
         behind.
"""

from __future__ import annotations

import ml_collections

from experiments.configs._image_stage import add_tuned_method
from experiments.configs._image_stage import image_stage

METHODS = ("ce", "cecont", "kd", "fitnets", "at", "disk")
TUNED = ("kd", "fitnets", "at", "disk")
# The hyper-parameter each continued method tunes on validation, and its candidates.
GRIDS = {
    "kd": ("temperature", (2.0, 4.0)),
    "fitnets": ("hint_weight", (10.0,)),
    "at": ("weight", (100.0,)),
    "disk": ("lambda_max", (5.0, 20.0)),  # λ_min = 1, as the code
}
# Smoke: one DiSK candidate. A DiSK stage compiles a program per training phase, the costliest
# stage of the CI test; KD's two candidates still exercise the choice between candidates.
SMOKE_GRIDS = {"disk": ("lambda_max", (5.0,))}
PAPER_GRIDS = {
    "disk": ("lambda_max", (5.0,)),
    "fitnets": ("hint_weight", (10.0, 100.0)),
    "at": ("weight", (100.0, 1000.0)),
}

VARIANTS = {
    "cpu": dict(
        dataset="fashion_mnist",
        num_classes=10,
        teacher=("resnet10_m", 1200, "train[:54000]"),
        students=("resnet10_s", "resnet10_xxxs"),
        distill_split="train[:12800]",
        validation_split="train[54000:]",
        test_split="test",
        seeds=(0, 1, 2),
        batch=128,
        padding=2,
        ce_epochs=8,
        ce_weight_decay=5e-4,
        rounds=8,
        student_epochs=1,
        weight_decay=1e-5,
        restart_rounds=2,
        disk=dict(
            gate_width=64,
            gate_warmup_epochs=1,
            gate_epochs=1,
            lambda_min=1.0,
            lambda_period=2,
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
        padding=2,
        ce_epochs=2,
        ce_weight_decay=5e-4,
        rounds=2,
        student_epochs=1,
        weight_decay=1e-5,
        restart_rounds=1,
        disk=dict(
            gate_width=8,
            gate_warmup_epochs=1,
            gate_epochs=1,
            lambda_min=1.0,
            lambda_period=2,
            budget_period=1,
            top_k=2,
        ),
    ),
    "paper": dict(
        dataset="cifar100",
        num_classes=100,
        teacher=("resnet10_l", 45_000, "train[:45000]"),
        students=("resnet10_m", "resnet10_s", "resnet10_xs", "resnet10_xxs", "resnet10_xxxs"),
        distill_split="train[:45000]",
        validation_split="train[45000:]",
        test_split="test",
        seeds=(0, 1, 2),
        batch=200,
        padding=4,
        autoaugment=True,
        normalize=dict(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
        ce_epochs=200,
        ce_weight_decay=5e-4,
        rounds=200,
        student_epochs=3,
        weight_decay=1e-5,
        restart_rounds=50,
        disk=dict(
            gate_width=256,
            gate_warmup_epochs=5,
            gate_epochs=3,
            lambda_min=1.0,
            lambda_period=50,
            budget_period=20,
            top_k=10,
        ),
    ),
}


def settings(variant: str) -> dict:
  if variant not in VARIANTS:
    raise ValueError(f"disk.py variants are {sorted(VARIANTS)}, got {variant!r}.")
  return VARIANTS[variant]


def grid(variant: str, method: str) -> tuple[str, tuple]:
  if variant == "paper" and method in PAPER_GRIDS:
    return PAPER_GRIDS[method]
  if variant == "smoke" and method in SMOKE_GRIDS:
    return SMOKE_GRIDS[method]
  return GRIDS[method]


def ce_stage(student: str, seed: int) -> str:
  return f"{student}_ce_s{seed}"


def candidate_stage(student: str, method: str, value) -> str:
  return f"{student}_{method}_{value:g}_s0"


def seed_stage(student: str, method: str, seed: int) -> str:
  return f"{student}_{method}_s{seed}"


def steps_per_epoch(s: dict) -> int:
  """Steps of one epoch of the distillation split (written "train[:N]" here)."""
  return int(s["distill_split"].split("[:")[1].rstrip("]")) // s["batch"]


def round_steps(s: dict, method: str) -> tuple[int, int, int]:
  """(total steps, first evaluation step, steps per round) of a continued run: the baselines
  train `student_epochs` per round; DiSK adds its warm-up and `gate_epochs` per round, and leaves
  out the last round's gate epochs (they would not change the student). Either way the student
  gets rounds × student_epochs epochs and is evaluated at the start of round 1 (= the CE
  checkpoint) and at the end of every round."""
  spe, rounds = steps_per_epoch(s), s["rounds"]
  if method != "disk":
    every = s["student_epochs"] * spe
    return rounds * every, 0, every
  d = s["disk"]
  warmup, every = d["gate_warmup_epochs"] * spe, (s["student_epochs"] + d["gate_epochs"]) * spe
  return warmup + rounds * every - d["gate_epochs"] * spe, warmup, every


def _run(s: dict, model: str, steps: int, train_split: str, seed: int) -> ml_collections.ConfigDict:
  c = image_stage(
      s,
      model=model,
      steps=steps,
      batch=s["batch"],
      train_split=train_split,
      seed=seed,
      learning_rate=0.1,
      weight_decay=s["ce_weight_decay"],
      log_points=20,
  )
  normalize = {"name": "NormalizeImage", **s.get("normalize", {})}
  crop = {"name": "PadCropFlip", "padding": s["padding"]}
  if s.get("autoaugment"):  # the code's CIFAR train transforms: crop padded with 128, AA, Cutout
    c.train_transforms = (
        {**crop, "fill": 128},
        "AutoAugmentCifar",
        {"name": "Cutout", "size": 16},
        normalize,
    )
  else:
    c.train_transforms = (normalize, crop)
  c.eval_transforms = (normalize,)
  return c


def method_config(variant: str, method: str, value=None) -> dict:
  s = settings(variant)
  if method in ("ce", "cecont"):
    return {"name": "supervised"}
  key, _ = grid(variant, method)
  if method == "kd":  # RepDistiller's KD baseline: 0.9 KD + 0.1 CE
    return {"name": "vanilla_kd", "alpha": 0.1, key: value}
  if method == "fitnets":
    return {"name": "fitnets", "ce_weight": 1.0, key: value}
  if method == "at":
    return {"name": "at", "ce_weight": 1.0, key: value}
  return {
      "name": "disk",
      "teacher_stage": 2,
      "student_epochs": s["student_epochs"],
      "gate_restart_rounds": s["restart_rounds"],
      **s["disk"],
      key: value,
  }


def ce_run(variant: str, student: str, seed: int) -> ml_collections.ConfigDict:
  """The CE checkpoint: the student from scratch on labels (the code's train_CE recipe)."""
  s = settings(variant)
  c = _run(s, student, s["ce_epochs"] * steps_per_epoch(s), s["distill_split"], seed)
  c.method = ml_collections.ConfigDict({"name": "supervised"})
  return c


def student_run(variant: str, student: str, method: str, seed: int, value=None):
  """A run continued from the CE checkpoint of (student, seed) for the table's rounds."""
  s = settings(variant)
  steps, first, every = round_steps(s, method)
  c = _run(s, student, steps, s["distill_split"], seed)
  c.method = ml_collections.ConfigDict(method_config(variant, method, value))
  c.init_from = ml_collections.ConfigDict({"workdir": ce_stage(student, seed)})
  round_updates = s["student_epochs"] * steps_per_epoch(s)  # schedule steps count student updates
  c.optimizer.weight_decay = s["weight_decay"]
  c.optimizer.restart_steps = s["restart_rounds"] * round_updates
  c.optimizer.hold_steps = round_updates
  evals = {"validation": {"kind": "metrics", "split": s["validation_split"]}}
  evals["validation"].update(every=every, first=first)
  if method == "disk":  # the gate diagnostics per round (never used for a choice)
    evals["test_rounds"] = {"kind": "metrics", "split": s["test_split"], "every": every}
    evals["test_rounds"]["first"] = first
  c.evals = ml_collections.ConfigDict(evals)
  c.model_selection = ml_collections.ConfigDict(
      dict(evaluator="validation", metric="accuracy", mode="max", patience=0)
  )
  if method != "cecont":
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
    for seed in s["seeds"]:
      stages[ce_stage(student, seed)] = ce_run(variant, student, seed)
      order.append(ce_stage(student, seed))
    for seed in s["seeds"]:
      stages[seed_stage(student, "cecont", seed)] = student_run(variant, student, "cecont", seed)
      order.append(seed_stage(student, "cecont", seed))
    for method in TUNED:
      _, values = grid(variant, method)
      add_tuned_method(
          stages,
          order,
          choices,
          values,
          s["seeds"],
          candidate=lambda v: (
              candidate_stage(student, method, v),
              student_run(variant, student, method, s["seeds"][0], v),
          ),
          later_seed=lambda seed: (
              seed_stage(student, method, seed),
              student_run(variant, student, method, seed, values[0]),
          ),
      )
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  config.choices = ml_collections.ConfigDict(choices)
  return config
