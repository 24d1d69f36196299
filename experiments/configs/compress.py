"""CompRess table (Koohpayegani, Tejankar, Pirsiavash, NeurIPS 2020; PAPERS.md §5): compressing a
frozen self-supervised encoder into small students without labels, judged by linear probe,
1-nearest-neighbour (NN) and cluster alignment (CA) accuracy of the frozen student embeddings.

Command (all stages, then the report in experiments/results/):
  python -m experiments.reproduce compress --variant=cpu [--workdir=/tmp/kd_jax/compress_cpu]

Rows: the teacher itself, a student trained supervised from scratch (one per task, on its labels),
and students distilled without labels by Reg, Reg-BN, CC, CRD and CompRess 1q / 2q / without
momentum, for every seed; then ablations of the ablation variant (seed 0): τ and queue size K.
Every network is evaluated on both tasks by the evaluators `linear_probe` (C chosen on
validation), `nearest_neighbour` and `cluster_alignment` (fitted on train, read on test).

The teacher is the pretrained encoder used as it comes: every student names it as a teacher with
`pretrained: True` (the engine initialises it and loads its weights; nothing trains it), and the
teacher row is a stage of 0 steps whose model is that same encoder, so the engine only runs its
evaluators on the loaded weights (the method named there never runs). Hyper-parameters are the
paper's (τ = 0.04, momentum 0.999, CRD τ = 0.07), not tuned; the ablations show what τ and K do.

Variants:
  cpu    Teacher: all-MiniLM-L6-v2 (the real sentence encoder, mean pooling, frozen). Students:
         2-layer BERTs of width 128 from scratch. Distillation text: `kd_jax.data.text_corpus`
         "distill" (labels unused: Rotten Tomatoes and BBC News train text, Rotten Tomatoes
         plot synopses, Guardian headlines; 17 161 texts), every text cut to 32 tokens (the
         teacher runs once over the corpus for all stages: a shared `teacher_cache`). 3 epochs of
         batch 64 (805 steps), AdamW lr 1e-3, the same for every row. Scaled to the run (the
         paper's m and K assume ~650 k steps): the momentum student of 2q uses
         `momentum_horizon` 0.15 (m = min(0.999, 0.01^(1/(0.15·805))) ≈ 0.963: under 1 % of its
         random start left after 15 % of the run); K = 4 096 in the main rows (a quarter of the
         corpus, near the paper's K/N of 1/10; full of real anchors after 64 steps, 8 % of the
         run); ablations of 1q: τ ∈ {0.02, 0.04, 0.1} (seed 0) and K ∈ {256, 1 024, 4 096}
         (seeds 0-2: every K fills within the first 10 % of the run; 16 384 would need 32 %).
         Tasks: BBC News topics from the article (5 classes) and from its title alone
         ("bbc_title", short text), their train / validation / test splits; both are tasks the
         frozen teacher clusters well (its 1-NN and CA are printed in the report; NN/CA claims
         count tasks where its 1-NN is ≥ 80 %). Rotten Tomatoes sentiment, in the earlier table,
         is left out: the teacher's own 1-NN and CA there were near chance, so its NN/CA
         columns said little about compression, and its 10 k-text evaluations cost the most
         time. Seeds 0, 1, 2. About 85 minutes on 2 cores (timed stages: ~2 min each, 36 of
         them, plus one teacher pass over the corpus); cut to fit: one student size, 3 epochs,
         the τ ablation on seed 0 only, no hyper-parameter search for the baselines.
  smoke  every kind of row once (seed 0; one queue ablation, no τ ablation) on 64 distillation
         texts of 16 tokens, 2 steps of a 1-layer width-32 student, 64 examples per task split
         (the cpu tasks) and cheap evaluators (2 values of C, one k-means start): the CI test.
  paper  ImageNet (TFDS imagenet2012, manual download) with the MoCo-v2 ResNet-50 teacher from a
         user-supplied official checkpoint ($KD_JAX_MOCO_CHECKPOINT, `kd_jax.models.moco`);
         ResNet-18 students, K = 128 000, SGD lr 0.01 momentum 0.9 wd 1e-4, 130 epochs of 256
         (lr × 0.2 at epochs 90 and 120 is replaced by a cosine: the trainer's schedules); the
         three evaluations on ImageNet val. Needs an accelerator host with the data.
"""

from __future__ import annotations

import os

import ml_collections

from kd_jax.train.config import default_config

# Stage-name suffix -> method config; table order. "supervised" is per task (it needs labels).
DISTILL_ROWS = {
    "reg": {"name": "reg"},
    "reg_bn": {"name": "reg_bn"},
    "cc": {"name": "cc"},
    "crd": {"name": "crd"},
    "compress_1q": {"name": "compress", "variant": "1q"},
    "compress_2q": {"name": "compress", "variant": "2q"},
    "compress_no_momentum": {"name": "compress", "variant": "no_momentum"},
}
ABLATION_ROW = "compress_1q"  # the variant of the paper's headline rows
QUEUE_METHODS = ("crd", "compress")  # methods whose queue size is the table's K
CORPUS = "kd_jax.data.text_corpus:distillation_corpus"
# Strings cannot go onto a device mesh; the models read input_ids only.
KEEP_MODEL_INPUTS = {"name": "KeepKeys", "keys": ("input_ids", "label")}

