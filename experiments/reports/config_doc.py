"""What a table's config docstring says about one variant, for the report to print beside its
numbers (the setting and what was cut to fit the budget live in one place: the config)."""

from __future__ import annotations

import re


def description(doc: str | None) -> str:
  """The docstring's paragraphs between its title and "Variants:", without the Command one (the
  report prints the command itself)."""
  paragraphs = (doc or "").split("Variants:")[0].strip().split("\n\n")[1:]
  return "\n\n".join(p for p in paragraphs if not p.startswith("Command"))


def variant_text(doc: str | None, variant: str) -> str:
  """The paragraph on `variant` under the docstring's "Variants:" list, as one line ("" if none).

  Entries are written `  <variant>  <text>` with continuation lines indented deeper.
  """
  match = re.search(rf"\n  {re.escape(variant)} +(.*?)(?=\n  \w|\n\"|\Z)", doc or "", re.S)
  return " ".join(match.group(1).split()) if match else ""
