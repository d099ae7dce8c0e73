"""Where a result came from: command line, git commit, machine, time."""

from __future__ import annotations

import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable


def command() -> str:
    """The command line of this process, as a user would retype it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py") and sys.modules.get("__main__") is not None:
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None and spec.name:
            argv = ["python", "-m", spec.name.removesuffix(".__main__"), *argv[1:]]
    return shlex.join(argv)


# what "-dirty" watches: the code, not results, checkpoints or docs that runs write
CODE_PATHS = (":/src", ":/eval", ":/train", ":/bench", ":/scripts", ":/pyproject.toml")


def git_commit(where: str | None = None) -> str:
    """HEAD of the repository holding the code, with ``-dirty`` if the code (not the
    results, checkpoints or docs) has uncommitted changes.

    ``$REMIX_GIT_COMMIT`` overrides it, for copies of the tree without ``.git``
    (e.g. a remote accelerator machine). ``where``: a folder inside the repository
    (default: this package's).
    """
    if os.environ.get("REMIX_GIT_COMMIT"):
        return os.environ["REMIX_GIT_COMMIT"]
    here = where or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """CPU / accelerator description of this machine."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(
                line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line
            )
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu = fields.get("model name", cpu)
        # virtual machines often report only "AMD EPYC": family and model tell the
        # generation apart (family 25 = Zen 3/4, 26 = Zen 5, whose AVX-512 is twice as wide)
        if "cpu family" in fields and "model" in fields:
            cpu += f" (family {fields['cpu family']}, model {fields['model']})"
    except (OSError, ValueError):
        pass
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return (
        f"{cpu}, {os.cpu_count()} cores; jax {jax.__version__} on {len(devices)} "
        f"{devices[0].platform} device(s) ({', '.join(kinds)})"
    )