VARIANTS = {
    "cpu": dict(
        tasks={"bbc": 5, "bbc_title": 5},
        splits={"train": "train", "validation": "validation", "test": "test"},
        distill_split="distill",
        max_length=32,
        teacher={"init_from": "minilm"},
        student=dict(
            init_from="scratch", num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512
        ),
        batch=64,
        eval_batch=256,
        steps=805,  # 3 epochs of the 17 161 texts
        optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=0.01, warmup_steps=25),
        queue=4096,
        momentum_horizon=0.15,
        temperatures=(0.02, 0.1),  # besides the paper's 0.04 of the main rows
        queues=(256, 1024),  # besides the main K: each fills within the first 10 % of the run
        seeds=(0, 1, 2),
        ablation_seeds={"tau": (0,), "queue": (0, 1, 2)},
        probe=dict(regularization=(0.01, 0.1, 1.0, 10.0, 100.0)),
        clusters=dict(n_init=3),
    ),
    "smoke": dict(
        tasks={"bbc": 5, "bbc_title": 5},
        splits={"train": "train[:64]", "validation": "validation[:64]", "test": "test[:64]"},
        distill_split="distill[:64]",
        max_length=16,
        teacher={"init_from": "minilm"},
        student=dict(
            init_from="scratch",
            num_layers=1,
            hidden_size=32,
            num_heads=2,
            intermediate_size=64,
            dropout=0.0,  # no dropout RNG in the compiled steps: less to compile per stage
        ),
        batch=16,
        eval_batch=64,  # one batch per split
        steps=2,
        optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=0.01, warmup_steps=0),
        queue=32,
        momentum_horizon=0.15,
        # One ablation stage runs the ablation path (a τ stage would only compile another step).
        temperatures=(),
        queues=(16,),  # = the batch: the smallest bank a step can fill
        seeds=(0,),
        ablation_seeds={"tau": (0,), "queue": (0,)},
        probe=dict(regularization=(0.1, 1.0), max_iter=100),
        clusters=dict(n_init=1),
    ),
}


def settings(variant: str) -> dict:
  if variant == "paper":
    return _paper_settings()
  if variant not in VARIANTS:
    raise ValueError(f"compress.py variants are smoke, cpu and paper, got {variant!r}.")
  return VARIANTS[variant]


def _paper_settings() -> dict:
  return dict(
      dataset="imagenet2012",
      tasks={"imagenet": 1000},
      splits={"train": "train[:98%]", "validation": "train[98%:]", "test": "validation"},
      distill_split="train[:98%]",
      teacher_model="kd_jax.models.moco:moco_v2_resnet50",
      teacher={"checkpoint": os.environ.get("KD_JAX_MOCO_CHECKPOINT", "")},
      student_model="resnet18",
      student={},
      batch=256,
      eval_batch=1024,
      steps=130 * 4_900,  # 130 epochs of 98 % of the 1.28 M images, batch 256
      optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4),
      queue=128_000,
      momentum_horizon=0.15,  # 0.999 is kept: 650 k steps are long enough for it
      temperatures=(0.02, 0.1),
      queues=(256, 16_384),
      seeds=(0, 1, 2),
      ablation_seeds={"tau": (0,), "queue": (0,)},
      probe=dict(regularization=(0.01, 0.1, 1.0, 10.0, 100.0)),
      clusters=dict(n_init=3),
  )


# ------------------------------------------------------------------------------------------------
# Stages.


def stage_name(row: str, seed: int | None = None, task: str | None = None) -> str:
  """`teacher`, `<task>_supervised_s<seed>`, `<row>_s<seed>`."""
  name = f"{task}_{row}" if task else row
  return name if seed is None else f"{name}_s{seed}"


def ablation_stage(key: str, value, seed: int = 0) -> str:
  """`compress_1q_tau0p02_s0`, `compress_1q_queue256_s1` (no dots: ConfigDict keys)."""
  return f"{ABLATION_ROW}_{key}{value:g}_s{seed}".replace(".", "p")


def task_evals(s: dict, tasks=None) -> dict:
  """Linear probe, 1-NN and CA on the test split of each task (train / validation as fit data)."""
  evals = {}
  for task, classes in s["tasks"].items():
    if tasks is not None and task not in tasks:
      continue
    split = lambda role: _split(s, task, role)
    evals[f"{task}_linear"] = {
        "kind": "linear_probe",
        "split": split("test"),
        "train_split": split("train"),
        "validation_split": split("validation"),
        **s["probe"],
    }
    evals[f"{task}_nn"] = {
        "kind": "nearest_neighbour",
        "split": split("test"),
        "database_split": split("train"),
    }
    evals[f"{task}_ca"] = {
        "kind": "cluster_alignment",
        "split": split("test"),
        "fit_split": split("train"),
        "num_clusters": classes,
        **s["clusters"],
    }
  return evals


