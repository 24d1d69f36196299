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
import datetime
import os
import pathlib
import platform
import shlex
import statistics
import sys
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# PyTorch's OpenMP threads spin at barriers by default. On a CPU with more runnable threads than
# cores (a shared machine, or XLA's own pool beside them) the spinning starves the threads doing
# the work: resnet56 → resnet20 eager went from 0.34 s to 9.3 s a step on the shared 2-core
# machine of train_step_cpu.md. Passive waiting unless the caller chose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # pylint: disable=wrong-import-position

from benchmarks import kd_jax_step  # pylint: disable=wrong-import-position
from benchmarks import step_cases  # pylint: disable=wrong-import-position
from benchmarks import torch_step  # pylint: disable=wrong-import-position

# Runners that time kd_jax: a failure in any of them fails the script (exit status 1).
KD_JAX_RUNNERS = ("kd_jax", "kd_jax teacher cache", "kd_jax f32 params", "kd_jax cudnn")
COLUMNS = (*KD_JAX_RUNNERS, "torch eager", "torch.compile")


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
  parser.add_argument("--preset", choices=sorted(step_cases.PRESETS), default="cpu")
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
  for case in step_cases.PRESETS[args.preset]:
    if case.case not in args.cases.split(","):
      continue
    for dtype in args.dtypes.split(","):
      builders = {
          "kd_jax": lambda: kd_jax_step.build_jax_step(case, dtype)[0],
          "kd_jax teacher cache": lambda: kd_jax_step.build_jax_step(case, dtype, cached=True)[0],
      }
      if dtype != "float32":
        builders["kd_jax f32 params"] = lambda: kd_jax_step.build_jax_step(
            case, dtype, precast=False
        )[0]
      if cudnn and case.case == "bert" and dtype == "bfloat16":
        builders["kd_jax cudnn"] = lambda: kd_jax_step.build_jax_step(
            case, dtype, "cudnn", precast=False
        )[0]
      if torch is not None:
        builders["torch eager"] = lambda: torch_step.build_torch_step(
            case, dtype, compile=False, device=device
        )
        if not args.no_compile:
          builders["torch.compile"] = lambda: torch_step.build_torch_step(
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
