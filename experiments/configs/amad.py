"""AMAD table (Zhao et al., AAAI-24; PAPERS.md §3): attention distillation across head counts.

Command (whole table, then the report in experiments/results/):
  python -m experiments.reproduce amad --variant=cpu --workdir=/tmp/kd_amad_cpu

Rows, per student head count H_s (teacher: H_t = 12 heads): CE; KD; KD + one-to-one attention
(H_s = H_t only: TinyBERT / MiniLM); KD + head-mean maps (TextBrewer); KD + head-pool (the
teacher's heads averaged in groups of H_t / H_s, then one to one: Tunix; for H_s = H_t it is
one-to-one, so it is not run twice); KD + AMAD mse / kl / learnable / token_kl. Every attention
row has the same logit terms, τ²·KL at τ = 4 plus CE with weights 1 and 1 (the KD row is
vanilla KD with α = 0.5, the same two terms at half the scale, which AdamW does not see), and
the same uniform layer map (student layer j ← the last teacher layer of the j-th block).

Protocol: a validation split is held out of train. Each attention row's weight has two
candidates (a decade apart, centred per row so that the term starts near KD + CE: AMAD sums over
heads and rows, the baselines average), run with seed 0 on the fewest-head student (the teacher's
count for one-to-one); every other run of that row takes the candidate with the best validation
accuracy (`choices`, kd_jax.train.choices) — the terms' scale does not depend on H_s.

Variants:
  cpu    Rotten Tomatoes (split by movie), 32 tokens: teacher the real MiniLM-L6 (12 heads,
         width 384) fine-tuned 250 AdamW steps of 32; 3-layer width-192 BERT students from
         scratch (MiniLM's weights fix 12 heads) with 4 and 12 heads, 150 steps. Fashion-MNIST:
         teacher a 4-layer ViT (width 96, 12 heads, patch 7) on train[:54000]; 2-layer width-48
         ViT students with 4, 6 and 12 heads, 400 steps of 128 on train[:12800]; validation
         train[54000:57000]. Seeds 0, 1, 2; 136 stages, estimated ~75 minutes on 2 idle cores.
         Cut to fit: BBC News and the 6-head text student (each ~25 more text runs, the
         costliest: a MiniLM forward every step), the layer-map choice (uniform; `paper` has
         it), per-head-count tuning, and training length.
  smoke  the same structure on tiny models (teacher 4 heads; students 2 and 4 heads) and a
         handful of steps on 200 Rotten Tomatoes snippets: the CI test.
  paper  GLUE through TFDS (glue/sst2, mrpc, rte, qnli, mnli; results on dev, choices on the
         last 5 % of train), teacher BERT-base (12 layers, 12 heads, HF directory in
         $KD_JAX_BERT_BASE) fine-tuned 3 epochs; 6-layer width-768 students with 4, 6 and 12
         heads from scratch. Images: CIFAR-100, a ViT-B-sized teacher (768, 12 layers, 12 heads,
         patch 4; from scratch — reconstruction: the paper distils BLIP's pretrained ViT) and
         6-layer width-384 students. Candidates: two weights × two layer maps (uniform; the
         teacher's last layers). Needs an accelerator and the TFDS data.
"""

from __future__ import annotations

import os

import ml_collections

from experiments.configs.reaugkd import GLUE
from kd_jax.train import choices as choices_lib
from kd_jax.train.config import default_config

ROWS = (
    "ce",
    "kd",
    "one_to_one",
    "head_mean",
    "head_pool",
    "amad_mse",
    "amad_kl",
    "amad_learnable",
    "amad_token_kl",
)
KD_TEMPERATURE = 4.0
# Attention weights tried per row. AMAD's kl variants sum a KL over every teacher head and query
# row (hundreds of rows), "mse" sums over teacher heads only, the baselines (KL distance) take
# means: the centres differ so that each term starts near the size of KD + CE.
WEIGHTS = {
    "one_to_one": (1.0, 10.0),
    "head_mean": (1.0, 10.0),
    "head_pool": (1.0, 10.0),
    "amad_mse": (0.1, 1.0),
    "amad_kl": (0.003, 0.03),
    "amad_learnable": (0.003, 0.03),
    "amad_token_kl": (0.003, 0.03),
}
TEXT_TEACHER_STEPS = 250
TEXT_STUDENT_STEPS = 150
# The smoke test runs one row of each kind (every row would be ~40 short stages).
SMOKE_ROWS = ("ce", "one_to_one", "head_pool", "amad_kl")
ALIGNMENT_EVALUATOR = "attention_alignment"
KEEP_TEXT = {"name": "KeepKeys", "keys": ("input_ids", "attention_mask", "label")}


