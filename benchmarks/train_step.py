"""KD train-step time: kd_jax's engine step (`build_train_step` + `vanilla_kd`) vs plain PyTorch.

    nice .venv/bin/python benchmarks/train_step.py      # CPU: benchmarks/results/train_step_cpu.md
    python benchmarks/train_step.py --preset=gpu --out=DIR/train_step_gpu.md   # one accelerator

(`pip install -e '.[bench]'` brings PyTorch; it is a benchmark-only dependency.)

Both sides do the same step on the same shapes: frozen teacher forward in inference mode, student
forward/backward in train mode (BatchNorm statistics, BERT's dropout 0.1 on hidden states and
attention probabilities), L = ½·CE + ½·τ²·KL with τ = 4, then SGD-momentum (ResNets) or AdamW
(BERT). kd_jax builds the step as its trainer does: `kd_jax.train.steps.Forward` with the
method's requested outputs (logits only, so attention takes the fused path where dropout allows),
teacher variables cast to the compute dtype once, float32 master weights, `jit` with donation.
PyTorch runs eager and, where it compiles, with `torch.compile` on both nets; bf16 is
`torch.autocast`. Timing: warm-up steps, then windows of steps, interleaved across the runners so
that a shared machine's load hits every runner alike; the table reports the median window.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
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
from kd_jax.train import mesh as mesh_lib  # pylint: disable=wrong-import-position
from kd_jax.train import state as state_lib  # pylint: disable=wrong-import-position
from kd_jax.train import steps as steps_lib  # pylint: disable=wrong-import-position

TEMPERATURE, ALPHA = 4.0, 0.5
# (case, batch, sequence length) per preset; the CPU sizes keep one step around a second.
PRESETS = {
    "cpu": [("resnet", 64, None), ("bert", 8, 128)],
    # The bf16 transformer step first: a time-limited run keeps the rows it finished.
    "gpu": [("bert", 64, 128), ("resnet", 256, None), ("resnet", 1024, None)],
    "smoke": [("resnet", 4, None), ("bert", 2, 16)],
}
BERT_STUDENT_LAYERS, BERT_TEACHER_LAYERS, NUM_LABELS = 3, 6, 2
CACHED_EXAMPLES = 50_000  # a CIFAR-sized train split for the teacher-output cache rows


def make_batch(case: str, batch: int, seq_len: int | None, seed: int = 0) -> dict[str, np.ndarray]:
  """Random uint8 CIFAR-shaped images, or token ids with right padding (id 0), plus labels."""
  rng = np.random.default_rng(seed)
  if case == "resnet":
    return {
        "image": rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, 100, batch).astype(np.int32),
    }
  lengths = rng.integers(seq_len // 2, seq_len + 1, batch)
  ids = rng.integers(1, 30522, (batch, seq_len)).astype(np.int32)
  ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
  return {"input_ids": ids, "label": rng.integers(0, NUM_LABELS, batch).astype(np.int32)}


def jax_models(case: str, dtype, attention_implementation=None):
  if case == "resnet":
    return (
        models.get_model("resnet56", num_classes=100, dtype=dtype),
        models.get_model("resnet20", num_classes=100, dtype=dtype),
        "image",
    )
  bert = lambda layers: models.BertEncoder(
      models.BertConfig(num_layers=layers),
      num_classes=NUM_LABELS,
      dtype=dtype,
      attention_implementation=attention_implementation,
  )
  return bert(BERT_TEACHER_LAYERS), bert(BERT_STUDENT_LAYERS), "input_ids"


def _keyword_subset(function, candidates: dict) -> dict:
  """The engine is being rewritten: pass only the keywords its current signature takes."""
  parameters = inspect.signature(function).parameters
  return {k: v for k, v in candidates.items() if k in parameters}


def build_jax_step(
    case: str,
    batch: int,
    seq_len: int | None,
    dtype: str,
    attention_implementation: str | None = None,
    precast: bool = True,
    cached: bool = False,
):
  """(run(n) -> seconds for n steps, jitted step, () -> its arguments) for kd_jax.

  `precast=False` keeps the engine's compute dtype at float32 and lets the bf16 modules cast
  their float32 params where they use them (flax's `dtype` vs `param_dtype`), instead of the
  engine casting the whole student tree to bf16 before `apply`: the difference is the embedding
  gradient, a scatter-add into a bf16 or a float32 table (see benchmarks/results/bf16_hlo_cpu.md).
  `cached=True` runs the step on cached teacher logits (`kd_jax.train.teacher_cache`, the
  engine's cache for deterministic views) of a CACHED_EXAMPLES-example split instead of the
  teacher's forward pass; None when the engine has no cache.
  """
  compute = jnp.dtype(dtype)
  teacher, student, input_key = jax_models(case, compute, attention_implementation)
  method = VanillaKD(temperature=TEMPERATURE, alpha=ALPHA)
  host_batch = make_batch(case, batch, seq_len)
  x = steps_lib.model_input(host_batch, input_key, jnp.float32)
  init = jax.jit(lambda model, rng: model.init(rng, x, train=False), static_argnums=0)
  teacher_variables = steps_lib.cast_floats(init(teacher, jax.random.PRNGKey(1)), compute)
  student_variables = init(student, jax.random.PRNGKey(2))
  tx = optax.sgd(0.1, momentum=0.9) if case == "resnet" else optax.adamw(1e-4, weight_decay=0.01)
  student_outputs, teacher_outputs = method.requested_outputs()
  forward = steps_lib.Forward(
      student,
      (teacher,),
      compute if precast else jnp.float32,
      **_keyword_subset(
          steps_lib.Forward.__init__,
          {"student_outputs": student_outputs, "teacher_outputs": teacher_outputs},
      ),
  )
  mesh = mesh_lib.make_mesh()
  context = method_base.RunContext(
      total_steps=1000,
      steps_per_epoch=100,
      num_train_examples=100 * batch,
      batch_size=batch,
      num_classes=100 if case == "resnet" else NUM_LABELS,
  )
  keywords = _keyword_subset(
      steps_lib.build_train_step,
      {
          "forward": forward,
          "method": method,
          "tx": tx,
          "mesh": mesh,
          "input_key": input_key,
          "grad_accum_steps": 1,
          "context": context,
          "cached_teachers": cached,
      },
  )
  if cached and "cached_teachers" not in keywords:
    return None
  step = steps_lib.build_train_step(**keywords)
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
  teacher_variables = mesh_lib.replicate((teacher_variables,), mesh)
  if cached:  # the values do not matter for timing; the shapes and the gather do
    rng = np.random.default_rng(1)
    classes = 100 if case == "resnet" else NUM_LABELS
    teacher_variables = mesh_lib.replicate(
        {"0": {"logits": jnp.asarray(rng.normal(size=(CACHED_EXAMPLES, classes)), jnp.float32)}},
        mesh,
    )
    host_batch = {**host_batch, "index": rng.integers(0, CACHED_EXAMPLES, batch).astype(np.int32)}
  device_batch = mesh_lib.shard_batch(host_batch, mesh)
  takes_constants = len(inspect.signature(step).parameters) == 4
  holder = {"state": state}

  def arguments():
    rest = ({},) if takes_constants else ()
    return (holder["state"], teacher_variables, *rest, device_batch)

  def run(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      holder["state"], metrics = step(*arguments())
    jax.block_until_ready(metrics["loss"])
    return time.perf_counter() - start

  return run, step, arguments


def build_torch_step(
    case: str, batch: int, seq_len: int | None, dtype: str, *, compile: bool, device: str
):
  import torch  # pylint: disable=g-import-not-at-top

  from benchmarks import torch_reference as ref  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  host_batch = make_batch(case, batch, seq_len)
  labels = torch.as_tensor(host_batch["label"], dtype=torch.long, device=device)
  if case == "resnet":
    teacher, student = ref.CifarResNet(56), ref.CifarResNet(20)
    optimizer = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    # uint8 pixels travel to the device and are scaled there, as kd_jax's step does.
    images = torch.as_tensor(host_batch["image"], device=device)
    to_input = lambda: images.permute(0, 3, 1, 2).float().div_(255.0)
  else:
    teacher, student = (
        ref.Bert(BERT_TEACHER_LAYERS, NUM_LABELS),
        ref.Bert(BERT_STUDENT_LAYERS, NUM_LABELS),
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
  parser.add_argument("--note", default="", help="a line for the results file (e.g. shared CPU)")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"train_step_{args.preset}.md")
  try:
    import torch  # pylint: disable=g-import-not-at-top

    device = "cuda" if torch.cuda.is_available() else "cpu"
  except ImportError:
    torch, device = None, "cpu"
  if args.no_torch:
    torch = None
  machine = machine_description(device)
  rows = []
  for case, batch, seq_len in PRESETS[args.preset]:
    if case not in args.cases.split(","):
      continue
    for dtype in args.dtypes.split(","):
      runners = {"kd_jax": build_jax_step(case, batch, seq_len, dtype)[0]}
      cached = build_jax_step(case, batch, seq_len, dtype, cached=True)
      if cached is not None:
        runners["kd_jax teacher cache"] = cached[0]
      if dtype != "float32":
        runners["kd_jax f32 params"] = build_jax_step(case, batch, seq_len, dtype, precast=False)[0]
      if args.cudnn and case == "bert" and dtype == "bfloat16":
        runners["kd_jax cudnn"] = build_jax_step(
            case, batch, seq_len, dtype, "cudnn", precast=False
        )[0]
      if torch is not None:
        runners["torch eager"] = build_torch_step(
            case, batch, seq_len, dtype, compile=False, device=device
        )
        if not args.no_compile:
          runners["torch.compile"] = build_torch_step(
              case, batch, seq_len, dtype, compile=True, device=device
          )
      result = measure(runners, warmup=args.warmup, windows=args.windows, steps=args.steps)
      shape = f"b{batch}" + (f" × s{seq_len}" if seq_len else " × 32×32×3")
      name = (
          "resnet56 → resnet20"
          if case == "resnet"
          else f"BERT {BERT_TEACHER_LAYERS}L → {BERT_STUDENT_LAYERS}L h384"
      )
      rows.append((f"{name}, {shape}", dtype, result))
      print(rows[-1], flush=True)
      write_results(out, rows, args, machine)  # after every row: a time-out keeps what ran


def write_results(out: pathlib.Path, rows, args, machine: str) -> None:
  columns = [
      "kd_jax",
      "kd_jax teacher cache",
      "kd_jax f32 params",
      "kd_jax cudnn",
      "torch eager",
      "torch.compile",
  ]
  present = [c for c in columns if any(c in r for _, _, r in rows)]
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
      "| step | dtype | "
      + " | ".join(present)
      + " | "
      + " | ".join(f"{c} / kd_jax" for c in present if c.startswith("torch"))
      + " |",
      "|" + "---|" * (2 + len(present) + sum(c.startswith("torch") for c in present)),
  ]
  for label, dtype, result in rows:
    lines.append(
        f"| {label} | {dtype} | "
        + " | ".join(cell(result.get(c)) for c in present)
        + " | "
        + " | ".join(ratio(result, c) for c in present if c.startswith("torch"))
        + " |"
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
