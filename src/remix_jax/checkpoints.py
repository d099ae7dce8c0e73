"""Orbax checkpoints of parameter pytrees, with a JSON of metadata beside them.

Layout of a checkpoint folder::

    <dir>/<step>/params/...   the model weights (what ``load_pretrained`` restores)
    <dir>/<step>/state/...    optional training state (optimizer, step, PRNG key)
    <dir>/meta.json           architecture, command, git commit, metrics

Restores are always against a target structure (``jax.eval_shape`` of the init), so
optimizer states come back as the same pytrees they were saved from. Never pickle.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
LOCK_FILE = ".lock"  # held (flock) by the process training into the folder
_claimed: dict[str, int] = {}  # folder -> the open lock file's descriptor, in this process


class UnreadableCheckpoint(ValueError):
    """A checkpoint that is corrupt or does not match the structure it is read into."""


class Restored(NamedTuple):
    params: Any
    state: Any
    step: int


def _manager(directory: str, keep: int = 1, create: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class CheckpointDirInUse(ValueError):
    """Another process is training into the folder."""


def claim(directory: str) -> None:
    """Makes this process the only one that trains into ``directory`` until it exits.

    Two runs on one folder would restore, save and prune each other's checkpoints (a
    run started while another saves finds no finished checkpoint and starts over; the
    first one's next save then deletes the newer step). An advisory lock
    (``fcntl.flock`` on ``<directory>/.lock``) is held for the life of the process, so
    a killed run releases it at once; claiming a folder this process holds is a no-op.
    Where ``fcntl`` does not exist (Windows), nothing is locked.

    Raises:
      CheckpointDirInUse: another process holds ``directory``.
    """
    try:
        import fcntl
    except ImportError:
        return
    os.makedirs(directory, exist_ok=True)
    directory = os.path.realpath(directory)  # one folder, whichever path names it
    if directory in _claimed:
        return
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CheckpointDirInUse(
            f"--checkpoint-dir {directory} is in use: {owner} is training into it; "
            "wait for it to finish or pick another folder"
        ) from None
    except OSError as e:  # a file system without locks (some network mounts)
        os.close(fd)
        logger.warning("cannot lock %s (%s): not guarded against a second run", directory, e)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()}".encode())
    _claimed[directory] = fd


def prepare_dir(directory: str, fresh: bool = False) -> None:
    """Makes ``directory`` ready for checkpoints (emptied first if ``fresh``) and claims
    it for this process (:func:`claim`), so that a folder that cannot take them, or
    that another run is training into, fails at once, not after hours of training.

    Raises:
      ValueError: ``directory`` is a file, cannot be created or is not writable.
      CheckpointDirInUse: another process is training into ``directory``.
    """
    import shutil

    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"--checkpoint-dir {directory} is a file, not a folder")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--checkpoint-dir {directory} cannot be created ({e.strerror})") from e
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"--checkpoint-dir {directory} is not writable")
    claim(directory)  # before emptying it: --fresh must not delete another run's work
    if fresh:
        for name in os.listdir(directory):
            if name != LOCK_FILE:
                path = os.path.join(directory, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)


def latest_step(directory: str) -> int | None:
    """The newest saved step in ``directory``, or None if it holds no checkpoint.

    Safe to call while a run trains into ``directory`` (a progress monitor, a test):
    orbax lists the step folders and then reads each one's timestamp, and a step the
    run prunes in between vanishes under it; the listing is then simply taken again.
    """
    for _ in range(4):
        try:
            return _newest_step(directory)
        except FileNotFoundError:  # a step folder pruned between listing and reading
            time.sleep(0.05)
    return _newest_step(directory)  # the fifth try lets the error out


def _newest_step(directory: str) -> int | None:
    if not os.path.isdir(directory):
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def save(
    directory: str,
    step: int,
    params: Any,
    *,
    state: Any = None,
    metadata: dict | None = None,
    keep: int = 1,
) -> None:
    """Saves ``params`` (and optional training ``state``) as checkpoint ``step``.

    Blocks until the files are on disk; an existing checkpoint of the same step is
    replaced. Older steps beyond ``keep`` are deleted. ``metadata`` (if given) is
    written atomically to ``meta.json``.
    """
    items = {"params": ocp.args.StandardSave(params)}
    if state is not None:
        items["state"] = ocp.args.StandardSave(state)
    with _manager(directory, keep) as manager:
        if step in manager.all_steps():
            manager.delete(step)  # orbax refuses to overwrite a step, even with force
        manager.save(step, args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()
    if metadata is not None:
        write_metadata(directory, metadata)


def restore(
    directory: str,
    params_target: Any,
    *,
    state_target: Any = None,
    step: int | None = None,
) -> Restored:
    """Restores a checkpoint against target structures.

    Args:
      directory: checkpoint folder.
      params_target: pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. from
        ``jax.eval_shape`` of the model's init) giving the expected structure.
      state_target: same for the training state; None skips it.
      step: step to restore; None takes the latest.

    Raises:
      FileNotFoundError: no checkpoint in ``directory``.
      UnreadableCheckpoint: (a ValueError) the checkpoint does not match the target
        structure or is corrupt.
    """
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(
            f"no checkpoint in {os.path.abspath(directory)} (train one with "
            "`python -m train.<component>` or check the path)"
        )
    items = {"params": ocp.args.StandardRestore(_abstract(params_target))}
    if state_target is not None:
        items["state"] = ocp.args.StandardRestore(_abstract(state_target))
    try:
        with _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(**items))
    except FileNotFoundError:
        raise
    except Exception as e:
        # one line: TensorStore's messages run on with a multi-line spec dump
        detail = (str(e).strip().splitlines() or [""])[0][:300]
        raise UnreadableCheckpoint(
            f"checkpoint {os.path.abspath(directory)} step {step} does not match the "
            f"expected structure or is corrupt: {type(e).__name__}: {detail}"
        ) from e
    restored_params = out["params"]
    if jax.tree.structure(restored_params) != jax.tree.structure(params_target):
        raise UnreadableCheckpoint(
            f"checkpoint {directory} holds params of structure "
            f"{jax.tree.structure(restored_params)}, expected {jax.tree.structure(params_target)}"
        )
    return Restored(restored_params, out["state"] if state_target is not None else None, step)


def _abstract(tree: Any) -> Any:
    # An explicit sharding (the array's own, else the default device) lets a
    # checkpoint written on another topology (say, a GPU) restore here.
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def spec(a):
        sharding = getattr(a, "sharding", None) or default
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

    return jax.tree.map(spec, tree)


def write_metadata(directory: str, metadata: dict) -> None:
    """Writes ``<directory>/meta.json`` atomically (temp file + rename)."""
    write_json(os.path.join(directory, META_FILE), metadata)


def write_json(path: str, content: dict) -> None:
    """Writes a JSON file atomically (temp file + rename), creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_metadata(directory: str) -> dict:
    """Reads ``<directory>/meta.json``; FileNotFoundError if absent, ValueError naming
    the file if it is not a JSON object."""
    path = os.path.join(directory, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {META_FILE} in {os.path.abspath(directory)}")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.path.abspath(path)} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(
            f"{os.path.abspath(path)} must hold a JSON object, got {type(meta).__name__}"
        )
    return meta
