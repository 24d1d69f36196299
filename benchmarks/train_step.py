"""KD train-step time: kd_jax's engine step (`build_train_step` + `vanilla_kd`) vs plain PyTorch.

    nice .venv/bin/python benchmarks/train_step.py      # CPU: benchmarks/results/train_step_cpu.md
    python benchmarks/train_step.py --preset=gpu --out=DIR/train_step_gpu.md   # one accelerator

(`pip install -e '.[bench]'` brings PyTorch; it is a benchmark-only dependency. Without it the
PyTorch columns are skipped with a note.) `--preset=smoke` is the plumbing check that
tests/benchmarks runs (through benchmarks/gpu_run.sh): tiny nets, every kd_jax runner once; a
kd_jax runner that fails makes the script exit with status 1.

Both sides do the same step on the same shapes: frozen teacher forward in inference mode, student
forward/backward in train mode (BatchNorm statistics, BERT's dropout 0.1 on hidden states and
attention probabilities), L = ½·CE + ½·τ²·KL with τ = 4, then SGD-momentum (ResNets) or AdamW
(BERT). kd_jax builds and calls the step as its trainer does (`kd_jax.train.loop`):
`kd_jax.train.forward.Forward` with the method's requested outputs (logits only, so attention takes
the fused path where dropout allows), teacher variables cast to the compute dtype once, float32
master weights, `build_train_step` (`jit` with donation), `step(state, teachers, constants,
batch, phase)`.
PyTorch runs eager and, where it compiles, with `torch.compile` on both nets; bf16 is
`torch.autocast`. Timing: warm-up steps, then windows of steps, interleaved across the runners so
that a shared machine's load hits every runner alike; the table reports the median window.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time
import traceback

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# PyTorch's OpenMP threads spin at barriers by default. On a CPU with more runnable threads than
# cores (a shared machine, or XLA's own pool beside them) the spinning starves the threads doing
# the work: resnet56 → resnet20 eager went from 0.34 s to 9.3 s a step on the shared 2-core
# machine of train_step_cpu.md. Passive waiting unless the caller chose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

from kd_jax import models  # pylint: disable=wrong-import-position
from kd_jax.methods import base as method_base  # pylint: disable=wrong-import-position
from kd_jax.methods.vanilla_kd import VanillaKD  # pylint: disable=wrong-import-position
from kd_jax.train import forward as forward_lib  # pylint: disable=wrong-import-position
from kd_jax.train import mesh as mesh_lib  # pylint: disable=wrong-import-position
from kd_jax.train import state as state_lib  # pylint: disable=wrong-import-position
from kd_jax.train import steps as steps_lib  # pylint: disable=wrong-import-position

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
PHASE = 0  # vanilla KD has one training phase
CACHED_EXAMPLES = 50_000  # a CIFAR-sized train split for the teacher-output cache rows
# Runners that time kd_jax: a failure in any of them fails the script (exit status 1).
KD_JAX_RUNNERS = ("kd_jax", "kd_jax teacher cache", "kd_jax f32 params", "kd_jax cudnn")
COLUMNS = (*KD_JAX_RUNNERS, "torch eager", "torch.compile")


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


def jax_models(case: StepCase, dtype, attention_implementation=None):
  if case.case == "resnet":
    return (
        models.get_model(case.teacher, num_classes=100, dtype=dtype),
        models.get_model(case.student, num_classes=100, dtype=dtype),
        "image",
    )
  bert = lambda layers: models.BertEncoder(
      models.BertConfig(num_layers=layers),
      num_classes=NUM_LABELS,
      dtype=dtype,
      attention_implementation=attention_implementation,
  )
  return bert(case.teacher), bert(case.student), "input_ids"


# Module level, so that equal modules (flax hashes them by value) compile their init once for all
# the runners of a row.
_initial_variables = jax.jit(
    lambda model, rng, x: model.init(rng, x, train=False), static_argnums=0
)


def build_jax_step(
    case: StepCase,
    dtype: str,
    attention_implementation: str | None = None,
    precast: bool = True,
    cached: bool = False,
):
  """(run(n) -> seconds for n steps, the engine's `TrainStep`, () -> its arguments but `phase`).

  The step is built and called as the trainer (`kd_jax.train.loop`) does: `build_train_step`,
  then `step(state, teachers, constants, batch, phase=PHASE)`; a change of that call fails here,
  and tests/benchmarks runs this at the smoke preset.

  `precast=False` keeps the engine's compute dtype at float32 and lets the bf16 modules cast
  their float32 params where they use them (flax's `dtype` vs `param_dtype`), instead of the
  engine casting the whole student tree to bf16 before `apply`: the difference is the embedding
  gradient, a scatter-add into a bf16 or a float32 table (see benchmarks/results/bf16_hlo_cpu.md).
  `cached=True` runs the step on cached teacher logits (`kd_jax.train.teacher_cache`, the
  engine's cache for deterministic views) of a CACHED_EXAMPLES-example split instead of the
  teacher's forward pass.
  """
  compute = jnp.dtype(dtype)
  teacher, student, input_key = jax_models(case, compute, attention_implementation)
  method = VanillaKD(temperature=TEMPERATURE, alpha=ALPHA)
  host_batch = make_batch(case)
  x = forward_lib.model_input(host_batch, input_key, jnp.float32)
  teacher_variables = forward_lib.cast_floats(
      _initial_variables(teacher, jax.random.PRNGKey(1), x), compute
  )
  student_variables = _initial_variables(student, jax.random.PRNGKey(2), x)
  num_classes = 100 if case.case == "resnet" else NUM_LABELS
  context = method_base.RunContext(
      total_steps=1000,
      steps_per_epoch=100,
      num_train_examples=100 * case.batch,
      batch_size=case.batch,
      num_classes=num_classes,
  )
  student_tx = (
      optax.sgd(0.1, momentum=0.9)
      if case.case == "resnet"
      else optax.adamw(1e-4, weight_decay=0.01)
  )
  tx = method.optimizer(student_tx, context)
  student_outputs, teacher_outputs = method.requested_outputs()
  forward = forward_lib.Forward(
      student,
      (teacher,),
      compute if precast else jnp.float32,
      student_outputs=student_outputs,
      teacher_outputs=teacher_outputs,
  )
  mesh = mesh_lib.make_mesh()
  step = steps_lib.build_train_step(
      forward=forward,
      method=method,
      tx=tx,
      mesh=mesh,
      input_key=input_key,
      grad_accum_steps=1,
      context=context,
      cached_teachers=cached,
  )
  state = mesh_lib.replicate(
      state_lib.create_train_state(
          student_variables=student_variables,
          method_params={},
          method_state={},
          tx=tx,
          rng=jax.random.key_data(jax.random.key(0)),
      ),
      mesh,
  )
  teachers = mesh_lib.replicate((teacher_variables,), mesh)
  if cached:  # the values do not matter for timing; the shapes and the gather do
    rng = np.random.default_rng(1)
    teachers = mesh_lib.replicate(
        {
            "0": {
                "logits": jnp.asarray(rng.normal(size=(CACHED_EXAMPLES, num_classes)), jnp.float32)
            }
        },
        mesh,
    )
    host_batch = {
        **host_batch,
        "index": rng.integers(0, CACHED_EXAMPLES, case.batch).astype(np.int32),
    }
  device_batch = mesh_lib.shard_batch(host_batch, mesh)
  constants = mesh_lib.replicate({}, mesh)  # vanilla KD prepares no constants
  holder = {"state": state}

  def arguments():
    """The step's arguments before `phase`, as the loop passes them."""
    return holder["state"], teachers, constants, device_batch

  def run(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      # `phase` by name: a parameter added before it then fails here instead of taking its value.
      holder["state"], metrics = step(*arguments(), phase=PHASE)
    jax.block_until_ready(metrics["loss"])
    return time.perf_counter() - start

  return run, step, arguments


def build_torch_step(case: StepCase, dtype: str, *, compile: bool, device: str):
  import torch  # pylint: disable=g-import-not-at-top

  from benchmarks import torch_reference as ref  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  host_batch = make_batch(case)
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


def measure(runners: dict, *, warmup: int, windows: int, steps: int) -> dict[str, float | str]:
  """Median seconds per step of each runner; windows interleave the runners."""
  times: dict[str, list[float]] = {name: [] for name in runners}
  results: dict[str, float | str] = {}
  for name, run in list(runners.items()):
    try:
      run(warmup)  # compiles (jit, torch.compile) and warms caches
    except Exception as error:  # pylint: disable=broad-except
      results[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
      traceback.print_exc()
      del runners[name]
  for _ in range(windows):
    for name, run in runners.items():
      times[name].append(run(steps) / steps)
  for name in runners:
    results[name] = statistics.median(times[name])
  return results


def machine_description(device: str) -> str:
  cpu = platform.processor() or platform.machine()
  try:
    for line in open("/proc/cpuinfo", encoding="utf-8"):
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  parts = [
      f"{cpu}, {os.cpu_count()} logical CPUs (1-min load average {os.getloadavg()[0]:.1f} "
      "when the run started)",
      f"JAX {jax.__version__} on {jax.devices()[0].device_kind}",
  ]
  try:
    import torch  # pylint: disable=g-import-not-at-top

    parts.append(f"PyTorch {torch.__version__} on {device}")
    if device.startswith("cuda"):
      parts.append(torch.cuda.get_device_name())
  except ImportError:
    parts.append("PyTorch not installed")
  return "; ".join(parts)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--cases", default="resnet,bert")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--windows", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
  parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
  parser.add_argument("--no_torch", action="store_true", help="kd_jax rows only")
  parser.add_argument(
      "--cudnn",
      action="store_true",
      help="add a kd_jax row with attention_implementation='cudnn' (bf16)",
  )
  parser.add_argument(
      "--runners",
      default=None,
      help=f"comma-separated columns to time (default: all of {', '.join(COLUMNS)})",
  )
  parser.add_argument("--note", default="", help="a line for the results file (e.g. shared CPU)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  unknown = set(args.runners.split(",")) - set(COLUMNS) if args.runners else set()
  if unknown:
    parser.error(f"--runners: unknown {sorted(unknown)}; choose from {', '.join(COLUMNS)}")
  out = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"train_step_{args.preset}.md")
  try:
    import torch  # pylint: disable=g-import-not-at-top

    device = "cuda" if torch.cuda.is_available() else "cpu"
  except ImportError:
    torch, device = None, "cpu"
    if not args.no_torch:
      print(
          "PyTorch is not installed: the torch eager / torch.compile columns are skipped "
          "(pip install -e '.[bench]' brings it).",
          flush=True,
      )
  if args.no_torch:
    torch = None
  cudnn = args.cudnn and jax.default_backend() == "gpu"
  if args.cudnn and not cudnn:
    print(
        f"--cudnn: cuDNN attention needs an NVIDIA GPU and JAX runs on {jax.default_backend()}: "
        "the kd_jax cudnn column is skipped.",
        flush=True,
    )
  machine = machine_description(device)
  rows = []
  for case in PRESETS[args.preset]:
    if case.case not in args.cases.split(","):
      continue
    for dtype in args.dtypes.split(","):
      builders = {
          "kd_jax": lambda: build_jax_step(case, dtype)[0],
          "kd_jax teacher cache": lambda: build_jax_step(case, dtype, cached=True)[0],
      }
      if dtype != "float32":
        builders["kd_jax f32 params"] = lambda: build_jax_step(case, dtype, precast=False)[0]
      if cudnn and case.case == "bert" and dtype == "bfloat16":
        builders["kd_jax cudnn"] = lambda: build_jax_step(case, dtype, "cudnn", precast=False)[0]
      if torch is not None:
        builders["torch eager"] = lambda: build_torch_step(
            case, dtype, compile=False, device=device
        )
        if not args.no_compile:
          builders["torch.compile"] = lambda: build_torch_step(
              case, dtype, compile=True, device=device
          )
      runners = {
          name: build()
          for name, build in builders.items()
          if args.runners is None or name in args.runners.split(",")
      }
      result = measure(runners, warmup=args.warmup, windows=args.windows, steps=args.steps)
      rows.append((case.label, dtype, result))
      print(rows[-1], flush=True)
      write_results(out, rows, args, machine)  # after every row: a time-out keeps what ran
  failed = kd_jax_failures(rows)
  if failed:
    sys.exit(f"kd_jax rows failed (tracebacks above): {'; '.join(failed)}")


def kd_jax_failures(rows) -> list[str]:
  """ "row dtype runner" of each kd_jax cell that `measure` recorded as failed. PyTorch cells may
  fail on a platform (torch.compile without a compiler); a kd_jax cell may not."""
  return [
      f"{label} {dtype} {name}"
      for label, dtype, result in rows
      for name in KD_JAX_RUNNERS
      if isinstance(result.get(name), str)
  ]


def write_results(out: pathlib.Path, rows, args, machine: str) -> None:
  present = [c for c in COLUMNS if any(c in r for _, _, r in rows)]
  torch_columns = [c for c in present if c.startswith("torch")]
  table_row = lambda cells: "| " + " | ".join(cells) + " |"
  cell = lambda v: f"{v * 1e3:.1f} ms" if isinstance(v, float) else (v or "–")
  ratio = lambda r, c: (
      f"{r[c] / r['kd_jax']:.2f}×"
      if isinstance(r.get(c), float) and isinstance(r.get("kd_jax"), float)
      else "–"
  )
  lines = [
      "# KD train step: kd_jax vs PyTorch",
      "",
      f"Command: `{shlex.join(['python', 'benchmarks/train_step.py', *sys.argv[1:]])}`  ",
      f"Machine: {machine}  ",
      f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
      f"Timing: median of {args.windows} windows × {args.steps} steps after {args.warmup} "
      "warm-up steps, runners interleaved window by window; "
      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}.",
  ]
  if args.note:
    lines += ["", args.note]
  lines += [
      "",
      table_row(["step", "dtype", *present, *(f"{c} / kd_jax" for c in torch_columns)]),
      table_row(["---"] * (2 + len(present) + len(torch_columns))),
  ]
  for label, dtype, result in rows:
    lines.append(
        table_row(
            [
                label,
                dtype,
                *(cell(result.get(c)) for c in present),
                *(ratio(result, c) for c in torch_columns),
            ]
        )
    )
  lines += [
      "",
      "A ratio above 1 means kd_jax's step is faster than PyTorch's. kd_jax: the "
      "engine's step as configured (compute dtype = the row's dtype). kd_jax f32 params: "
      "the same step with the engine's compute dtype left at float32 and bf16 modules, "
      "which cast their float32 params where they use them. kd_jax cudnn: that, with "
      "`attention_implementation='cudnn'` (the frozen teacher's attention; the student "
      "keeps the explicit path while attention dropout is on). kd_jax teacher cache: the "
      "engine's step reading the teacher's logits from its cache (deterministic views) "
      "instead of running the teacher; PyTorch still runs its teacher.",
  ]
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text("\n".join(lines) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
