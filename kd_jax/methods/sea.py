"""SEA: Specialized Embedding Approximation (Srivastava et al., ICASSP 2021; PAPERS.md §1).

A small student f_S learns a general teacher's embedding f_T ∈ Rⁿ on *target-domain* audio D_S
(the run's train split, "the pool"), through a dimensionality reduction φ: Rⁿ → Rᵈ (Eq. 1):

    min_θ Σ_{x∈D_S} (1/d) ‖f_S(x) − φ(f_T(x))‖²  (+ Σ_conv l2·‖W‖², the students' Keras L2)

`SEA.prepare` (once per run, before step 0): the frozen teacher embeds every pool example; a
sampling strategy (`kd_jax.methods.sea_sampling`: random, loudness, dpp, dpp_div; the paper's
Table 4) chooses k of them; φ is fitted on those k embeddings with scikit-learn,

    φ(t) = ((t − μ) / σ − m) Vᵀ      StandardScaler (μ, σ; σ = 1 where a feature is constant)
                                     then PCA (mean m ≈ 0, the d leading components V ∈ R^{d×n})

and identity when d = n (the paper keeps the teacher space as it is). The constants are
{"mean", "scale", "pca_mean", "components", "sample_indices"}. `loss` is the per-dimension MSE of
`kd_jax.losses.embedding_mse`; `eval_metrics` gives the same per example ("embedding_mse"), so the
"metrics" evaluator on the validation split is the paper's validation loss for
`config.model_selection` (best checkpoint, early stopping with `patience`).

Loudness (for "loudness" and "dpp"): the batch's "loudness" entry (`loudness_key`) when the data
carries it, else the A-weighted Leq in dBFS of the model input waveform
(`kd_jax.data.loudness.a_weighted_leq`) at the batch's "sample_rate" (or `sample_rate`).

Students have no classifier head (model_kwargs num_classes=None): `init` refuses one with logits.
Training as in the paper's code: Adam (config.optimizer, schedule "constant"), the best
checkpoint and early stopping by the validation MSE (config.model_selection on a "metrics"
evaluator of the validation split, metric "embedding_mse", mode "min", patience 10), and
reduce-LR-on-plateau (`plateau_patience` epochs without improvement → × `plateau_factor`;
`optax.contrib.reduce_on_plateau` on the training loss averaged over each epoch, which the
engine passes to the optimiser as `value`). Keras monitors the validation loss instead; no
evaluator result reaches the optimiser, so the epoch's training loss stands in for it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kd_jax.data import loudness as loudness_lib
from kd_jax.losses import embedding as embedding_losses
from kd_jax.methods import base
from kd_jax.methods import sea_sampling

PHI_KEYS = ("mean", "scale", "pca_mean", "components")


def fit_phi(sample: np.ndarray, dim: int, *, seed: int = 0) -> dict[str, np.ndarray]:
  """φ fitted on teacher embeddings `sample` [k, n]: StandardScaler then PCA to `dim` (sklearn);
  identity (μ = m = 0, σ = 1, V = I) when dim = n. Returns float32 arrays of PHI_KEYS."""
  from sklearn import decomposition  # pylint: disable=g-import-not-at-top  (host-side only)
  from sklearn import preprocessing  # pylint: disable=g-import-not-at-top

  sample = np.asarray(sample, np.float64)
  if sample.ndim != 2:
    raise ValueError(f"fit_phi needs embeddings [k, n], got shape {sample.shape}.")
  n = sample.shape[1]
  if dim == n:
    zeros = np.zeros(n, np.float32)
    return {
        "mean": zeros,
        "scale": np.ones(n, np.float32),
        "pca_mean": zeros,
        "components": np.eye(n, dtype=np.float32),
    }
  if not 1 <= dim <= min(sample.shape):
    raise ValueError(
        f"sea: PCA to dim={dim} needs dim <= min(samples, teacher width) = "
        f"min{sample.shape}; raise sample_size or lower dim."
    )
  scaler = preprocessing.StandardScaler().fit(sample)
  pca = decomposition.PCA(n_components=dim, random_state=seed).fit(scaler.transform(sample))
  return {
      "mean": scaler.mean_.astype(np.float32),
      "scale": scaler.scale_.astype(np.float32),
      "pca_mean": pca.mean_.astype(np.float32),
      "components": pca.components_.astype(np.float32),
  }


def apply_phi(phi, teacher_embedding):
  """φ(t) = ((t − μ)/σ − m) Vᵀ on [batch, n] → [batch, d], float32 (jit-able)."""
  t = jnp.asarray(teacher_embedding, jnp.float32)
  z = (t - phi["mean"]) / phi["scale"] - phi["pca_mean"]
  return jnp.einsum("bn,dn->bd", z, phi["components"], precision="highest")


def conv_kernel_l2(params) -> jax.Array:
  """Σ ‖W‖² over the convolution kernels (4-D "kernel" leaves) of a params tree."""
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = getattr(path[-1], "key", None) if path else None
    if name == "kernel" and jnp.ndim(leaf) == 4:
      total = total + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
  return total


@dataclasses.dataclass(frozen=True)
class SEA(base.Method):
  """SEA (see the module docstring).

  Attributes:
    dim: d, the width of φ's output and of the student embedding; 0 means n (φ = identity).
    sampling: how the k examples that fit φ are chosen: "random", "loudness", "dpp", "dpp_div".
    sample_size: k; 0 means the whole pool.
    loudness_window: pool positions in the sliding window of the loudness relevance.
    dpp_regularization: λ of L = ... + λI.
    dpp_chunk: pool positions per k-DPP (the paper's per-day DPPs); O(chunk³) each.
    dpp_sampler: "exact" (eigendecomposition) or "mcmc" (basis exchange, as the paper).
    dpp_mcmc_iterations: chain length for "mcmc" (0: 10 × chunk).
    loudness_key: the batch entry holding a precomputed level per example (dB).
    sample_rate: Hz of the waveform when loudness is computed and batches carry no "sample_rate".
    conv_l2: the students' L2 weight on convolution kernels (Keras `l2(1e-5)` in the paper).
    teacher: which teacher of the run is approximated.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"embedding"})
  dim: int = 0
  sampling: str = "random"
  sample_size: int = 0
  loudness_window: int = 120
  dpp_regularization: float = 0.1
  dpp_chunk: int = 2000
  dpp_sampler: str = "exact"
  dpp_mcmc_iterations: int = 0
  loudness_key: str = "loudness"
  sample_rate: int = 0
  plateau_patience: int = 5  # epochs; 0 turns reduce-LR-on-plateau off
  plateau_factor: float = 0.1
  conv_l2: float = 1e-5
  teacher: int = 0

  def __post_init__(self):
    if self.sampling not in sea_sampling.STRATEGIES:
      raise ValueError(
          f"sea: sampling must be one of {sea_sampling.STRATEGIES}, got {self.sampling!r}."
      )
    if self.dpp_sampler not in sea_sampling.DPP_SAMPLERS:
      raise ValueError(
          f"sea: dpp_sampler must be one of {sea_sampling.DPP_SAMPLERS}, got "
          f"{self.dpp_sampler!r}."
      )
    if not 0 < self.plateau_factor <= 1:
      raise ValueError(f"sea: plateau_factor must be in (0, 1], got {self.plateau_factor}.")
    for name in (
        "dim",
        "sample_size",
        "dpp_mcmc_iterations",
        "sample_rate",
        "teacher",
        "plateau_patience",
    ):
      if int(getattr(self, name)) < 0:
        raise ValueError(f"sea: {name} must be >= 0, got {getattr(self, name)}.")
    for name in ("loudness_window", "dpp_chunk"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"sea: {name} must be >= 1, got {getattr(self, name)}.")
    if self.dpp_regularization <= 0 or self.conv_l2 < 0:
      raise ValueError("sea: dpp_regularization must be > 0 and conv_l2 >= 0.")

  @property
  def needs_loudness(self) -> bool:
    return self.sampling in ("loudness", "dpp")

  def loudness(self, batch, waveform):
    """Per-example level [batch]: the batch's `loudness_key`, else L_Aeq of the waveform."""
    if self.loudness_key in batch:
      return jnp.asarray(batch[self.loudness_key], jnp.float32).reshape(-1)
    if waveform.ndim != 2:
      raise ValueError(
          f"sea: sampling={self.sampling!r} needs a loudness per example: the batch has no "
          f"{self.loudness_key!r} and its model input {tuple(waveform.shape)} is not a waveform "
          "[batch, samples]."
      )
    if "sample_rate" in batch:
      rate = batch["sample_rate"]
    elif self.sample_rate:
      rate = self.sample_rate
    else:
      raise ValueError(
          "sea: computing loudness needs the waveform's rate: a 'sample_rate' batch entry or "
          "the method's sample_rate."
      )
    return loudness_lib.a_weighted_leq(waveform, rate)

  def prepare(self, ctx):
    """Teacher pass over the pool, the sample, φ (see the module docstring)."""

    def teacher_pass(batch):
      out = {"embedding": ctx.teacher_outputs(batch)[self.teacher]["embedding"]}
      if self.needs_loudness:
        out["loudness"] = self.loudness(batch, ctx.model_input(batch))
      return out

    if self.dim == 0:  # φ = identity: only the teacher's width is needed, not a pool pass
      first = next(iter(ctx.batches("train")))
      first = {k: v for k, v in first.items() if np.asarray(v).dtype.kind in "biuf"}
      embed = lambda b: ctx.teacher_outputs(b)[self.teacher]["embedding"]
      shape = jax.eval_shape(embed, first).shape
      phi = fit_phi(np.zeros((1, shape[-1])), shape[-1])
      return {**phi, "sample_indices": np.zeros(0, np.int32)}
    pool = ctx.map_split(teacher_pass, "train", "SEA: teacher embeddings of the pool")
    embeddings = np.asarray(pool["embedding"], np.float64).reshape(len(pool["embedding"]), -1)
    n = embeddings.shape[1]
    if self.dim > n:
      raise ValueError(f"sea: dim={self.dim} exceeds the teacher embedding width n={n}.")
    k = self.sample_size or len(embeddings)
    if k > len(embeddings):
      raise ValueError(f"sea: sample_size={k} exceeds the pool ({len(embeddings)} examples).")
    if self.dim == n:  # φ = identity: nothing is fitted, so no sample is drawn
      indices = np.zeros(0, np.int64)
    else:
      indices = sea_sampling.select(
          self.sampling,
          k,
          seed=ctx.context.seed,
          embeddings=embeddings,
          loudness=pool.get("loudness"),
          loudness_window=self.loudness_window,
          regularization=self.dpp_regularization,
          chunk=self.dpp_chunk,
          sampler=self.dpp_sampler,
          mcmc_iterations=self.dpp_mcmc_iterations,
      )
    phi = fit_phi(
        embeddings[indices] if indices.size else embeddings[:1], self.dim, seed=ctx.context.seed
    )
    return {**phi, "sample_indices": indices.astype(np.int32)}

  def init(self, rng, io):
    del rng
    if io.student.get("logits") is not None:
      raise ValueError(
          "sea: SEA students have no classifier head; build the student with "
          "model_kwargs.num_classes=None."
      )
    d, n = io.constants["components"].shape
    teacher_width = io.teachers[self.teacher]["embedding"].shape[-1]
    student_width = io.student["embedding"].shape[-1]
    if teacher_width != n or student_width != d:
      raise ValueError(
          f"sea: φ maps R^{n} to R^{d}, but the teacher embedding has {teacher_width} "
          f"dimensions and the student's {student_width}; the student's width must be dim."
      )
    return base.Variables()

  def target(self, io):
    """φ(f_T(x)) [batch, d]."""
    if not 0 <= self.teacher < len(io.teachers):
      raise ValueError(f"sea: teacher={self.teacher} but the run has {len(io.teachers)}.")
    return apply_phi(io.constants, io.teachers[self.teacher]["embedding"])

  def optimizer(self, student_tx, context):
    """The configured optimiser (Adam in the paper), its updates scaled down on plateaus."""
    if not self.plateau_patience:
      return student_tx
    return optax.chain(
        student_tx,
        optax.contrib.reduce_on_plateau(
            factor=self.plateau_factor,
            patience=self.plateau_patience,
            accumulation_size=context.steps_per_epoch,
        ),
    )

  def loss(self, params, state, io):
    del params, state
    mse = jnp.mean(embedding_losses.embedding_mse(io.student["embedding"], self.target(io)))
    l2 = conv_kernel_l2(io.student_variables["params"]) if self.conv_l2 else jnp.zeros(())
    return mse + self.conv_l2 * l2, base.Aux(metrics={"embedding_mse": mse, "conv_l2": l2})

  def eval_metrics(self, params, state, io):
    del params, state
    return {
        "embedding_mse": embedding_losses.embedding_mse(io.student["embedding"], self.target(io))
    }
