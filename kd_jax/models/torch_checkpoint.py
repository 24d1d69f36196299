"""Reads `torch.save` files without PyTorch: the saved object, with NumPy arrays for its tensors.

`load(path)` returns the pickled object (dicts, OrderedDicts, lists, tuples, numbers, strings)
with every tensor or `nn.Parameter` replaced by a C-contiguous NumPy array that owns its data
(views of one storage come back as independent copies). It is a safe loader: the pickle may name
only the globals torch itself writes for plain tensors (listed in `_GLOBALS` and the storage
classes); any other class or function is refused with a ValueError naming it and is never
imported. Both formats `torch.save` writes are read:

Zip format (the default since torch 1.6). A zip archive (stored, uncompressed) whose records all
sit under one folder, named after the file when it was written:

  <archive>/data.pkl      the object, pickled (protocol 2) with persistent ids for storages:
                          ('storage', <torch.FloatStorage-like class>, key, location, numel)
  <archive>/data/<key>    the storage's raw bytes (numel elements, file byte order)
  <archive>/byteorder     "little" or "big" (absent before torch 2.1: little-endian)
  <archive>/version, .format_version, .storage_alignment, .data/serialization_id: not needed

Legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`). Consecutive pickles in
one file, then raw storage bytes:

  1. MAGIC_NUMBER, 2. PROTOCOL_VERSION (1001), 3. sys_info ({"little_endian": ..., ...})
  4. the object, with persistent ids ('storage', <class>, root_key, location, numel, view)
     where view is None or (view_key, offset, size): a slice of the root storage in elements
  5. the list of root storage keys, in the order their bytes follow
  6. for each key: an 8-byte little-endian element count, then count × element-size bytes

In both, a tensor is pickled as `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
stride, requires_grad, backward_hooks[, metadata])` with offset and strides in elements (v3 adds
the dtype, used for dtypes without a storage class such as uint16, over an untyped byte storage),
and a parameter as `_rebuild_parameter(tensor, requires_grad, backward_hooks)`. Only
little-endian files are read (every file torch writes on x86 and ARM). The torch < 0.4 tar
format, TorchScript archives (`torch.jit.save`), sparse, quantized and conjugate-view tensors are
refused with a one-line ValueError that names the file.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, BinaryIO, Callable, NamedTuple

import ml_dtypes
import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# torch.<Name>Storage (the storage type of each pickled tensor) -> element dtype, little-endian.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    # Untyped bytes: what `_rebuild_tensor_v3` reinterprets with its dtype argument.
    "UntypedStorage": np.dtype("u1"),
}
# torch.<dtype> globals, which only `_rebuild_tensor_v3` takes (dtypes without a storage class).
_TORCH_DTYPES = {
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
}


class _FormatError(ValueError):
  """A problem with the file's content; `load` prefixes the file name."""


class _StorageType(NamedTuple):
  """What the unpickler returns for `torch.FloatStorage` and its siblings."""

  name: str
  dtype: np.dtype


