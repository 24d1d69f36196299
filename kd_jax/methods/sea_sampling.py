"""SEA's strategies for choosing the pool examples on which φ is fitted (PAPERS.md §1, Table 4).

The pool is the target-domain distillation set in its stored order (for SONYC-UST: time order per
sensor, so neighbours in the order are neighbours in time). Each strategy returns k distinct
indices into the pool, sorted.

  random    k indices uniformly without replacement.
  loudness  SPL-informed: relevance r_i = rank-normalised loudness within a sliding window of w
            pool positions centred on i (the paper: a 2-hour window of a sensor's recordings),
              r_i = (#{j ∈ W_i : ℓ_j < ℓ_i} + (#{j ∈ W_i : ℓ_j = ℓ_i} + 1)/2) / |W_i|  ∈ (0, 1],
            (the average rank of ℓ_i among the window's levels, divided by the window's size);
            then k draws ∝ r without replacement (successive sampling: each draw picks i with
            probability r_i / Σ_{j not yet drawn} r_j).
  dpp_div   a k-DPP, P(S) ∝ det(L_S) for |S| = k, with L = F Fᵀ + λI, F the teacher embeddings
            with each row L1-normalised, λ = 0.1: favours sets of diverse embeddings.
  dpp       the same with quality weights: L_ij = q_i (F Fᵀ)_ij q_j + λ δ_ij, q = the loudness
            relevance r above: diverse *and* loud.

The paper drew a k-DPP per day of recordings (MCMC); here the pool is cut into consecutive chunks
of at most `chunk` examples (the "days"), k is shared among them in proportion to their sizes
(largest remainders), and each chunk's k-DPP is sampled with `dppy` — exactly (eigendecomposition
of L, then the projection DPP of the chosen eigenvectors; Kulesza & Taskar 2012, Alg. 8) or by
the basis-exchange MCMC chain the paper used. A chunk costs O(chunk³) for the exact sampler.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

STRATEGIES = ("random", "loudness", "dpp", "dpp_div")
DPP_SAMPLERS = ("exact", "mcmc")


def _check_k(k: int, n: int) -> None:
  if not 1 <= k <= n:
    raise ValueError(f"sampling: need 1 <= k <= pool size {n}, got k={k}.")


def sample_random(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """k of range(n) uniformly without replacement, sorted."""
  _check_k(k, n)
  return np.sort(rng.choice(n, size=k, replace=False))


def loudness_relevance(loudness: np.ndarray, window: int) -> np.ndarray:
  """r_i: the average rank of ℓ_i within the `window` positions centred on i, over the window's
  size (truncated at the pool's ends); see the module docstring. Returns [N] in (0, 1]."""
  loudness = np.asarray(loudness, np.float64)
  if loudness.ndim != 1 or not np.all(np.isfinite(loudness)):
    raise ValueError(f"loudness must be a finite vector [N], got shape {loudness.shape}.")
  if window < 1:
    raise ValueError(f"loudness window must be >= 1, got {window}.")
  half_before, half_after = (window - 1) // 2, window // 2
  padded = np.pad(loudness, (half_before, half_after), constant_values=np.nan)
  # [N, window]: row i holds the levels of W_i, NaN beyond the pool's ends (NaN compares False).
  views = np.lib.stride_tricks.sliding_window_view(padded, window)
  centre = loudness[:, None]
  below = np.sum(views < centre, axis=1)
  equal = np.sum(views == centre, axis=1)  # includes i itself
  size = np.sum(~np.isnan(views), axis=1)
  return (below + (equal + 1) / 2.0) / size


def sample_loudness(
    loudness: np.ndarray, k: int, window: int, rng: np.random.Generator
) -> np.ndarray:
  """k indices drawn ∝ loudness relevance without replacement, sorted."""
  relevance = loudness_relevance(loudness, window)
  _check_k(k, relevance.size)
  return np.sort(rng.choice(relevance.size, size=k, replace=False, p=relevance / relevance.sum()))


def dpp_kernel(
    embeddings: np.ndarray, quality: np.ndarray | None = None, regularization: float = 0.1
) -> np.ndarray:
  """L = diag(q) F Fᵀ diag(q) + λI with F the L1-normalised rows of `embeddings` (q = 1: dpp_div)."""
  embeddings = np.asarray(embeddings, np.float64)
  if embeddings.ndim != 2:
    raise ValueError(f"dpp_kernel needs embeddings [N, n], got shape {embeddings.shape}.")
  if regularization <= 0:
    raise ValueError(f"dpp regularization must be > 0 (L positive definite), got {regularization}.")
  features = embeddings / np.maximum(np.abs(embeddings).sum(axis=1, keepdims=True), 1e-12)
  if quality is not None:
    quality = np.asarray(quality, np.float64)
    if quality.shape != embeddings.shape[:1]:
      raise ValueError(f"quality must be [N] = {embeddings.shape[:1]}, got {quality.shape}.")
    features = features * quality[:, None]
  return features @ features.T + regularization * np.eye(len(features))


def sample_k_dpp(
    kernel: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    sampler: str = "exact",
    mcmc_iterations: int = 0,
) -> np.ndarray:
  """One draw of the k-DPP with likelihood kernel L (P(S) ∝ det L_S, |S| = k), sorted (dppy).

  mcmc_iterations: the basis-exchange chain's length (0: 10·N), from a greedy start.
  """
  from dppy import finite_dpps  # pylint: disable=g-import-not-at-top  (only SEA's dpp needs it)

  kernel = np.asarray(kernel, np.float64)
  _check_k(k, kernel.shape[0])
  if sampler not in DPP_SAMPLERS:
    raise ValueError(f"dpp sampler must be one of {DPP_SAMPLERS}, got {sampler!r}.")
  # dppy takes a legacy RandomState; seeding it from `rng` keeps the whole draw reproducible.
  state = np.random.RandomState(rng.integers(2**32 - 1))
  with contextlib.redirect_stdout(io.StringIO()):  # dppy prints how it derived its kernels
    if sampler == "exact":
      values, vectors = np.linalg.eigh(kernel)
      dpp = finite_dpps.FiniteDPP("likelihood", L_eig_dec=(np.maximum(values, 0.0), vectors))
      sample = dpp.sample_exact_k_dpp(size=k, mode="GS", random_state=state)
    else:  # the chain evaluates det(L_S) of its states directly: no eigendecomposition
      dpp = finite_dpps.FiniteDPP("likelihood", L=kernel)
      sample = dpp.sample_mcmc_k_dpp(  # the chain's last state
          size=k, nb_iter=mcmc_iterations or 10 * kernel.shape[0], random_state=state
      )
  sample = np.sort(np.asarray(sample, np.int64))
  if len(np.unique(sample)) != k:
    raise RuntimeError(f"the k-DPP sampler returned {sample}, not {k} distinct indices.")
  return sample


def chunk_sizes(n: int, k: int, chunk: int) -> list[tuple[int, int, int]]:
  """[(start, stop, k_c)]: consecutive chunks of <= `chunk` examples, Σ k_c = k, k_c ∝ size
  (largest remainders, earlier chunks first among ties)."""
  _check_k(k, n)
  if chunk < 1:
    raise ValueError(f"dpp chunk must be >= 1, got {chunk}.")
  starts = list(range(0, n, chunk))
  sizes = np.array([min(chunk, n - s) for s in starts])
  exact = k * sizes / n
  counts = np.floor(exact).astype(int)
  order = np.argsort(-(exact - counts), kind="stable")
  counts[order[: k - counts.sum()]] += 1
  return [(s, s + int(size), int(c)) for s, size, c in zip(starts, sizes, counts)]


def sample_dpp(
    embeddings: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    quality: np.ndarray | None = None,
    regularization: float = 0.1,
    chunk: int = 2000,
    sampler: str = "exact",
    mcmc_iterations: int = 0,
) -> np.ndarray:
  """k indices from per-chunk k-DPPs with kernel `dpp_kernel(embeddings, quality)`, sorted."""
  picked = []
  for start, stop, count in chunk_sizes(len(embeddings), k, chunk):
    if count == 0:
      continue
    kernel = dpp_kernel(
        embeddings[start:stop],
        None if quality is None else quality[start:stop],
        regularization,
    )
    picked.append(
        start + sample_k_dpp(kernel, count, rng, sampler=sampler, mcmc_iterations=mcmc_iterations)
    )
  return np.sort(np.concatenate(picked))


def select(
    strategy: str,
    k: int,
    *,
    seed: int,
    embeddings: np.ndarray,
    loudness: np.ndarray | None = None,
    loudness_window: int = 120,
    regularization: float = 0.1,
    chunk: int = 2000,
    sampler: str = "exact",
    mcmc_iterations: int = 0,
) -> np.ndarray:
  """The pool indices of `strategy` (one of STRATEGIES); `loudness` for "loudness" and "dpp"."""
  if strategy not in STRATEGIES:
    raise ValueError(f"sampling must be one of {STRATEGIES}, got {strategy!r}.")
  rng = np.random.default_rng(seed)
  n = len(embeddings)
  if strategy in ("loudness", "dpp") and (loudness is None or len(loudness) != n):
    raise ValueError(f"sampling={strategy!r} needs one loudness value per pool example ({n}).")
  if strategy == "random":
    return sample_random(n, k, rng)
  if strategy == "loudness":
    return sample_loudness(loudness, k, loudness_window, rng)
  quality = loudness_relevance(loudness, loudness_window) if strategy == "dpp" else None
  return sample_dpp(
      embeddings,
      k,
      rng,
      quality=quality,
      regularization=regularization,
      chunk=chunk,
      sampler=sampler,
      mcmc_iterations=mcmc_iterations,
  )
