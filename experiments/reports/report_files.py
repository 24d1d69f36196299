"""What every report writes the same way: its files OUT_DIR/NAME.{md,csv,png} (`paths`), its
Markdown lines (`write_markdown`) and its matplotlib figures, drawn off screen (`pyplot`,
`save_figure`)."""

from __future__ import annotations

import os


def paths(out_dir: str, name: str) -> dict[str, str]:
  """{"md", "csv", "png": OUT_DIR/NAME.<extension>}, with out_dir created."""
  os.makedirs(out_dir, exist_ok=True)
  return {ext: os.path.join(out_dir, f"{name}.{ext}") for ext in ("md", "csv", "png")}


def write_markdown(path: str, lines: list[str]) -> None:
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def pyplot():
  """matplotlib.pyplot on the Agg backend: reports are written where there is no display (CI, a
  remote host); imported here, when a figure is drawn, so that reading a report's numbers does not
  need matplotlib."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def save_figure(fig, path: str, *, dpi: int) -> None:
  """Writes `fig` to `path` with a tight layout and closes it (figures stay open otherwise)."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)
