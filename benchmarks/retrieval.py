"""Knowledge-base search: kd_jax exact / approximate top-k, ScaNN through kd_jax vs raw, and FAISS.

    nice .venv/bin/python benchmarks/retrieval.py               # CPU: results/retrieval_cpu.md
    python benchmarks/retrieval.py --preset=gpu --out=DIR/retrieval_gpu.md   # 1 M × 384

(`pip install -e '.[bench]'` brings faiss-cpu.) The database is N unit vectors in 384 dimensions
drawn around N/100 random centres (clustered like sentence embeddings; i.i.d. Gaussian vectors
have no neighbourhood structure and defeat every approximate index alike); the queries come from
the same distribution, not from the database. Ground truth: `exact_top_k` with float32
(HIGHEST-precision) products. Each row reports build time, queries per second (best of
`--repeats` passes over all queries, after a warm-up pass; rows whose ratio is reported are
timed alternately, pass by pass), recall@10, and the index size
(serialised bytes; for JAX the device-resident database).

Rows: kd_jax `exact_top_k` (chunked matmul + top_k) against the plain recipe it must match
(`lax.top_k(q_chunk @ dbᵀ)` over Python-level query chunks of the same size), kd_jax with
`recall_target=0.95` (`lax.approx_max_k`), ScaNN through `kd_jax.retrieval.ScannSearcher` and
raw ScaNN with the same parameters at several `num_leaves_to_search`, and FAISS (exact
`IndexFlatIP`, `IndexIVFFlat` at several `nprobe`, `IndexHNSWFlat`) as the peer.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import shlex
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

# (database size, queries): the GPU preset is the 1 M × 384 with 10 k queries.
PRESETS = {"cpu": (100_000, 1_000), "gpu": (1_000_000, 10_000), "smoke": (5_000, 100)}
DIM, K = 384, 10


def clustered_unit_vectors(n: int, centres: np.ndarray, rng, spread: float = 1.5) -> np.ndarray:
  """Centre + isotropic noise at 1.5× the centres' scale, normalised: two points of one cluster
  have cosine ≈ 1 / (1 + spread²) ≈ 0.31, points of different clusters ≈ 0 ± 0.05."""
  x = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, centres.shape[1]))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed(fn, repeats: int) -> tuple[float, object]:
  """(best seconds of `repeats` calls after one warm-up call, the last result)."""
  return interleaved({"only": fn}, repeats)["only"]


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, object]]:
  """`timed` for several callables whose ratio is reported, alternating call by call so that a
  shared machine's load falls on each alike."""
  results = {name: fn() for name, fn in fns.items()}  # warm-up (and compilation)
  best = dict.fromkeys(fns, float("inf"))
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      results[name] = fn()
      best[name] = min(best[name], time.perf_counter() - start)
  return {name: (best[name], results[name]) for name in fns}


@jax.jit
def _matmul_top_k(queries, database):
  return jax.lax.top_k(queries @ database.T, K)


def plain_top_k(queries, database, chunk: int):
  """The reference recipe: a jitted matmul + top_k per query chunk, chunks looped in Python."""
  out = [_matmul_top_k(queries[i : i + chunk], database) for i in range(0, len(queries), chunk)]
  return jax.block_until_ready(out)


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
  num, num_queries = PRESETS[args.preset]
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(max(10, num // 100), DIM)).astype(np.float32)
  database = clustered_unit_vectors(num, centres, rng)
  queries = clustered_unit_vectors(num_queries, centres, rng)
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
  chunk = max(1, min(num_queries, search.MAX_CHUNK_SCORES // num))
  timings = interleaved(
      {
          "exact": search_exact,
          "plain": lambda: plain_top_k(device_q, device_db, chunk),
          "approx": lambda: search_exact(recall_target=0.95),
      },
      args.repeats,
  )
  seconds, (indices, _) = timings["exact"]
  add(
      "kd_jax exact_top_k",
      put_s,
      seconds,
      indices,
      database.nbytes,
      f"query chunks of {chunk}, default matmul precision",
  )
  plain_s, plain_out = timings["plain"]
  plain_indices = np.concatenate([np.asarray(i) for _, i in plain_out])
  add(
      "plain jit(matmul + top_k) per query chunk",
      put_s,
      plain_s,
      plain_indices,
      database.nbytes,
      f"kd_jax / plain QPS = {plain_s / seconds:.2f}",
  )
  seconds, (indices, _) = timings["approx"]
  add(
      "kd_jax exact_top_k(recall_target=0.95)",
      put_s,
      seconds,
      indices,
      database.nbytes,
      "lax.approx_max_k",
  )

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
  write_results(args, num, num_queries, rows)


def write_results(args, num, num_queries, rows) -> None:
  from benchmarks.train_step import machine_description  # pylint: disable=g-import-not-at-top

  out = pathlib.Path(args.out or REPO / "benchmarks" / "results" / f"retrieval_{args.preset}.md")
  lines = [
      "# Knowledge-base search: kd_jax vs ScaNN and FAISS",
      "",
      f"Command: `{shlex.join(['python', 'benchmarks/retrieval.py', *sys.argv[1:]])}`  ",
      f"Machine: {machine_description('cpu')}  ",
      f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
      f"Data: {num:,} × {DIM} clustered unit vectors, {num_queries:,} queries, top-{K}; "
      f"QPS = best of {args.repeats} passes over all queries.",
  ]
  if args.note:
    lines += ["", args.note]
  lines += [
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
