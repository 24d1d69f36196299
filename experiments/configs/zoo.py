"""Method zoo table: CE, KD and the distillation methods researchers compare against (DKD, DIST,
FitNets, AT, RKD, CRD, PKT, SP, NST, VID, ReviewKD, OFD) on one teacher → student pair per setting.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce zoo --variant=cpu --workdir=/tmp/kd_zoo_cpu

Protocol: a validation split is held out of train. Every method starts from its published
CIFAR-100 recipe (RECIPES: the papers' official code, RepDistiller's flags for the older
baselines); its key weight has two candidates (GRIDS: the published value and one other), run
with seed 0; the other seeds take the candidate with the best validation accuracy (`choices`,
kd_jax.train.choices), and the report gives mean ± std over seeds on the test split. CE has nothing
to tune. Every student gets the same number of updates; the warm-ups of DKD and ReviewKD (20 of 240
epochs in their papers) are scaled to the run's length.

Variants:
  cpu    Fashion-MNIST (real data): teacher ResNet10_m (DiSK's family, 4 stages) trained on
         train[:54000] for 1200 steps of 128; student ResNet10_xxs distilled on a fixed
         train[:6400] for 8 epochs (400 updates of 128), validation train[54000:], test = the
         10 000 test images; SGD lr 0.1 cosine, wd 5e-4, pad-crop-flip; CRD's queue 4096 (< the
         6400 examples). 3 CE runs + 13 methods × (2 candidates + 2 seeds) = 55 student runs.
         Runtime estimate ≈ 140 min on 2 idle cores, from a pilot of short real stages of this
         config (40 steps each, nice 15 on the shared 2-core machine at load 6-14), in process
         CPU seconds, counted as wall seconds as in the other tables: per step teacher 0.45,
         KD 0.24, VID 0.33, ReviewKD 0.46 (its fusion convolutions at the teacher's size), OFD
         0.26; start-up and the final validation / test evaluations ≈ 35 s per stage. The 9
         other methods and CE taken at KD's cost (an upper bound for CE, which has no teacher
         pass): teacher 9 min + 55 × 35 s overheads 32 min + 400 steps of every student run
         97 min. Cut to fit: the first version trained 16 epochs (≈ 236 min by the same count);
         the 2 candidates per method are kept, so each weight is still chosen on validation.
         Whether 8 epochs reach the students' plateau is not yet measured. Config ready; the cpu
         table has not been run yet.
  smoke  MNIST-5k digits, ResNet10_xxs → ResNet10_xxxs, a handful of steps, 2 seeds and the
         methods that exercise every new path of the zoo (DKD's warm-up, DIST's batch coupling,
         ReviewKD's fusion modules, OFD's pre-ReLU outputs); only DKD runs both candidates of
         its weight (SMOKE_TUNED), the others their first: the CI test.
  paper  CIFAR-100, resnet56 → resnet20 and resnet32x4 → resnet8x4 (RepDistiller's networks),
         teachers and students 240 epochs of batch 64, SGD lr 0.05, wd 5e-4, each method at its
         published value for the pair (DKD β = 2 / 8, ReviewKD weight 0.6 / 5), 3 seeds; listed
         deviations: one cosine schedule instead of ×0.1 steps at epochs 150, 180, 210, training on
         train[:45000] (train[45000:] is the validation split), CRD's FIFO queue and InfoNCE form
         instead of its memory bank; needs an accelerator host with the CIFAR-100 TFDS data. The
         report prints beside ours the published numbers docs/PAPERS.md gives (KD and CRD for
         both pairs) and "not in PAPERS.md" for every other row.
"""

from __future__ import annotations

import ml_collections

from experiments.configs._image_stage import add_tuned_method
from experiments.configs._image_stage import image_stage

