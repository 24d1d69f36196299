"""What the bf16 KD step asks XLA to do: matmul dtypes, converts, scatters and dropout RNG.

    nice .venv/bin/python benchmarks/hlo_report.py    # writes benchmarks/results/bf16_hlo_cpu.md

The graph is the engine's train step (`benchmarks/kd_jax_step.py`'s `build_jax_step`: BERT 6L →
3L h384, `vanilla_kd`, dropout 0.1) lowered *before* backend optimisation, so the counts hold for
any backend — they are what a GPU compiler receives. Variants: float32; bfloat16 as the engine
runs it (student params cast to bf16 before `apply`); bfloat16 with float32 params handed to the
bf16 modules. The CPU step times are for orientation only: XLA's CPU backend runs bf16 matmuls in
float32 (it inserts converts around every dot), so bf16 is no faster there.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import math
import pathlib
import re
import shlex
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import kd_jax_step  # pylint: disable=wrong-import-position
from benchmarks import step_cases  # pylint: disable=wrong-import-position
from benchmarks import train_step  # pylint: disable=wrong-import-position

TENSOR = r"tensor<([^>]*)>"


def _element_type(tensor: str) -> str:
  return tensor.split("x")[-1]


def _size(tensor: str) -> int:
  return math.prod(int(d) for d in tensor.split("x")[:-1] if d.isdigit())


def graph_statistics(text: str) -> dict:
  """Counts from StableHLO text: dots by (lhs, rhs, out) types, converts, scatters, threefry."""
  dots = re.findall(
      r"stablehlo.dot_general.*?: \(" + TENSOR + ", " + TENSOR + r"\) -> " + TENSOR, text
  )
  dot_types = collections.Counter(
      "×".join(_element_type(t) for t in (a, b)) + "→" + _element_type(c) for a, b, c in dots
  )
  f32_dots = [(a, b) for a, b, c in dots if _element_type(a) == _element_type(b) == "f32"]
  converts = re.findall(r"stablehlo.convert %\S+ : \(" + TENSOR + r"\) -> " + TENSOR, text)
  float_converts = [
      (a, b)
      for a, b in converts
      if {_element_type(a), _element_type(b)} <= {"f32", "bf16", "f16"}
      and _element_type(a) != _element_type(b)
  ]
  scatters = re.findall(
      r'"stablehlo.scatter"[^\n]*\n(?:[^\n]*\n){0,12}?[^\n]*\}\) : \([^)]*\) -> ' + TENSOR, text
  )
  return {
      "dots": dict(dot_types),
      "largest f32×f32 dot": max(
          f32_dots, key=lambda ab: _size(ab[0]) + _size(ab[1]), default=None
      ),
      "float converts": len(float_converts),
      "converted elements (M)": sum(_size(b) for _, b in float_converts) / 1e6,
      "scatters": scatters,
      "threefry call sites": text.count("call @threefry2x32") or text.count("threefry2x32"),
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--layers", default="6,3", help="teacher,student BERT layers (h384)")
  parser.add_argument("--time_steps", type=int, default=5, help="single steps timed (0: none)")
  parser.add_argument("--out", default=str(REPO / "benchmarks/results/bf16_hlo_cpu.md"))
  args = parser.parse_args(argv)
  teacher_layers, student_layers = (int(n) for n in args.layers.split(","))
  case = step_cases.StepCase("bert", args.batch, args.seq_len, teacher_layers, student_layers)
  variants = [
      ("float32", "float32", True),
      ("bfloat16, engine (params cast before apply)", "bfloat16", True),
      ("bfloat16, float32 params into bf16 modules", "bfloat16", False),
  ]
  rows = []
  for label, dtype, precast in variants:
    run, step, arguments = kd_jax_step.build_jax_step(case, dtype, precast=precast)
    stats = graph_statistics(step.lower(*arguments(), phase=kd_jax_step.PHASE).as_text())
    if args.time_steps:
      run(1)
      stats["step (ms)"] = min(run(1) for _ in range(args.time_steps)) * 1e3
    rows.append((label, stats))
    print(label, stats, flush=True)
  lines = [
      "# The bf16 KD step's graph (before backend optimisation)",
      "",
      f"Command: `{shlex.join(['python', 'benchmarks/hlo_report.py', *sys.argv[1:]])}`  ",
      f"Machine: {train_step.machine_description('cpu')}  ",
      f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
      f"Step: {case.label}, vanilla_kd, dropout 0.1, "
      "AdamW; step = best of a few single steps (on a CPU, XLA runs bf16 dots in float32).",
      "",
      "| variant | dot_general types (count) | largest f32×f32 dot | float converts "
      "(elements, M) | scatters | threefry call sites | step |",
      "|---|---|---|---|---|---|---|",
  ]
  for label, s in rows:
    dots = ", ".join(f"{k}: {v}" for k, v in sorted(s["dots"].items()))
    largest = " × ".join(s["largest f32×f32 dot"]) if s["largest f32×f32 dot"] else "–"
    step_time = f"{s['step (ms)']:.0f} ms" if "step (ms)" in s else "–"
    lines.append(
        f"| {label} | {dots} | {largest} | {s['float converts']} "
        f"({s['converted elements (M)']:.1f}) | {', '.join(s['scatters']) or '–'} | "
        f"{s['threefry call sites']} | {step_time} |"
    )
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text("\n".join(lines) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
