"""PyTorch's side of the train-step benchmark: the same KD step on the same shapes
(`benchmarks/torch_reference.py`'s networks), eager or with `torch.compile`. PyTorch is imported
only when a row is built: it is a benchmark-only extra.
"""

from __future__ import annotations

import time

from benchmarks import step_cases
from benchmarks.step_cases import ALPHA, NUM_LABELS, TEMPERATURE, StepCase


def build_torch_step(case: StepCase, dtype: str, *, compile: bool, device: str):
  import torch  # pylint: disable=g-import-not-at-top

  from benchmarks import torch_reference as ref  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  host_batch = step_cases.make_batch(case)
  labels = torch.as_tensor(host_batch["label"], dtype=torch.long, device=device)
  if case.case == "resnet":
    depth = lambda name: int(name.removeprefix("resnet"))  # CIFAR ResNets: resnet<depth>
    teacher, student = ref.CifarResNet(depth(case.teacher)), ref.CifarResNet(depth(case.student))
    optimizer = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    # uint8 pixels travel to the device and are scaled there, as kd_jax's step does.
    images = torch.as_tensor(host_batch["image"], device=device)
    to_input = lambda: images.permute(0, 3, 1, 2).float().div_(255.0)
  else:
    teacher, student = (
        ref.Bert(case.teacher, NUM_LABELS),
        ref.Bert(case.student, NUM_LABELS),
    )
    optimizer = lambda p: torch.optim.AdamW(p, lr=1e-4, weight_decay=0.01)
    ids = torch.as_tensor(host_batch["input_ids"], dtype=torch.long, device=device)
    to_input = lambda: ids
  kd_step = ref.TorchKDStep(
      teacher,
      student,
      optimizer,
      device=device,
      bf16=dtype == "bfloat16",
      compile=compile,
      temperature=TEMPERATURE,
      alpha=ALPHA,
  )

  def run(n: int) -> float:
    kd_step.synchronize()
    start = time.perf_counter()
    for _ in range(n):
      kd_step(to_input(), labels)
    kd_step.synchronize()
    return time.perf_counter() - start

  return run