METHODS = (
    "ce",
    "kd",
    "dkd",
    "dist",
    "fitnets",
    "at",
    "rkd",
    "crd",
    "pkt",
    "sp",
    "nst",
    "vid",
    "reviewkd",
    "ofd",
)
LOGIT_METHODS = ("kd", "dkd", "dist")
# (kd_jax method name, its published CIFAR-100 hyper-parameters beyond the method's defaults).
RECIPES = {
    "ce": ("supervised", {}),
    "kd": ("vanilla_kd", {"alpha": 0.1, "temperature": 4.0}),  # RepDistiller: 0.1 CE + 0.9 KD
    "fitnets": ("fitnets", {"hint_weight": 100.0, "ce_weight": 1.0}),
    "at": ("at", {"weight": 1000.0, "ce_weight": 1.0}),
    "rkd": ("rkd", {"distance_weight": 25.0, "angle_weight": 50.0, "ce_weight": 1.0}),
    "crd": ("crd", {"weight": 0.8, "ce_weight": 1.0}),
    "dkd": ("dkd", {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}),
    "dist": ("dist", {"weight": 2.0}),
    "pkt": ("pkt", {"weight": 30_000.0}),
    "sp": ("sp", {"weight": 3000.0}),
    "nst": ("nst", {"weight": 50.0}),
    "vid": ("vid", {"weight": 1.0}),
    "reviewkd": ("reviewkd", {"weight": 1.0}),
    "ofd": ("ofd", {"weight": 1e-3}),
}
# The key weight tuned on validation and its two candidates: the published value and a tenth of it
# (feature losses scale with the feature maps, which differ from CIFAR's), or the two values the
# paper itself uses for different pairs (DKD's β, ReviewKD's weight). "rkd_scale" multiplies both
# of RKD's weights.
GRIDS = {
    "kd": ("temperature", (2.0, 4.0)),
    "fitnets": ("hint_weight", (10.0, 100.0)),
    "at": ("weight", (100.0, 1000.0)),
    "rkd": ("rkd_scale", (0.1, 1.0)),
    "crd": ("weight", (0.2, 0.8)),
    "dkd": ("beta", (2.0, 8.0)),
    "dist": ("weight", (1.0, 2.0)),
    "pkt": ("weight", (3000.0, 30_000.0)),
    "sp": ("weight", (300.0, 3000.0)),
    "nst": ("weight", (5.0, 50.0)),
    "vid": ("weight", (0.1, 1.0)),
    "reviewkd": ("weight", (0.6, 5.0)),
    "ofd": ("weight", (1e-4, 1e-3)),
}
# The paper variant runs each method once per seed at the value published for the pair.
PAPER_VALUES = {
    ("resnet56", "resnet20"): {"dkd": 2.0, "reviewkd": 0.6},
    ("resnet32x4", "resnet8x4"): {"dkd": 8.0, "reviewkd": 5.0},
}
WARMUP_FRACTION = 20 / 240  # DKD's and ReviewKD's warm-up: 20 of 240 epochs

VARIANTS = {
    "cpu": dict(
        dataset="fashion_mnist",
        num_classes=10,
        pairs=(("resnet10_m", "resnet10_xxs"),),
        teacher_steps=1200,
        teacher_batch=128,
        teacher_split="train[:54000]",
        distill_split="train[:6400]",
        validation_split="train[54000:]",
        test_split="test",
        methods=METHODS,
        seeds=(0, 1, 2),
        batch=128,
        epochs=8,  # 16 would take ≈ 236 min (docstring): over the 2-core budget
        learning_rate=0.1,
        weight_decay=5e-4,
        padding=2,
        crd_queue=4096,
    ),
    "smoke": dict(
        dataset="mnist5k",
        num_classes=10,
        pairs=(("resnet10_xxs", "resnet10_xxxs"),),
        teacher_steps=10,
        teacher_batch=32,
        teacher_split="train[:512]",
        distill_split="train[:64]",
        validation_split="validation[:128]",
        test_split="test[:128]",
        methods=("ce", "dkd", "dist", "reviewkd", "ofd"),
        seeds=(0, 1),
        batch=32,
        epochs=2,
        learning_rate=0.1,
        weight_decay=5e-4,
        padding=2,
        crd_queue=64,
    ),
    "paper": dict(
        dataset="cifar100",
        num_classes=100,
        pairs=(("resnet56", "resnet20"), ("resnet32x4", "resnet8x4")),
        teacher_steps=168_750,  # 240 epochs of 45 000 images at batch 64
        teacher_batch=64,
        teacher_split="train[:45000]",
        distill_split="train[:45000]",
        validation_split="train[45000:]",
        test_split="test",
        methods=METHODS,
        seeds=(0, 1, 2),
        batch=64,
        epochs=240,
        learning_rate=0.05,
        weight_decay=5e-4,
        padding=4,
        crd_queue=16_384,
    ),
}


def settings(variant: str) -> dict:
  if variant not in VARIANTS:
    raise ValueError(f"zoo.py variants are {sorted(VARIANTS)}, got {variant!r}.")
  return VARIANTS[variant]


