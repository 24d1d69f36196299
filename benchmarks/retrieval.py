"""Knowledge-base search: kd_jax exact / approximate top-k, ScaNN through kd_jax vs raw, and FAISS.

    nice .venv/bin/python benchmarks/retrieval.py --repeats=5   # CPU: results/retrieval_cpu.md
    python benchmarks/retrieval.py --preset=gpu --out=DIR/retrieval_gpu.md   # 1 M × 384

(`pip install -e '.[bench]'` brings faiss-cpu; without it the FAISS rows are skipped with a
note.) The database is N unit vectors in 384 dimensions drawn around N/100 random centres
(clustered like sentence embeddings; i.i.d. Gaussian vectors have no neighbourhood structure and
defeat every approximate index alike); the queries come from the same distribution, not from the
database.

Two tables. Exact search at each of the preset's sizes (CPU: 10 k, 200 k and 1 M entries): kd_jax
`exact_top_k` (one jitted program: even query chunks under `lax.map`, matmul + `top_k` each)
against the plain recipe it must match, a jitted `lax.top_k(q_chunk @ dbᵀ)` over Python-level
query chunks of the largest size the same score-memory bound allows; the two are timed
alternately, pass by pass, and each QPS is the median of `--repeats` passes over all queries
after a warm-up pass. Indexes at one size: recall@10 against float32 (HIGHEST-precision) exact
search, QPS (median of `--repeats` passes; rows whose ratio is reported are timed alternately),
build time and index size (serialised bytes; for JAX the device-resident database) of kd_jax
with `recall_target=0.95` (`lax.approx_max_k`), ScaNN through `kd_jax.retrieval.ScannSearcher`
and raw ScaNN with the same parameters at several `num_leaves_to_search`, and FAISS (exact
`IndexFlatIP`, `IndexIVFFlat` at several `nprobe`, `IndexHNSWFlat`) as the peer.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import pathlib
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from kd_jax import retrieval  # pylint: disable=wrong-import-position
from kd_jax.retrieval import search  # pylint: disable=wrong-import-position


@dataclasses.dataclass(frozen=True)
class Preset:
  exact_sizes: tuple[int, ...]  # database sizes of the exact-search table
  index_size: int  # database size of the index table
  num_queries: int


PRESETS = {
    "cpu": Preset((10_000, 200_000, 1_000_000), 100_000, 1_000),
    # The 1 M × 384 with 10 k queries.
    "gpu": Preset((1_000_000,), 1_000_000, 10_000),
    "smoke": Preset((5_000,), 5_000, 100),  # tests/benchmarks: the plumbing, in seconds
}
DIM, K = 384, 10


def clustered_unit_vectors(n: int, centres: np.ndarray, rng, spread: float = 1.5) -> np.ndarray:
  """Centre + isotropic noise at 1.5× the centres' scale, normalised: two points of one cluster
  have cosine ≈ 1 / (1 + spread²) ≈ 0.31, points of different clusters ≈ 0 ± 0.05. Float32 from
  the start: 1 M × 384 is 1.5 GB."""
  x = rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
  x *= spread
  x += centres[rng.integers(0, len(centres), n)]
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x


def dataset(num: int, num_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(database [num, DIM], queries [num_queries, DIM]) around num / 100 shared centres."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((max(10, num // 100), DIM), dtype=np.float32)
  return clustered_unit_vectors(num, centres, rng), clustered_unit_vectors(
      num_queries, centres, rng
  )


def timed(fn, repeats: int) -> tuple[float, object]:
  """(median seconds of `repeats` calls after one warm-up call, the last result)."""
  return interleaved({"only": fn}, repeats)["only"]


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, object]]:
  """`timed` for several callables whose ratio is reported, alternating call by call (a, b, a,
  b, ...) so that a shared machine's load falls on each alike; medians, not minima, so that one
  quiet moment does not decide a ratio."""
  results = {name: fn() for name, fn in fns.items()}  # warm-up (and compilation)
  seconds = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      results[name] = fn()
      seconds[name].append(time.perf_counter() - start)
  return {name: (statistics.median(seconds[name]), results[name]) for name in fns}


@jax.jit
def _matmul_top_k(queries, database):
  return jax.lax.top_k(queries @ database.T, K)


def plain_top_k(queries, database, chunk: int):
  """The reference recipe: a jitted matmul + top_k per query chunk, chunks looped in Python."""
  out = [_matmul_top_k(queries[i : i + chunk], database) for i in range(0, len(queries), chunk)]
  return jax.block_until_ready(out)


def exact_rows(sizes, num_queries: int, repeats: int) -> list[tuple]:
  """Per database size: (size, kd_jax QPS, plain QPS, kd_jax chunk rows, plain chunk rows,
  agreement of the two top-k lists)."""
  rows = []
  for num in sizes:
    database, queries = dataset(num, num_queries)
    device_db, device_q = jnp.asarray(database), jnp.asarray(queries)
    del database
    plain_chunk = max(1, min(num_queries, search.MAX_CHUNK_SCORES // num))
    timings = interleaved(
        {
            "kd_jax": lambda: jax.block_until_ready(
                retrieval.exact_top_k(device_q, device_db, k=K)
            ),
            "plain": lambda: plain_top_k(device_q, device_db, plain_chunk),
        },
        repeats,
    )
    kd_s, (kd_indices, _) = timings["kd_jax"]
    plain_s, plain_out = timings["plain"]
    plain_indices = np.concatenate([np.asarray(i) for _, i in plain_out])
    rows.append(
        (
            num,
            num_queries / kd_s,
            num_queries / plain_s,
            search.query_chunk_rows(num_queries, num),
            plain_chunk,
            retrieval.recall_at_k(np.asarray(kd_indices), plain_indices),
        )
    )
    print(rows[-1], flush=True)
    del device_db, device_q, timings, plain_out
  return rows


def raw_scann(database, params: search.ScannParams, leaves_to_search: int):
  import scann  # pylint: disable=g-import-not-at-top

  leaves = max(1, min(params.num_leaves, len(database) // 2))
  builder = scann.scann_ops_pybind.builder(database, K, "dot_product").tree(
      num_leaves=leaves,
      num_leaves_to_search=leaves_to_search,
      training_sample_size=min(params.training_sample_size, len(database)),
  )
  builder = builder.score_ah(
      params.dims_per_block,
      anisotropic_quantization_threshold=(params.anisotropic_quantization_threshold),
  )
  return builder.reorder(params.reorder).build()


def scann_bytes(searcher) -> int:
  with tempfile.TemporaryDirectory() as directory:
    searcher.serialize(directory)
    return sum(p.stat().st_size for p in pathlib.Path(directory).iterdir())


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no_hnsw", action="store_true")
  parser.add_argument("--note", default="")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  preset = PRESETS[args.preset]
  exact = exact_rows(preset.exact_sizes, preset.num_queries, args.repeats)
  num, num_queries = preset.index_size, preset.num_queries
  database, queries = dataset(num, num_queries)
  rows = []

  def add(name, build_s, search_s, indices, size_bytes, note=""):
    recall = retrieval.recall_at_k(np.asarray(indices)[:, :K], truth)
    rows.append((name, build_s, num_queries / search_s, recall, size_bytes, note))
    print(rows[-1], flush=True)

  # kd_jax exact (and the ground truth at float32 precision).
  start = time.perf_counter()
  device_db = jax.block_until_ready(jnp.asarray(database))
  put_s = time.perf_counter() - start
  device_q = jnp.asarray(queries)
  truth = np.asarray(
      retrieval.exact_top_k(device_q, device_db, k=K, precision=jax.lax.Precision.HIGHEST)[0]
  )
  search_exact = lambda **kw: jax.block_until_ready(
      retrieval.exact_top_k(device_q, device_db, k=K, **kw)
  )
  timings = interleaved(
      {"exact": search_exact, "approx": lambda: search_exact(recall_target=0.95)}, args.repeats
  )
  seconds, (indices, _) = timings["exact"]
  chunk = search.query_chunk_rows(num_queries, num)
  add("kd_jax exact_top_k", put_s, seconds, indices, database.nbytes, f"query chunks of {chunk}")
  seconds, (indices, _) = timings["approx"]
  add(
      "kd_jax exact_top_k(recall_target=0.95)",
      put_s,
      seconds,
      indices,
      database.nbytes,
      "lax.approx_max_k",
  )
  del device_db, device_q

  # ScaNN: kd_jax's wrapper against raw ScaNN, same parameters; one build each, and the
  # leaves searched (the recall/speed knob) varied at query time.
  leaves = int(round(np.sqrt(num)))
  sweep = (max(1, leaves // 40), max(2, leaves // 10), max(4, leaves // 4))
  params = search.ScannParams(
      num_leaves=leaves,
      num_leaves_to_search=sweep[-1],
      training_sample_size=min(num, 100_000),
      reorder=100,
  )
  start = time.perf_counter()
  wrapped = retrieval.ScannSearcher(database, params=params, default_k=K)
  wrapped_build_s = time.perf_counter() - start
  start = time.perf_counter()
  raw = raw_scann(database, params, sweep[-1])
  raw_build_s = time.perf_counter() - start
  wrapped_bytes = scann_bytes(wrapped._searcher)  # pylint: disable=protected-access
  raw_bytes = scann_bytes(raw)
  for to_search in sweep:
    label = f"leaves {leaves}, search {to_search}, AH 2 dims/block, reorder 100"
    timings = interleaved(
        {
            "wrapped": lambda: wrapped.search(queries, K, leaves_to_search=to_search),
            "raw": lambda: raw.search_batched_parallel(
                queries,
                final_num_neighbors=K,
                pre_reorder_num_neighbors=100,
                leaves_to_search=to_search,
            ),
        },
        args.repeats,
    )
    wrapped_s, (indices, _) = timings["wrapped"]
    add("ScaNN via kd_jax.retrieval", wrapped_build_s, wrapped_s, indices, wrapped_bytes, label)
    raw_s, (indices, _) = timings["raw"]
    add(
        "raw ScaNN search_batched_parallel",
        raw_build_s,
        raw_s,
        indices,
        raw_bytes,
        f"{label}; kd_jax / raw QPS = {raw_s / wrapped_s:.2f}",
    )

  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError:
    faiss = None
    print(
        "FAISS is not installed: its rows are skipped (pip install -e '.[bench]' brings it).",
        flush=True,
    )
  if faiss is not None:
    start = time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(database)
    build_s = time.perf_counter() - start
    seconds, (_, indices) = timed(lambda: flat.search(queries, K), args.repeats)
    add("faiss IndexFlatIP (exact)", build_s, seconds, indices, faiss.serialize_index(flat).nbytes)
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(DIM)  # kept referenced: the IVF index does not own it
    ivf = faiss.IndexIVFFlat(quantizer, DIM, leaves, faiss.METRIC_INNER_PRODUCT)
    ivf.train(database[: min(num, 100_000)])
    ivf.add(database)
    build_s = time.perf_counter() - start
    for nprobe in (max(1, leaves // 40), max(2, leaves // 10), max(4, leaves // 4)):
      ivf.nprobe = nprobe
      seconds, (_, indices) = timed(lambda: ivf.search(queries, K), args.repeats)
      add(
          "faiss IndexIVFFlat",
          build_s,
          seconds,
          indices,
          faiss.serialize_index(ivf).nbytes,
          f"nlist {leaves}, nprobe {nprobe}",
      )
    if not args.no_hnsw:
      start = time.perf_counter()
      hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
      hnsw.add(database)
      build_s = time.perf_counter() - start
      for ef in (32, 128):
        hnsw.hnsw.efSearch = ef
        seconds, (_, indices) = timed(lambda: hnsw.search(queries, K), args.repeats)
        add(
            "faiss IndexHNSWFlat",
            build_s,
            seconds,
            indices,
            faiss.serialize_index(hnsw).nbytes,
            f"M 32, efSearch {ef}",
        )
  write_results(args, exact, num, num_queries, rows)


def write_results(args, exact, num, num_queries, rows) -> None:
  from benchmarks.train_step import machine_description  # pylint: disable=g-import-not-at-top

  out = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"retrieval_{args.preset}.md")
  lines = [
      "# Knowledge-base search: kd_jax vs a plain matmul + top_k, ScaNN and FAISS",
      "",
      f"Command: `{shlex.join(['python', 'benchmarks/retrieval.py', *sys.argv[1:]])}`  ",
      f"Machine: {machine_description('cpu')}  ",
      f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
      f"Data: {DIM}-dimensional clustered unit vectors, {num_queries:,} queries, top-{K}; "
      f"QPS = median of {args.repeats} passes over all queries after a warm-up pass.",
  ]
  if args.note:
    lines += ["", args.note]
  lines += [
      "",
      "## Exact search",
      "",
      "kd_jax `exact_top_k` against a jitted `lax.top_k(q_chunk @ dbᵀ)` over query chunks "
      "looped in Python, both under the same score-memory bound (`MAX_CHUNK_SCORES` = "
      f"{search.MAX_CHUNK_SCORES:,} floats a chunk), timed alternately pass by pass; "
      "agreement = mean overlap of the two top-10 lists.",
      "",
      "| database | kd_jax QPS | plain QPS | kd_jax / plain | kd_jax chunk rows | plain chunk "
      "rows | agreement |",
      "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for size, kd_qps, plain_qps, kd_chunk, plain_chunk, agreement in exact:
    lines.append(
        f"| {size:,} | {kd_qps:,.0f} | {plain_qps:,.0f} | {kd_qps / plain_qps:.2f}× | "
        f"{kd_chunk} | {plain_chunk} | {agreement:.3f} |"
    )
  lines += [
      "",
      f"## Indexes, {num:,} entries",
      "",
      "| search | build (s) | QPS | recall@10 | size (MB) | settings |",
      "|---|---|---|---|---|---|",
  ]
  for name, build_s, qps, recall, size_bytes, note in rows:
    lines.append(
        f"| {name} | {build_s:.2f} | {qps:,.0f} | {recall:.3f} | "
        f"{size_bytes / 1e6:.0f} | {note} |"
    )
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text("\n".join(lines) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