def _text_task(dataset, classes, max_length, *, splits, text=None, teacher, student, **sizes):
  return dict(
      kind="text",
      dataset=dataset,
      num_classes=classes,
      max_length=max_length,
      text=text,
      splits=splits,
      teacher=("bert_classifier", teacher),
      student=("bert_classifier", student),
      **sizes,
  )


def _image_task(dataset, classes, *, splits, teacher, student, **sizes):
  return dict(
      kind="image",
      dataset=dataset,
      num_classes=classes,
      splits=splits,
      teacher=("vit_micro", teacher),
      student=("vit_micro", student),
      **sizes,
  )


def _vit(width, layers, heads, patch):
  return dict(
      hidden_size=width, num_layers=layers, num_heads=heads, mlp_dim=2 * width, patch_size=patch
  )


def _scratch_bert(width, layers, heads):
  return dict(
      init_from="scratch",
      num_layers=layers,
      hidden_size=width,
      num_heads=heads,
      intermediate_size=4 * width,
  )


def _cpu() -> dict:
  tasks = {
      "rt": _text_task(
          "rotten_tomatoes",
          2,
          32,
          splits=("train", "validation", "test"),
          teacher=dict(init_from="minilm", num_layers=6),
          student=_scratch_bert(192, 3, None),
          teacher_steps=TEXT_TEACHER_STEPS,
          teacher_lr=5e-5,
          student_steps=TEXT_STUDENT_STEPS,
          student_lr=5e-4,
          batch=32,
          eval_batch=128,
          warmup=20,
          heads=(4, 12),
      ),
      "fmnist": _image_task(
          "fashion_mnist",
          10,
          splits=("train[:12800]", "train[54000:57000]", "test"),
          teacher_split="train[:54000]",
          teacher=_vit(96, 4, 12, 7),
          student=_vit(48, 2, None, 7),
          teacher_steps=1200,
          teacher_lr=1e-3,
          student_steps=400,
          student_lr=1e-3,
          batch=128,
          eval_batch=500,
          warmup=20,
          heads=(4, 6, 12),
      ),
  }
  return dict(tasks=tasks, teacher_heads=12, seeds=(0, 1, 2), layer_maps=("uniform",), rows=ROWS)


def _smoke() -> dict:
  tiny = lambda layers, heads: dict(_scratch_bert(32, layers, heads), dropout=0.0)
  tasks = {
      "rt": _text_task(
          "rotten_tomatoes",
          2,
          16,
          splits=("train[:200]", "validation[:100]", "test[:100]"),
          teacher=tiny(2, 4),
          student=tiny(1, None),
          teacher_steps=8,
          teacher_lr=1e-3,
          student_steps=3,
          student_lr=1e-3,
          batch=16,
          eval_batch=50,
          warmup=0,
          heads=(2, 4),
      )
  }
  return dict(tasks=tasks, teacher_heads=4, seeds=(0, 1), layer_maps=("uniform",), rows=SMOKE_ROWS)


def _paper() -> dict:
  source = os.environ.get("KD_JAX_BERT_BASE", "")
  tasks = {}
  for task in ("sst2", "mrpc", "rte", "qnli", "mnli"):
    name, classes, keys, eval_split = GLUE[task]
    separator = " [SEP] " if len(keys) > 1 else ""
    tasks[task] = _text_task(
        name,
        classes,
        128,
        splits=("train[:95%]", "train[95%:]", eval_split),
        text={"name": "JoinText", "fields": keys, "separator": separator},
        teacher=dict(init_from=source, num_layers=12),
        student=_scratch_bert(768, 6, None),
        teacher_steps=3 * 12_000,
        teacher_lr=2e-5,
        student_steps=3 * 12_000,
        student_lr=1e-4,
        batch=32,
        eval_batch=256,
        warmup=1000,
        heads=(4, 6, 12),
    )
  tasks["cifar100"] = _image_task(
      "cifar100",
      100,
      splits=("train[:45000]", "train[45000:]", "test"),
      teacher_split="train[:45000]",
      teacher=_vit(768, 12, 12, 4) | {"mlp_dim": 3072},
      student=_vit(384, 6, None, 4),
      teacher_steps=100 * 352,
      teacher_lr=1e-3,
      student_steps=100 * 352,
      student_lr=1e-3,
      batch=128,
      eval_batch=500,
      warmup=2000,
      heads=(4, 6, 12),
  )
  return dict(
      tasks=tasks, teacher_heads=12, seeds=(0, 1, 2), layer_maps=("uniform", "last"), rows=ROWS
  )