# At smoke size one method is enough to exercise the choice between candidates; the others run
# their first value only (fewer stages in the CI test).
SMOKE_TUNED = "dkd"


def grid(variant: str, pair: tuple, method: str) -> tuple[str, tuple]:
  """(key, candidates) of a tuned method: the two GRIDS values (at smoke size only for
  SMOKE_TUNED, the first for the others), or for the paper variant the one value published for
  the pair."""
  key, values = GRIDS[method]
  if variant == "smoke" and method != SMOKE_TUNED:
    return key, values[:1]
  if variant != "paper":
    return key, values
  if method in PAPER_VALUES[tuple(pair)]:
    return key, (PAPER_VALUES[tuple(pair)][method],)
  return key, (1.0 if key == "rkd_scale" else RECIPES[method][1][key],)


def teacher_stage(pair: tuple) -> str:
  return f"teacher_{pair[0]}"


def candidate_stage(pair: tuple, method: str, value) -> str:
  """E.g. "resnet10_xxs_rkd_0p1_s0" (stage names are config keys: no dots)."""
  return f"{pair[1]}_{method}_{value:g}_s0".replace(".", "p")


def seed_stage(pair: tuple, method: str, seed: int) -> str:
  return f"{pair[1]}_{method}_s{seed}"


def _split_size(split: str) -> int:
  """Examples of a "train[:N]" split (the distillation splits here are written that way)."""
  return int(split.split("[:")[1].rstrip("]"))


def steps_per_epoch(s: dict) -> int:
  return _split_size(s["distill_split"]) // s["batch"]


def method_config(variant: str, pair: tuple, method: str, value=None) -> dict:
  """The method's ConfigDict entries: its recipe, the tuned value, run-length-scaled warm-ups."""
  s = settings(variant)
  name, recipe = RECIPES[method]
  config = {"name": name, **recipe}
  if method == "ce":
    return config
  key, _ = grid(variant, pair, method)
  if key == "rkd_scale":
    config.update(distance_weight=25.0 * value, angle_weight=50.0 * value)
  else:
    config[key] = value
  if method in ("dkd", "reviewkd"):
    config["warmup_epochs"] = WARMUP_FRACTION * s["epochs"]
  if method == "crd":
    config["queue_size"] = s["crd_queue"]
  return config


def _run(s: dict, model: str, steps: int, batch: int, train_split: str, seed: int):
  c = image_stage(
      s,
      model=model,
      steps=steps,
      batch=batch,
      train_split=train_split,
      seed=seed,
      learning_rate=s["learning_rate"],
      weight_decay=s["weight_decay"],
      log_points=10,
  )
  c.train_transforms = ("NormalizeImage", {"name": "PadCropFlip", "padding": s["padding"]})
  c.eval_transforms = ("NormalizeImage",)
  return c


def student_run(variant: str, pair: tuple, method: str, seed: int, value=None):
  s = settings(variant)
  steps = s["epochs"] * steps_per_epoch(s)
  c = _run(s, pair[1], steps, s["batch"], s["distill_split"], seed)
  c.method = ml_collections.ConfigDict(method_config(variant, pair, method, value))
  c.teachers = (
      ml_collections.ConfigDict(
          {"model": pair[0], "model_kwargs": {}, "workdir": teacher_stage(pair)}
      ),
  )
  return c


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = settings(variant)
  stages, order, choices = ml_collections.ConfigDict(), [], {}
  for pair in s["pairs"]:
    teacher = _run(s, pair[0], s["teacher_steps"], s["teacher_batch"], s["teacher_split"], 1000)
    teacher.method = ml_collections.ConfigDict({"name": "supervised"})
    stages[teacher_stage(pair)] = teacher
    order.append(teacher_stage(pair))
    for method in s["methods"]:
      if method == "ce":
        for seed in s["seeds"]:
          stages[seed_stage(pair, method, seed)] = student_run(variant, pair, method, seed)
          order.append(seed_stage(pair, method, seed))
        continue
      _, values = grid(variant, pair, method)
      add_tuned_method(
          stages,
          order,
          choices,
          values,
          s["seeds"],
          candidate=lambda v: (
              candidate_stage(pair, method, v),
              student_run(variant, pair, method, 0, v),
          ),
          later_seed=lambda seed: (
              seed_stage(pair, method, seed),
              student_run(variant, pair, method, seed, values[0]),
          ),
      )
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  config.choices = ml_collections.ConfigDict(choices)
  return config
