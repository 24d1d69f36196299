"""The steps the train-step benchmark times (`benchmarks/train_step.py`): each row's teacher →
student pair, batch and sequence length, the presets that group them, and the random batch both
sides run on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TEMPERATURE, ALPHA = 4.0, 0.5
NUM_LABELS = 2  # the BERT task's classes


@dataclasses.dataclass(frozen=True)
class StepCase:
  """One row's step: the teacher → student pair, batch and (BERT) sequence length.

  ResNets are named as in `kd_jax.models`; BERTs are layer counts of h384 encoders.
  """

  case: str  # "resnet" or "bert"
  batch: int
  seq_len: int | None = None
  teacher: str | int = "resnet56"
  student: str | int = "resnet20"

  @property
  def label(self) -> str:
    if self.case == "resnet":
      return f"{self.teacher} → {self.student}, b{self.batch} × 32×32×3"
    return f"BERT {self.teacher}L → {self.student}L h384, b{self.batch} × s{self.seq_len}"


RESNET = lambda batch: StepCase("resnet", batch)
BERT = lambda batch, seq_len: StepCase("bert", batch, seq_len, 6, 3)
PRESETS = {
    # The CPU sizes keep one step around a second.
    "cpu": [RESNET(64), BERT(8, 128)],
    # The bf16 transformer step first: a time-limited run keeps the rows it finished.
    "gpu": [BERT(64, 128), RESNET(256), RESNET(1024)],
    # The plumbing check (tests/benchmarks): every runner once, on nets that compile in seconds.
    "smoke": [StepCase("resnet", 4, None, "resnet8", "resnet8"), StepCase("bert", 2, 16, 1, 1)],
}


def make_batch(case: StepCase, seed: int = 0) -> dict[str, np.ndarray]:
  """Random uint8 CIFAR-shaped images, or token ids with right padding (id 0), plus labels."""
  rng = np.random.default_rng(seed)
  batch, seq_len = case.batch, case.seq_len
  if case.case == "resnet":
    return {
        "image": rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, 100, batch).astype(np.int32),
    }
  lengths = rng.integers(seq_len // 2, seq_len + 1, batch)
  ids = rng.integers(1, 30522, (batch, seq_len)).astype(np.int32)
  ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
  return {"input_ids": ids, "label": rng.integers(0, NUM_LABELS, batch).astype(np.int32)}