VARIANTS = {"cpu": _cpu, "smoke": _smoke, "paper": _paper}
# The pair whose soft alignment a_ij the report draws (4 teacher-head groups per student head),
# and the CE student of the same shape as the reference without attention distillation.
ALIGNMENT_ROWS = ("amad_kl", "ce")
ALIGNMENT_SEED = 1


def settings(variant: str) -> dict:
  if variant not in VARIANTS:
    raise ValueError(f"amad.py variants are {sorted(VARIANTS)}, got {variant!r}.")
  return VARIANTS[variant]()


def rows(variant: str, heads: int) -> tuple[str, ...]:
  """The rows a student with `heads` heads has: one-to-one needs the teacher's head count,
  head-pool a proper divisor of it (with equal counts it is one-to-one)."""
  s = settings(variant)
  keep = []
  for row in s["rows"]:
    if row == "one_to_one" and heads != s["teacher_heads"]:
      continue
    if row == "head_pool" and (heads == s["teacher_heads"] or s["teacher_heads"] % heads):
      continue
    keep.append(row)
  return tuple(keep)


def tuning_heads(variant: str, task: str, row: str) -> int:
  """The student whose seed-0 runs choose `row`'s weight: the fewest heads (where bridging head
  counts matters most), or the teacher's count for one-to-one. The choice carries over to the
  other head counts: every attention term sums or averages over the teacher's heads, so its
  scale does not depend on the student's."""
  s = settings(variant)
  return s["teacher_heads"] if row == "one_to_one" else min(s["tasks"][task]["heads"])


def candidates(variant: str, row: str) -> tuple[tuple[float, str], ...]:
  """(attention weight, layer map) pairs tried for `row`; () for CE and KD (nothing to tune)."""
  if row not in WEIGHTS:
    return ()
  return tuple((w, m) for m in settings(variant)["layer_maps"] for w in WEIGHTS[row])


def candidate_stage(task: str, heads: int, row: str, weight: float, layer_map: str) -> str:
  suffix = "" if layer_map == "uniform" else f"_{layer_map}"
  # Stage names are ConfigDict keys, which cannot hold dots: 0.03 is written "0p03".
  return f"{task}_h{heads}_{row}_w{weight:g}{suffix}_s0".replace(".", "p")


def seed_stage(task: str, heads: int, row: str, seed: int) -> str:
  return f"{task}_h{heads}_{row}_s{seed}"


def teacher_stage(task: str) -> str:
  return f"{task}_teacher"


def cell_stages(variant: str, task: str, heads: int, row: str) -> tuple[list[str], list[str]]:
  """(the stages of one table cell, one per seed in order, with the candidates standing in
  for seed 0 where this student tuned the row; the candidates of that choice, or [])."""
  s = settings(variant)
  grid = candidates(variant, row)
  names = [seed_stage(task, heads, row, seed) for seed in s["seeds"]]
  if not grid:
    return names, []
  tuner = tuning_heads(variant, task, row)
  tried = [candidate_stage(task, tuner, row, w, m) for w, m in grid]
  return (names[1:] if heads == tuner else names), tried


def layer_pairs(layer_map: str, n_teacher: int, n_student: int) -> tuple:
  """() is the method's uniform map; "last" pairs the student's layers with the teacher's last
  n_student layers."""
  if layer_map == "uniform":
    return ()
  return tuple((n_teacher - n_student + j, j) for j in range(n_student))