def _strided_copy(storage: np.ndarray, offset, size, stride) -> np.ndarray:
  """The elements a torch tensor (offset, size, stride, all in elements) sees in its storage."""
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride) or not all(isinstance(n, int) for n in (offset, *size, *stride)):
    raise _FormatError(f"tensor with size {size}, stride {stride}, offset {offset!r}")
  if min(size, default=1) <= 0:
    if min(size) < 0:
      raise _FormatError(f"tensor with negative size {size}")
    return np.zeros(size, storage.dtype)
  # as_strided does no bounds check: a corrupt size or stride would read outside the storage.
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if offset < 0 or min(stride, default=0) < 0 or last >= storage.size:
    raise _FormatError(
        f"tensor (offset {offset}, size {size}, stride {stride}) reaches past its storage of"
        f" {storage.size} elements"
    )
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride], writeable=False
  )
  return np.array(view, order="C")  # a copy: contiguous, writable, independent of the storage


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
):
  del requires_grad, backward_hooks  # autograd state: meaningless for an array
  if metadata:  # conjugate / negative bits: the storage does not hold the tensor's values
    raise _FormatError(f"tensor with metadata {metadata!r} (a conjugate or negative view)")
  if not isinstance(storage, np.ndarray):
    raise _FormatError(f"tensor over {type(storage).__name__}, not a storage")
  return _strided_copy(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
  if not isinstance(dtype, np.dtype) or not isinstance(storage, np.ndarray):
    raise _FormatError(f"tensor of dtype {dtype!r} over {type(storage).__name__}")
  if storage.nbytes % dtype.itemsize:
    raise _FormatError(f"storage of {storage.nbytes} bytes read as {dtype}")
  return _rebuild_tensor_v2(
      storage.view(dtype), storage_offset, size, stride, requires_grad, backward_hooks, metadata
  )


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


# The only (module, name) globals a file may name, besides the storage classes and dtypes.
_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


def _text(value) -> str:
  # Files pickled by Python 2 carry some internal strings as bytes.
  return value.decode("ascii") if isinstance(value, bytes) else value


class _Unpickler(pickle.Unpickler):
  """Resolves torch's globals to the functions above and storages through `storage(pid)`.

  With `scan=True` tensors are not rebuilt (they become None): the legacy reader's first pass,
  which only collects the storages' types before their bytes have been read."""

  def __init__(self, file: BinaryIO, storage: Callable[[tuple], Any] | None, scan: bool = False):
    super().__init__(file)
    self._storage = storage
    self._scan = scan

  def find_class(self, module: str, name: str) -> Any:
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
      return _TORCH_DTYPES[name]
    target = _GLOBALS.get((module, name))
    if target is None:
      raise _FormatError(
          f"refuses to load {module}.{name}: only tensors, parameters, storages and"
          " OrderedDict are read (a safe loader never imports other globals)"
      )
    if self._scan and target is not collections.OrderedDict:
      return lambda *args: None
    return target

  def persistent_load(self, pid: Any) -> Any:
    if self._storage is None or not isinstance(pid, tuple) or not pid:
      raise _FormatError(f"unexpected persistent id {pid!r}")
    if _text(pid[0]) != "storage":
      # ('module', class, source_file, source): a pickled nn.Module, not a state dict.
      raise _FormatError(f"refuses the persistent id of type {_text(pid[0])!r} (not a storage)")
    if not isinstance(pid[1], _StorageType):
      raise _FormatError(f"storage of type {pid[1]!r}")
    return self._storage(pid)


def _bytes_as(data: bytes, storage_type: _StorageType, numel: int, key: str) -> np.ndarray:
  """A storage's bytes as a flat read-only array of `numel` elements."""
  if not isinstance(numel, int) or len(data) != numel * storage_type.dtype.itemsize:
    raise _FormatError(
        f"storage {key} holds {len(data)} bytes, not {numel!r} {storage_type.name} elements"
    )
  return np.frombuffer(data, storage_type.dtype)


def _load_zip(file: BinaryIO) -> Any:
  with zipfile.ZipFile(file) as archive:
    names = archive.namelist()
    if any(n.endswith("/constants.pkl") for n in names):
      raise _FormatError("a TorchScript archive (torch.jit.save), not a torch.save file")
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise _FormatError("a zip archive without one <archive>/data.pkl: not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "byteorder" in names:
      order = archive.read(prefix + "byteorder")
      if order != b"little":
        raise _FormatError(f"byte order {order!r}: only little-endian files are read")
    storages: dict[str, np.ndarray] = {}

    def storage(pid: tuple) -> np.ndarray:
      if len(pid) != 5:
        raise _FormatError(f"zip-format storage id of length {len(pid)}: {pid!r}")
      _, storage_type, key, _location, numel = pid  # the location (device) does not matter
      key = _text(key)
      if key not in storages:  # tensors sharing a storage name it again
        try:
          data = archive.read(f"{prefix}data/{key}")
        except KeyError:
          raise _FormatError(f"storage {key} has no record {prefix}data/{key}") from None
        storages[key] = _bytes_as(data, storage_type, numel, key)
      return storages[key]

    return _Unpickler(io.BytesIO(archive.read(pickles[0])), storage).load()


def _read_exactly(file: BinaryIO, count: int, what: str) -> bytes:
  data = file.read(count)
  if len(data) != count:
    raise _FormatError(f"truncated: {what} needs {count} bytes, {len(data)} left")
  return data


def _load_legacy(file: BinaryIO) -> Any:
  plain = lambda: _Unpickler(file, None).load()  # a pickle without tensors
  try:
    magic = plain()
  except Exception:  # pylint: disable=broad-except  (any garbage: it is not our format)
    magic = None
  if magic != MAGIC_NUMBER:
    raise _FormatError("not a torch.save file (neither a zip archive nor the legacy format)")
  version = plain()
  if version != PROTOCOL_VERSION:
    raise _FormatError(f"legacy protocol version {version!r}, not {PROTOCOL_VERSION}")
  sys_info = plain()
  if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
    raise _FormatError("written on a big-endian machine: only little-endian files are read")

  # The storages' bytes follow the object's pickle, and how many bytes each takes depends on its
  # element type, which only the pickle says. So: a first pass collects each root storage's type
  # and size (tensors become None), then the bytes are read, then a second pass rebuilds.
  start = file.tell()
  roots: dict[str, tuple[_StorageType, int]] = {}

  def parse(pid: tuple) -> tuple[str, tuple | None]:
    if len(pid) != 6:
      raise _FormatError(f"legacy storage id of length {len(pid)}: {pid!r}")
    _, storage_type, root_key, _location, numel, view = pid
    roots.setdefault(_text(root_key), (storage_type, numel))
    return _text(root_key), view

  _Unpickler(file, parse, scan=True).load()
  keys = plain()
  if not isinstance(keys, list) or set(map(_text, keys)) != set(roots):
    raise _FormatError("the list of storage keys does not match the storages the object uses")
  storages: dict[str, np.ndarray] = {}
  for key in map(_text, keys):
    storage_type, numel = roots[key]
    (count,) = struct.unpack("<q", _read_exactly(file, 8, f"the size of storage {key}"))
    if count != numel:
      raise _FormatError(f"storage {key}: {count} elements in the file, {numel!r} in the pickle")
    size = count * storage_type.dtype.itemsize
    storages[key] = _bytes_as(_read_exactly(file, size, f"storage {key}"), storage_type, numel, key)

  def resolve(pid: tuple) -> np.ndarray:
    root_key, view = parse(pid)
    storage = storages[root_key]
    if view is None:
      return storage
    _view_key, offset, size = view  # torch < 0.4's storage views: a slice of the root storage
    if not 0 <= offset <= offset + size <= storage.size:
      raise _FormatError(f"storage view {view!r} outside storage {root_key}")
    return storage[offset : offset + size]

  file.seek(start)
  return _Unpickler(file, resolve).load()


def load(path: str | os.PathLike) -> Any:
  """The object `torch.save` wrote to `path`, its tensors as NumPy arrays (see the module doc).

  Raises ValueError (one line, naming the file) for a file that is not a torch.save file, is
  corrupt or truncated, or names a global other than torch's tensor-rebuilding ones."""
  with open(path, "rb") as file:
    is_zip = file.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    file.seek(0)
    try:
      if is_zip:
        return _load_zip(file)
      if tarfile.is_tarfile(path):
        raise _FormatError("a tar archive: torch < 0.4's tar format is not read")
      return _load_legacy(file)
    except _FormatError as error:
      raise ValueError(f"{path}: {error}") from None
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
    ) as error:
      # A damaged file makes pickle, zipfile or NumPy fail in their own ways; one line says so.
      problem = f"{type(error).__name__}: {error}".replace("\n", " ")
      raise ValueError(f"{path}: corrupt torch.save file ({problem})") from error
