"""Distil a text classifier on your own data: fine-tune a teacher, distil a student, compare.

Command (Rotten Tomatoes by default; every `settings` key is a --config override):
  python -m experiments.main --config=experiments/configs/text_kd.py --workdir=/tmp/text_kd \
      --config.settings.dataset='csv:reviews.csv?text=review&label=sentiment' \
      --config.settings.num_classes=3

Stages (each in WORKDIR/<stage>; rerunning resumes, finished stages only report):
  `teacher`     the pretrained MiniLM-L6 (all-MiniLM-L6-v2 weights) fine-tuned with cross-entropy.
  `student_kd`  a smaller BERT (the first `student_layers` MiniLM layers) distilled from it
                (vanilla KD, τ = `temperature`, α = `alpha`).
  `student_ce`  the same student trained on the labels only: what distillation is compared to.
Each reports accuracy on the validation split (evaluator "validation", where choices are made)
and on `eval_split` (the top level of results.json), plus agreement / predictive KL with the
teacher for the students. `python -m experiments.evaluate --workdir=WORKDIR/student_kd
--split=NAME` evaluates a finished stage on any split; `kd_jax.predict` labels new texts.

Settings (`--config.settings.<key>=...`):
  dataset            any `kd_jax.data.get_source` name: "csv:PATH?text=COL&label=COL" (also tsv,
                     jsonl, parquet; options in kd_jax/data/user_data.py), a registered source,
                     a TFDS name. The file's own split column, or a seeded 80/10/10 draw, gives
                     the splits "train", "validation", "test".
  num_classes        the number of classes (checked against the data before anything trains).
  train_split, validation_split, eval_split    split names (eval_split: reported only).
  max_length         tokens per text (longer texts are truncated).
  teacher_steps, student_steps, batch_size, teacher_lr, student_lr, student_layers,
  temperature, alpha
Variants: "cpu" (default; sizes above) and "smoke" (tiny BERTs from scratch, a few steps: what
the tests run on a CSV they write). Measured runtime and results of the default on Rotten
Tomatoes: experiments/results/text_kd_rotten_tomatoes.md (`python -m experiments.reports.text_kd
--workdir=WORKDIR --out=...` writes it from a finished run).
"""

from __future__ import annotations

import ml_collections

from kd_jax.train.config import default_config

KEEP_MODEL_INPUTS = {"name": "KeepKeys", "keys": ("input_ids", "label")}


def _settings(variant: str) -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.dataset = "rotten_tomatoes"
  s.num_classes = 2
  s.train_split = "train"
  s.validation_split = "validation"
  s.eval_split = "test"
  s.max_length = 64
  s.batch_size = 32
  s.teacher_steps = 250
  s.student_steps = 200
  s.teacher_lr = 5e-5
  s.student_lr = 1e-4
  s.student_layers = 3
  s.temperature = 2.0
  s.alpha = 0.5
  if variant == "smoke":
    s.max_length = 16
    s.batch_size = 8
    s.teacher_steps = 6
    s.student_steps = 4
    s.teacher_lr = s.student_lr = 1e-3
    s.student_layers = 1
  elif variant != "cpu":
    raise ValueError(f"text_kd.py variants are 'cpu' and 'smoke', got {variant!r}.")
  return s


def _model(variant: str, s, *, teacher: bool) -> tuple[str, dict]:
  if variant == "smoke":  # tiny BERTs with MiniLM's vocabulary, from scratch
    return "bert_classifier", dict(
        init_from="scratch",
        num_layers=2 if teacher else 1,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        dropout=0.0,
    )
  if teacher:
    return "bert_classifier", dict(init_from="minilm", num_layers=6)
  return "bert_classifier", dict(init_from="minilm", num_layers=s.get_oneway_ref("student_layers"))


def _run(s, model, *, steps: str, lr: str, method: dict) -> ml_collections.ConfigDict:
  """One stage; `steps` and `lr` name settings, `method` holds one-way references to others.

  Every key reads its setting through its own one-way reference (`get_oneway_ref`): an override
  of settings.<key> reaches every key that reads it, while an override of one key of one stage
  (`--config.stages.teacher.checkpoint_every=5`) changes that key only. A reference shared by two
  keys would rewrite the other key, and the setting, too (tests/reliability checks every config).
  """
  ref = s.get_oneway_ref
  c = default_config()
  c.dataset = ref("dataset")
  c.num_classes = ref("num_classes")
  c.train_split = ref("train_split")
  c.validation_split = ref("validation_split")
  c.eval_split = ref("eval_split")
  c.evals = ml_collections.ConfigDict(
      {"validation": {"kind": "metrics", "split": ref("validation_split")}}
  )
  c.input_key = "input_ids"
  c.train_transforms, c.eval_transforms = (
      (
          ml_collections.ConfigDict({"name": "Tokenize", "max_length": ref("max_length")}),
          dict(KEEP_MODEL_INPUTS),
      )
      for _ in range(2)
  )
  c.model = model[0]
  c.model_kwargs = ml_collections.ConfigDict(model[1])
  c.batch_size = ref("batch_size")
  c.eval_batch_size = 64
  c.total_steps = ref(steps)
  c.log_every = 10
  c.checkpoint_every = ref(steps)
  c.max_to_keep = 1
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = ref(lr)
  c.optimizer.weight_decay = 0.01
  c.method = ml_collections.ConfigDict(method)
  return c


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  s = _settings(variant)
  teacher = _run(
      s,
      _model(variant, s, teacher=True),
      steps="teacher_steps",
      lr="teacher_lr",
      method={"name": "supervised"},
  )
  student_kd = _run(
      s,
      _model(variant, s, teacher=False),
      steps="student_steps",
      lr="student_lr",
      method={
          "name": "vanilla_kd",
          "temperature": s.get_oneway_ref("temperature"),
          "alpha": s.get_oneway_ref("alpha"),
      },
  )
  student_ce = _run(
      s,
      _model(variant, s, teacher=False),
      steps="student_steps",
      lr="student_lr",
      method={"name": "supervised"},
  )
  # The CE student is evaluated against the teacher too (agreement, predictive KL).
  for student in (student_kd, student_ce):
    name, kwargs = _model(variant, s, teacher=True)
    student.teachers = (
        ml_collections.ConfigDict({"model": name, "model_kwargs": kwargs, "workdir": "teacher"}),
    )
  config = ml_collections.ConfigDict()
  config.settings = s
  config.stages = ml_collections.ConfigDict(
      {"teacher": teacher, "student_kd": student_kd, "student_ce": student_ce}
  )
  config.stage_order = ("teacher", "student_kd", "student_ce")
  return config