def method_config(row: str, weight: float | None = None, pairs: tuple = ()) -> dict:
  if row == "ce":
    return {"name": "supervised"}
  if row == "kd":
    return {"name": "vanilla_kd", "temperature": KD_TEMPERATURE, "alpha": 0.5}
  common = dict(
      attention_weight=weight,
      kd_weight=1.0,
      ce_weight=1.0,
      kd_temperature=KD_TEMPERATURE,
      layer_map=pairs,
  )
  if row.startswith("amad_"):
    return {"name": "amad", "variant": row[len("amad_") :], **common}
  # KL between attention distributions, as MiniLM; AMAD's kl variants compare the same way.
  return {"name": "attention_kd", "kind": row, "distance": "kl", **common}


def _run(task: dict, *, side: str, seed: int, heads=None) -> ml_collections.ConfigDict:
  teacher = side == "teacher"
  train, validation, test = task["splits"]
  c = default_config()
  c.seed = seed
  c.dataset = task["dataset"]
  c.num_classes = task["num_classes"]
  c.train_split = task.get("teacher_split", train) if teacher else train
  c.validation_split, c.eval_split = validation, test
  model, kwargs = task[side]
  c.model = model
  c.model_kwargs = ml_collections.ConfigDict(
      dict(kwargs) if teacher else {**kwargs, "num_heads": heads}
  )
  if task["kind"] == "text":
    c.input_key = "input_ids"
    text = (task["text"],) if task["text"] else ()
    # AMAD and the baselines leave padded positions out: the batch keeps attention_mask.
    tokenize = {"name": "Tokenize", "max_length": task["max_length"]}
    c.train_transforms = c.eval_transforms = text + (tokenize, KEEP_TEXT)
  else:
    c.train_transforms = c.eval_transforms = ("NormalizeImage",)
  steps = task[f"{side}_steps"]
  c.batch_size, c.eval_batch_size, c.total_steps = task["batch"], task["eval_batch"], steps
  c.log_every = max(1, steps // 10)
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = task[f"{side}_lr"]
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = min(task["warmup"], steps - 1)
  return c


def _validation(c) -> None:
  # Only where a choice reads it (the candidates) and for the teacher: a pass over the
  # validation split with the teacher costs as much as one over the test split.
  c.evals = ml_collections.ConfigDict(
      {"validation": {"kind": "metrics", "split": c.validation_split}}
  )


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = settings(variant)
  stages, order, choices = ml_collections.ConfigDict(), [], {}

  def add(name, config):
    stages[name] = config
    order.append(name)

  for task_name, task in s["tasks"].items():
    teacher = _run(task, side="teacher", seed=1000)
    teacher.method = ml_collections.ConfigDict({"name": "supervised"})
    _validation(teacher)
    add(teacher_stage(task_name), teacher)
    spec = {"model": task["teacher"][0], "model_kwargs": task["teacher"][1]}
    spec = ml_collections.ConfigDict({**spec, "workdir": teacher_stage(task_name)})
    n_teacher, n_student = task["teacher"][1]["num_layers"], task["student"][1]["num_layers"]

    def student(heads, seed, method):
      c = _run(task, side="student", seed=seed, heads=heads)
      c.method = ml_collections.ConfigDict(method)
      c.teachers = (spec,)  # CE too: its agreement with the teacher is reported
      return c

    # Tuning students first, so that every choice finds its candidates finished.
    by_tuner = sorted(
        task["heads"], key=lambda h: h not in {tuning_heads(variant, task_name, r) for r in WEIGHTS}
    )
    for heads in by_tuner:
      for row in rows(variant, heads):
        grid = candidates(variant, row)
        names, tried = cell_stages(variant, task_name, heads, row)
        if heads == tuning_heads(variant, task_name, row) and grid:
          for (weight, layer_map), name in zip(grid, tried):
            c = student(
                heads, 0, method_config(row, weight, layer_pairs(layer_map, n_teacher, n_student))
            )
            _validation(c)
            add(name, c)
        for name in names:
          seed = int(name.rsplit("_s", 1)[1])
          c = student(heads, seed, method_config(row, grid[0][0] if grid else None))
          if row in ALIGNMENT_ROWS and seed == ALIGNMENT_SEED and heads == min(task["heads"]):
            c.evals = ml_collections.ConfigDict(
                {"alignment": {"kind": ALIGNMENT_EVALUATOR, "split": c.validation_split}}
            )
          add(name, c)
          if grid:  # the method is replaced by the best candidate's before the stage runs
            choices[name] = choices_lib.best_validation_accuracy(tried)
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  config.choices = ml_collections.ConfigDict(choices)
  return config
