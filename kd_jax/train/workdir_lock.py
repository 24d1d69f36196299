"""An exclusive lock on a workdir: two runs in one workdir must not interleave.

Without it, a second command started in a busy workdir (a re-run typed while the first still
trains, two cluster jobs given the same path) appends to the same metrics file and races the
first inside orbax. The lock is `fcntl.flock` on WORKDIR/.lock, which the kernel releases when
the process dies (SIGKILL included), so a crashed run never leaves a stale lock behind; the file
keeps the holder's pid, host and start time for the message the second run prints.

On a multi-host run only process 0 takes the lock (the workdir is shared storage, and hosts of
one run must not exclude each other). Locks are re-entrant within a process: a staged run holds
WORKDIR while each stage may lock its own sub-directory, and a caller that already holds a
workdir may call code that locks it again.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

import jax

LOCK_NAME = ".lock"
_held: dict[str, tuple[int, int]] = {}  # realpath -> (file descriptor, depth)


class WorkdirBusyError(RuntimeError):
  """Another process holds the workdir."""


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      info = json.load(f)
    return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
  except (OSError, ValueError, KeyError, TypeError):
    return "a process whose details could not be read"


def _is_primary() -> bool:
  """Process 0 of the run, without initialising a JAX backend (which must not happen before
  `jax.distributed.initialize`): before that call every process still counts as its own run,
  unless JAX_PROCESS_ID says otherwise (see `mesh.initialize_distributed`)."""
  if jax.distributed.is_initialized():
    return jax.process_index() == 0
  return os.environ.get("JAX_PROCESS_ID", "").strip() in ("", "0")


def acquire(workdir: str) -> None:
  """Takes the lock on `workdir` (created if needed) or raises WorkdirBusyError at once.

  On a multi-host run call it after `jax.distributed.initialize`, so that only process 0 locks.
  """
  if not _is_primary():
    return
  os.makedirs(workdir, exist_ok=True)
  key = os.path.realpath(workdir)
  if key in _held:
    fd, depth = _held[key]
    _held[key] = (fd, depth + 1)
    return
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise WorkdirBusyError(  # pylint: disable=raise-missing-from
        f"{workdir} is in use by another run ({_holder(path)}); wait for it to finish, stop "
        "it, or use another workdir."
    )
  info = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  os.ftruncate(fd, 0)
  os.write(fd, json.dumps(info).encode())
  _held[key] = (fd, 1)


def busy_holder(workdir: str) -> str | None:
  """Who holds `workdir` when another process does (for readers: a run still training must not
  be loaded as if finished); None when it is free or held by this process. Creates nothing."""
  if os.path.realpath(workdir) in _held:
    return None
  path = os.path.join(workdir, LOCK_NAME)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:  # no lock file: no run ever held it, or the last one left nothing behind
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  except BlockingIOError:
    return _holder(path)
  finally:
    os.close(fd)


def release(workdir: str) -> None:
  """Drops one level of the lock; the last release unlocks (the file itself stays)."""
  key = os.path.realpath(workdir)
  if key not in _held:
    return
  fd, depth = _held[key]
  if depth > 1:
    _held[key] = (fd, depth - 1)
    return
  del _held[key]
  # A workdir that holds nothing but the lock (a run rejected at start-up) is left as it was
  # found: the lock file goes, so a rejected config leaves no trace.
  path = os.path.join(workdir, LOCK_NAME)
  try:
    if os.listdir(workdir) == [LOCK_NAME]:
      os.unlink(path)
  except OSError:
    pass
  fcntl.flock(fd, fcntl.LOCK_UN)
  os.close(fd)


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """`with hold(workdir):` — the lock for the duration of the block."""
  acquire(workdir)
  try:
    yield
  finally:
    release(workdir)
