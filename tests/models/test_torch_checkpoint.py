"""The torch-free `torch.save` reader, on files torch wrote in both formats
(tests/models/fixtures/torch_checkpoints, made by scripts/make_torch_fixtures.py). Expected values
are recomputed with NumPy from the recipe in torch_fixtures.py; torch is needed by one optional
round-trip test only.
"""

import collections
import pickle
import subprocess
import zipfile

import ml_dtypes
import numpy as np
import pytest

from kd_jax.models import torch_checkpoint
from tests.models import torch_fixtures as recipe


def _expected_tensors(fmt: str) -> dict:
  """NumPy's twin of scripts/make_torch_fixtures.py's `tensors(fmt)`."""
  dtypes = recipe.tensor_bases()
  dtypes["bfloat16"] = dtypes["bfloat16"].astype(ml_dtypes.bfloat16)
  if fmt == "legacy":
    del dtypes["uint16"]  # torch cannot load an untyped storage from a legacy file
  base = recipe.shared_base()
  return {
      "dtypes": dtypes,
      "permuted": dtypes["float32"].transpose(2, 0, 1),
      "base": base,
      "window": base[5:17].reshape(3, 4),
      "strided": base.reshape(4, 5)[1:, ::2],
      "parameter": recipe.pattern((2, 3), 5).astype(np.float32),
      "nested": {
          "list": [3, "text", None, base[::7]],
          "tuple": (1.5, True),
          "ordered": collections.OrderedDict([("b", 2), ("a", dtypes["int64"][1:3])]),
      },
  }


def assert_same_tree(got, want, where="") -> None:
  """Same containers (type, keys and order), arrays equal in dtype, shape and every value."""
  assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
  if isinstance(want, np.ndarray):
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    np.testing.assert_array_equal(got, want, err_msg=where)
  elif isinstance(want, dict):
    assert list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
    for key in want:
      assert_same_tree(got[key], want[key], f"{where}/{key}")
  elif isinstance(want, (list, tuple)):
    assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
      assert_same_tree(g, w, f"{where}[{i}]")
  else:
    assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_every_dtype_view_and_container_reads_back(fmt):
  got = torch_checkpoint.load(recipe.tensors_file(fmt))
  assert_same_tree(got, _expected_tensors(fmt))
  # Copies, not views of the storage: contiguous, writable, no memory shared between tensors.
  for name in ("permuted", "window", "strided"):
    assert got[name].flags.c_contiguous and got[name].flags.writeable
    assert not np.shares_memory(got[name], got["base"])


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_the_moco_checkpoint_reads_back_in_its_official_structure(fmt):
  got = torch_checkpoint.load(recipe.moco_file(fmt))
  assert_same_tree(got, recipe.moco_checkpoint())
  # nn.Module.state_dict()'s attribute survives (the OrderedDict is rebuilt with its state).
  assert got["state_dict"]._metadata[""] == {"version": 1}


def test_a_strided_tensor_outside_its_storage_is_refused():
  # as_strided would otherwise read past the storage's memory.
  storage = np.arange(6, dtype=np.float32)
  args = (False, collections.OrderedDict())
  np.testing.assert_array_equal(
      torch_checkpoint._rebuild_tensor_v2(storage, 1, (2, 2), (1, 3), *args), [[1, 4], [2, 5]]
  )
  with pytest.raises(ValueError, match="reaches past its storage"):
    torch_checkpoint._rebuild_tensor_v2(storage, 2, (2, 2), (1, 3), *args)


def _zip_with_pickle(path, payload: bytes):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", payload)
    archive.writestr("archive/byteorder", "little")


def _legacy_with_pickle(path, payload: bytes):
  header = [torch_checkpoint.MAGIC_NUMBER, torch_checkpoint.PROTOCOL_VERSION, {}]
  path.write_bytes(b"".join(pickle.dumps(x, protocol=2) for x in header) + payload)


class _Touch:
  """Unpickled by a loader that imports globals, it runs `touch <path>`."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return subprocess.call, (["touch", self.path],)


@pytest.mark.parametrize("write", [_zip_with_pickle, _legacy_with_pickle])
def test_any_other_global_is_refused_not_imported(tmp_path, write):
  path, marker = tmp_path / "evil.pt", tmp_path / "touched"
  write(path, pickle.dumps({"w": _Touch(marker)}, protocol=2, fix_imports=False))
  with pytest.raises(ValueError, match=r"evil\.pt: refuses to load subprocess\.call") as error:
    torch_checkpoint.load(path)
  assert "\n" not in str(error.value)
  assert not marker.exists()


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"not a checkpoint at all\n", "not a torch.save file"),
        (pickle.dumps({"a": 1}), "not a torch.save file"),
        (b"", "not a torch.save file"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named_in_one_line(tmp_path, content, problem):
  path = tmp_path / "other.bin"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=f"other.bin: {problem}") as error:
    torch_checkpoint.load(path)
  assert "\n" not in str(error.value)


def test_a_zip_that_is_not_a_checkpoint_is_named(tmp_path):
  path = tmp_path / "archive.zip"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("readme.txt", "hello")
  with pytest.raises(ValueError, match="archive.zip: a zip archive without one"):
    torch_checkpoint.load(path)


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_a_truncated_checkpoint_is_named_in_one_line(tmp_path, fmt):
  data = recipe.moco_file(fmt).read_bytes()
  path = tmp_path / "cut.pth.tar"
  path.write_bytes(data[: len(data) - 1000])
  with pytest.raises(ValueError, match=r"cut\.pth\.tar: ") as error:
    torch_checkpoint.load(path)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_matches_torch_load_on_fresh_random_tensors(tmp_path, fmt):
  """Optional (torch is a benchmark extra): a round trip through the torch of the machine."""
  torch = pytest.importorskip("torch")
  generator = torch.Generator().manual_seed(0)
  big = torch.randn(6, 5, 4, generator=generator)
  saved = {
      "float32": torch.randn(3, 7, generator=generator),
      "bfloat16": torch.randn(4, 3, generator=generator).to(torch.bfloat16),
      "int64": torch.randint(-(2**40), 2**40, (9,), generator=generator),
      "bool": torch.rand(5, generator=generator) > 0.5,
      "channels_last": torch.randn(2, 3, 4, 5, generator=generator).to(
          memory_format=torch.channels_last
      ),
      "view": big.permute(2, 0, 1)[1:, ::2, 3:],
      "expanded": torch.randn(3, 1, generator=generator).expand(3, 4),  # stride 0
      "parameter": torch.nn.Parameter(torch.randn(2, 2, generator=generator)),
  }
  path = tmp_path / "fresh.pt"
  torch.save(saved, path, _use_new_zipfile_serialization=fmt == "zip")
  got = torch_checkpoint.load(path)
  want = torch.load(path, weights_only=True)
  for key, tensor in want.items():
    expected = tensor.detach()
    if expected.dtype == torch.bfloat16:
      expected = expected.float().numpy().astype(ml_dtypes.bfloat16)
    else:
      expected = expected.numpy()
    assert_same_tree(got[key], expected, key)
