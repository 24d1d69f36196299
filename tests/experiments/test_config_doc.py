"""The reports print each variant's paragraph from its config's docstring."""

from experiments.configs import amad, compress, sea
from experiments.reports.config_doc import description, variant_text

DOC = """Table.

Command:
  python -m run

Rows: a and b.

Variants:
  cpu    first line
         second line.
  smoke  tiny.
"""


def test_variant_text_takes_one_entry_as_one_line():
  assert variant_text(DOC, "cpu") == "first line second line."
  assert variant_text(DOC, "smoke") == "tiny."
  assert variant_text(DOC, "paper") == ""
  assert variant_text(None, "cpu") == ""


def test_every_table_documents_its_variants():
  for module in (amad, compress, sea):
    for variant in ("smoke", "cpu", "paper"):
      text = variant_text(module.__doc__, variant)
      assert len(text) > 40, (module.__name__, variant)
      # One entry only: the next variant's paragraph is not swallowed.
      assert "\n" not in text and "  smoke " not in text
  assert "Cut to fit" in variant_text(amad.__doc__, "cpu")


def test_description_keeps_the_paragraphs_between_title_and_variants_but_the_command():
  assert description(DOC) == "Rows: a and b."
  assert description(None) == ""