def _split(s: dict, task: str, role: str) -> str:
  return s["splits"][role] if "dataset" in s else f"{task}/{s['splits'][role]}"


def _run(s: dict, *, model: str, model_kwargs: dict, train_split: str, seed: int, steps: int):
  c = default_config()
  c.seed = seed
  first = next(iter(s["tasks"]))
  c.dataset = s.get("dataset", CORPUS)
  c.num_classes = max(s["tasks"].values())  # CA is told each task's k; headless students
  c.train_split = train_split
  c.validation_split = _split(s, first, "validation")
  c.eval_split = _split(s, first, "test")
  if "max_length" in s:
    c.input_key = "input_ids"
    tokenize = {"name": "Tokenize", "max_length": s["max_length"]}
    c.eval_transforms = (tokenize, KEEP_MODEL_INPUTS)
    # The distillation text has no labels at all (the engine then checks none).
    unlabelled = {"name": "KeepKeys", "keys": ("input_ids",)}
    c.train_transforms = (
        tokenize,
        unlabelled if train_split == s["distill_split"] else KEEP_MODEL_INPUTS,
    )
  c.model = model
  c.model_kwargs = ml_collections.ConfigDict(model_kwargs)
  c.batch_size, c.eval_batch_size, c.total_steps = s["batch"], s["eval_batch"], steps
  c.log_every = max(1, steps // 10)
  c.checkpoint_every = max(1, steps)  # 0 steps (the teacher row) write no checkpoint at all
  c.max_to_keep = 1
  c.optimizer.update(s["optimizer"])
  c.optimizer.warmup_steps = max(0, min(c.optimizer.warmup_steps, steps - 1))
  return c


def teacher_spec(s: dict) -> dict:
  """The pretrained encoder, used as it comes (its `load_pretrained` supplies the weights)."""
  return {
      "model": s.get("teacher_model", "bert_classifier"),
      "model_kwargs": {"num_classes": None, **s["teacher"]},
      "pretrained": True,
  }


def _student_model(s: dict, num_classes) -> tuple[str, dict]:
  return s.get("student_model", "bert_classifier"), {"num_classes": num_classes, **s["student"]}


def _distill_method(s: dict, row: str, **overrides) -> dict:
  method = dict(DISTILL_ROWS[row])
  if method["name"] in QUEUE_METHODS:
    method["queue_size"] = s["queue"]
  if method.get("variant") == "2q":
    method["momentum_horizon"] = s["momentum_horizon"]
  method.update(overrides)
  return method


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = settings(variant)
  stages, order = ml_collections.ConfigDict(), []

  def add(name, config):
    stages[name] = config
    order.append(name)

  # The teacher row: the pretrained encoder evaluated as built (0 steps; the method never runs).
  spec = teacher_spec(s)
  teacher = _run(
      s,
      model=spec["model"],
      model_kwargs=spec["model_kwargs"],
      train_split=s["distill_split"],
      seed=0,
      steps=0,
  )
  teacher.method = ml_collections.ConfigDict({"name": "supervised"})
  teacher.evals = ml_collections.ConfigDict(task_evals(s))
  add("teacher", teacher)

  def distilled(row, seed, **overrides):
    model, kwargs = _student_model(s, None)
    c = _run(
        s,
        model=model,
        model_kwargs=kwargs,
        train_split=s["distill_split"],
        seed=seed,
        steps=s["steps"],
    )
    c.method = ml_collections.ConfigDict(_distill_method(s, row, **overrides))
    c.teachers = (ml_collections.ConfigDict(spec),)
    c.teacher_cache = "max_length" in s  # deterministic text views; images are augmented
    c.evals = ml_collections.ConfigDict(task_evals(s))
    return c

  for seed in s["seeds"]:
    for task, classes in s["tasks"].items():
      model, kwargs = _student_model(s, classes)
      c = _run(
          s,
          model=model,
          model_kwargs=kwargs,
          train_split=_split(s, task, "train"),
          seed=seed,
          steps=s["steps"],
      )
      c.num_classes = classes
      c.validation_split, c.eval_split = _split(s, task, "validation"), _split(s, task, "test")
      c.method = ml_collections.ConfigDict({"name": "supervised"})
      c.evals = ml_collections.ConfigDict(task_evals(s, tasks=(task,)))
      add(stage_name("supervised", seed, task), c)
    for row in DISTILL_ROWS:
      add(stage_name(row, seed), distilled(row, seed))
  for seed in s["ablation_seeds"]["tau"]:
    for value in s["temperatures"]:
      add(ablation_stage("tau", value, seed), distilled(ABLATION_ROW, seed, temperature=value))
  for seed in s["ablation_seeds"]["queue"]:
    for value in s["queues"]:
      add(ablation_stage("queue", value, seed), distilled(ABLATION_ROW, seed, queue_size=value))
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.stage_order = tuple(order)
  return config
