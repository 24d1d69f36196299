"""CSV edge cases of `csv:PATH?...` user data (issue 31, item 5): files that used to train on the
wrong column, invent a class, or blame the wrong value now stop with one line naming the row.

Each case writes a small file as a spreadsheet or a script would export it, reads it through
`kd_jax.data.get_source` (what the trainer calls), and checks the message and that it is one
line. The fixed versions of the same files read as expected, so the checks are not just
"something raised".
"""

from __future__ import annotations

import json

import pytest

from kd_jax import data


def source(tmp_path, text: str, options: str = "", name: str = "d.csv"):
  path = tmp_path / name
  path.write_text(text)
  return data.get_source(
      f"{name.split('.')[-1]}:{path}?split=random&fractions=1,0,0{options}", "train"
  )


def refused(tmp_path, text: str, match: str, options: str = "", name: str = "d.csv") -> str:
  with pytest.raises(data.UserDataError, match=match) as error:
    source(tmp_path, text, options, name)
  assert "\n" not in str(error.value), str(error.value)
  return str(error.value)


def labels_of(src) -> list[str]:
  return sorted(src.label_names[src[i]["label"]] for i in range(len(src)))


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
  # csv.DictReader keeps the last 'label' column: this file used to train on "x" / "y".
  text = "text,label,label\ngood film,pos,x\nbad film,neg,y\n"
  refused(tmp_path, text, r"the header names column 'label' twice \(fields 2 and 3\)")
  assert labels_of(source(tmp_path, "text,label,note\ngood,pos,x\nbad,neg,y\n")) == ["neg", "pos"]


def test_a_row_missing_its_label_field_is_named(tmp_path):
  # The third data row ends after its text: it used to become the class "None".
  text = "text,label\ngood film,pos\nbad film,neg\nfine film\nokay film,pos\n"
  refused(tmp_path, text, r"row 3 \(line 4\) has no 'label' field")


def test_a_json_line_missing_its_label_key_is_named(tmp_path):
  lines = [{"text": "good", "label": "pos"}, {"text": "bad"}]
  text = "".join(json.dumps(line) + "\n" for line in lines)
  refused(tmp_path, text, r"row 2 \(line 2\) has no 'label' field", name="d.jsonl")


@pytest.mark.parametrize("marker", ["NaN", "nan", "", "null", "N/A"])
def test_missing_value_markers_are_not_classes(tmp_path, marker):
  text = f"text,label\ngood film,pos\nbad film,neg\nsome film,{marker}\n"
  message = refused(tmp_path, text, r"row 3 \(line 4\) has no label \(column 'label' is")
  assert ("empty" if marker == "" else repr(marker)) in message
  if marker:  # a class really named so reads when labels= lists it
    assert marker in labels_of(source(tmp_path, text, f"&labels=pos,neg,{marker}"))


def test_json_null_labels_are_not_classes(tmp_path):
  lines = [{"text": "good", "label": "pos"}, {"text": "bad", "label": None}]
  text = "".join(json.dumps(line) + "\n" for line in lines)
  refused(tmp_path, text, r"row 2 \(line 2\) has no label", name="d.jsonl")


def test_labels_mixing_numbers_and_names_say_so(tmp_path):
  # Used to say "non-integer values such as '1'", blaming the one valid-looking value.
  text = "text,label\ngood film,pos\nbad film,1\nokay film,neg\n"
  message = refused(tmp_path, text, r"mixes class ids and class names")
  assert "'1' in row 2 (line 3) and 'pos' in row 1 (line 2)" in message
  assert labels_of(source(tmp_path, text, "&labels=neg,pos,1")) == ["1", "neg", "pos"]


def test_mostly_blank_texts_are_refused_with_the_count(tmp_path):
  rows = [f"film {i},pos" if i % 3 else ",neg" for i in range(30)]  # 10 of 30 blank
  text = "text,label\n" + "\n".join(rows) + "\n"
  refused(tmp_path, text, r"10 of 30 texts in text=text are blank \(first: row 1 \(line 2\)\)")
  assert len(source(tmp_path, text, "&allow_blank_text=1")) == 30
  # A few blank texts (up to 10 %) are accepted without the option.
  rows = [f"film {i},pos" if i % 10 else "   ,neg" for i in range(30)]  # 3 of 30 blank
  assert len(source(tmp_path, "text,label\n" + "\n".join(rows) + "\n")) == 30


def test_an_unquoted_comma_is_not_read_as_the_next_column(tmp_path):
  # "a lovely, moving film,pos": the label would be " moving film".
  text = "text,label\nfine film,neg\na lovely, moving film,pos\n"
  refused(tmp_path, text, r"row 2 \(line 3\) has 3 fields but the header 2; .* must be quoted")
  assert labels_of(source(tmp_path, 'text,label\nfine,neg\n"a lovely, moving film",pos\n')) == [
      "neg",
      "pos",
  ]