def stamp() -> dict:
    """The provenance fields every result and checkpoint records."""
    return {
        "command": command(),
        "git_commit": git_commit(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def finished(started: float) -> dict:
    """The fields a result ends with: its wall time since ``started`` (``time.time()``)
    and :func:`stamp`."""
    return {"wall_seconds": round(time.time() - started, 1), **stamp()}


# Fields that describe a run, not its numbers: a rerun changes them and nothing else.
RUN_FIELDS = ("command", "git_commit", "machine", "date", "wall_seconds")


def _committed(path: str) -> dict | None:
    """The JSON object at ``path``, or None if there is none (or it is not an object)."""
    import json

    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) else None


def _leaves(value, path: tuple = ()) -> dict[tuple, object]:
    """Every leaf of a JSON value (a scalar, or an empty list or object) by its path, a
    tuple of keys and list indices (so no two places share a path)."""
    if isinstance(value, dict) and value:
        return {k: v for key, sub in value.items() for k, v in _leaves(sub, (*path, key)).items()}
    if isinstance(value, list) and value:
        return {k: v for i, sub in enumerate(value) for k, v in _leaves(sub, (*path, i)).items()}
    return {path: value}


def _path_text(path: tuple) -> str:
    """``rows[0].auc.REMIX copies-JSD``: a leaf's path as :func:`differences` prints it."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).removeprefix(".")


# A float that moved by less than this (relative) is most likely rounding: another CPU's
# float order moves float32 scores and thresholds by ~1e-6-1e-4; one counted image more
# or less moves them by more.
ROUNDING = 1e-4

_ABSENT = object()  # a leaf on one side only


def _change(u, v) -> float:
    """How far a leaf that differs moved: relative for two finite numbers, else ``inf``."""
    numbers = all(
        isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in (u, v)
    )
    return abs(u - v) / max(abs(u), abs(v)) if numbers else math.inf


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in RUN_FIELDS}


def _moved(old: dict, new: dict) -> list[tuple[tuple, object, object, float]]:
    """(path, old, new, change) of every leaf that differs, largest change first.

    :data:`RUN_FIELDS` are left out; a leaf on one side only is ``_ABSENT`` on the
    other; a NaN recorded twice is the same number.
    """
    a, b = _leaves(_numbers(old)), _leaves(_numbers(new))
    moved = []
    for path in sorted({*a, *b}, key=repr):
        u, v = a.get(path, _ABSENT), b.get(path, _ABSENT)
        nans = isinstance(u, float) and isinstance(v, float) and u != u and v != v
        if not (u == v or nans):
            moved.append((path, u, v, _change(u, v)))
    return sorted(moved, key=lambda m: -m[3])  # stable: in path order within a change


def differences(old: dict, new: dict) -> list[str]:
    """What moved between two results, largest (relative) change first.

    Args:
      old: a result as a JSON object (e.g. the committed file's).
      new: another, after a JSON round trip.

    Returns:
      ``"rows[0].fooled: 1000 -> 999"`` for every leaf that differs (:data:`RUN_FIELDS`
      left out; ``absent`` where one side lacks it); ``[]`` for the same numbers.
    """
    return [_moved_text(m) for m in _moved(old, new)]


def _moved_text(moved: tuple) -> str:
    path, u, v, _ = moved
    u, v = ("absent" if w is _ABSENT else repr(w) for w in (u, v))
    return f"{_path_text(path)}: {u} -> {v}"


def reproduces(path: str, result: dict) -> bool:
    """Whether the JSON result at ``path`` has the same numbers as ``result``.

    Equal but for :data:`RUN_FIELDS`, after a JSON round trip, leaf by leaf
    (:func:`differences` is empty; ``100`` and ``100.0`` are the same number, so is a
    NaN recorded twice). A command that reproduces its committed result keeps the
    committed files (and so the provenance of the run that made the numbers)
    byte-identical instead of rewriting them.
    """
    import json

    old = _committed(path)
    return old is not None and not _moved(old, json.loads(json.dumps(result)))


def write_unless_reproduced(
    out: str, result: dict, write: Callable[[str, dict], None], *, shown: int = 8
) -> bool:
    """``write(out, result)`` unless ``<out>.json`` already holds these numbers.

    A rerun that reproduces a committed result leaves its files byte-identical (and
    their provenance: the run that made the numbers). A rerun that does not says what
    moved and on which machine the old numbers were made, so a difference is never
    silent: a CW example crafted at kappa 0 sits on the decision boundary, and another
    CPU's float order can tie its logits the other way.

    Args:
      out: the result's path without its suffix (``<out>.json``, ``.md``, ...).
      result: the new result (JSON-able).
      write: ``write(out, result)`` writes every file of the result.
      shown: how many moved numbers to print at most.

    Returns:
      whether the files were written.
    """
    import json

    old = _committed(out + ".json")  # read and compared once (reproduces' rule)
    if old is not None:
        moved = _moved(old, json.loads(json.dumps(result)))
        if not moved:
            print(f"{out}.json already holds these numbers: kept as committed")
            return False
        rounding = sum(change < ROUNDING for *_, change in moved)
        print(
            f"{out}.json held other numbers ({len(moved)} differ, {rounding} of them by "
            f"less than {ROUNDING:g} relative, likely float rounding; made on "
            f"{old.get('machine', 'an unrecorded machine')}); now, largest change first:"
        )
        for m in moved[:shown]:
            print(f"  {_moved_text(m)}")
        if len(moved) > shown:
            print(f"  ... and {len(moved) - shown} more")
    write(out, result)
    print(f"-> {out}.json and its tables and plots")
    return True


def publish(out: str, result: dict, markdown: Callable[[dict], str], write, scoring=None) -> None:
    """Ends a run: prints ``markdown(result)``, writes ``<out>.*`` with ``write(out,
    result)`` unless they already hold these numbers (:func:`write_unless_reproduced`),
    then removes the run's resume file (``scoring``, a
    :class:`remix_jax.progress.ProgressFile`)."""
    print(markdown(result))
    write_unless_reproduced(out, result, write)
    if scoring is not None:
        scoring.finish()
