"""The adversarial-example cache: crafted examples on disk, one file per confidence kappa.

Crafting CW / EAD examples for a sweep takes hours on a CPU, so every finished batch
is kept and nothing is crafted twice. A cache folder holds

- ``kappa_<k>.npz``: the finished kappa, arrays ``adversarial`` (N, H, W, C),
  ``success``, ``l1``, ``l2``, ``linf`` (N,), the crafting time of each batch
  (``part_sizes``, ``part_seconds``, ``part_cpu_seconds``, ``part_machines``) and
  ``settings``: JSON of the attack settings with ``confidence`` and ``indices`` (the
  test-set indices of the N images, in order);
- ``kappa_<k>.part_<start>.npz``: a finished batch of images start.. while the kappa
  is being crafted (same arrays; ``seconds``, ``cpu_seconds``, ``machine``).

Rules: a file crafted with other settings is never overwritten (hours of work; the
caller is told which settings differ); a cache for more images serves any prefix of
them; a cache for a prefix of the requested images is split back into its batches, so
that only the new images are crafted; a killed run resumes at its first unfinished
batch, even with another batch size. Every write is atomic.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import time
from collections.abc import Callable

import numpy as np

FIELDS = ("adversarial", "success", "l1", "l2", "linf")
TIMING = ("part_sizes", "part_seconds", "part_cpu_seconds", "part_machines")
_FINISHED = re.compile(r"kappa_(\d+(?:\.\d+)?)\.npz")


class SettingsMismatch(ValueError):
    """A cache file holds examples crafted with other settings (the message says which)."""


def file_name(kappa: float) -> str:
    return f"kappa_{kappa:g}.npz"


def finished(folder: str) -> dict[float, str]:
    """kappa -> path of every finished kappa in ``folder``, in increasing kappa."""
    found = {}
    for path in glob.glob(os.path.join(folder, "kappa_*.npz")):
        match = _FINISHED.fullmatch(os.path.basename(path))
        if match:
            found[float(match.group(1))] = path
    return dict(sorted(found.items()))


def read(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and settings of one cache file (finished kappa or part); ``{}`` as the
    settings of a file that records none."""
    with np.load(path) as f:
        settings = json.loads(str(f["settings"])) if "settings" in f.files else {}
        return {k: f[k] for k in f.files if k != "settings"}, settings


def _save(path: str, settings: dict, arrays: dict) -> None:
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, settings=json.dumps(settings), **arrays)
    os.replace(tmp, path)


def _differing(stored: dict, expected: dict) -> list[str]:
    return sorted(k for k in {*stored, *expected} - {"indices"} if stored.get(k) != expected.get(k))


@dataclasses.dataclass(frozen=True)
class AdversarialCache:
    """The cache of one attack configuration for a fixed list of images.

    Attributes:
      folder: where the files live (created on first write).
      indices: test-set indices of the images, in order.
      settings: the attack settings every kappa shares (JSON-able; no "confidence"
        or "indices").
      log: where notes go (a kappa reused, a prefix split); ``print`` by default.
    """

    folder: str
    indices: tuple[int, ...]
    settings: dict
    log: Callable[[str], None] = print

    def __post_init__(self):
        # plain ints, as the settings JSON stores them
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))

    def expected(self, kappa: float) -> dict:
        """The settings a finished kappa file must record."""
        return {"indices": list(self.indices), **self.settings, "confidence": kappa}

    def path(self, kappa: float) -> str:
        return os.path.join(self.folder, file_name(kappa))

    def part_path(self, kappa: float, start: int) -> str:
        return os.path.join(self.folder, f"kappa_{kappa:g}.part_{start}.npz")

    def load(self, kappa: float) -> dict[str, np.ndarray] | None:
        """The finished examples of ``kappa`` for these images, or None if not crafted.

        A file for more images (these first) serves their prefix; a file for a prefix of
        these images is split back into per-batch parts (see :meth:`craft`) and None is
        returned. Raises :class:`SettingsMismatch` for a file crafted otherwise.
        """
        path = self.path(kappa)
        if not os.path.isfile(path):
            return None
        arrays, stored = read(path)
        expected = self.expected(kappa)
        if stored == expected:
            return {k: arrays[k] for k in FIELDS + TIMING if k in arrays}
        n, have = len(self.indices), stored.get("indices", [])
        if len(have) > n and have[:n] == list(self.indices) and _differing(stored, expected) == []:
            # crafted for more images than asked: the first ones; the larger file is
            # never overwritten (its crafting time is not split)
            return {k: arrays[k][:n] for k in FIELDS}
        if (
            0 < len(have) < n
            and have == list(self.indices[: len(have)])
            and not _differing(stored, expected)
        ):
            self._split_prefix(kappa, arrays, len(have))
            return None
        self._refuse_other_settings(path, stored, expected)
        return None

    def _refuse_other_settings(self, path: str, stored: dict, expected: dict) -> None:
        if differing := _differing(stored, expected):
            raise SettingsMismatch(
                f"{path} holds examples crafted with other settings ({', '.join(differing)} "
                "differ); pass --cache-dir DIR to craft these settings elsewhere, or delete "
                "the file to replace them"
            )
        self.log(f"{path}: cached for other images or incomplete, crafting again")

    def _split_prefix(self, kappa: float, arrays: dict, n: int) -> None:
        """A kappa finished for the first n images back into its batches."""
        sizes = arrays.get("part_sizes", np.array([n]))
        start = 0
        for i, size in enumerate(sizes.tolist()):
            part = {k: arrays[k][start : start + size] for k in FIELDS}
            for key, name in (
                ("seconds", "part_seconds"),
                ("cpu_seconds", "part_cpu_seconds"),
                ("machine", "part_machines"),
            ):
                if name in arrays:
                    part[key] = arrays[name][i]
            _save(
                self.part_path(kappa, start),
                {**self.expected(kappa), "indices": list(self.indices[start : start + size])},
                part,
            )
            start += size
        self.log(
            f"{self.path(kappa)}: reusing its {n} images, crafting the other "
            f"{len(self.indices) - n}"
        )

    def load_part(self, kappa: float, start: int) -> dict | None:
        """A finished batch starting at image ``start``, whatever batch size made it."""
        path = self.part_path(kappa, start)
        if not os.path.isfile(path):
            return None
        arrays, stored = read(path)
        n = len(stored.get("indices", []))
        expected = {**self.expected(kappa), "indices": list(self.indices[start : start + n])}
        if n and stored == expected and all(k in arrays and len(arrays[k]) == n for k in FIELDS):
            part = {k: arrays[k] for k in FIELDS}
            for k in ("seconds", "cpu_seconds"):
                part[k] = float(arrays[k]) if k in arrays else float("nan")
            part["machine"] = str(arrays["machine"]) if "machine" in arrays else "not recorded"
            return part
        self._refuse_other_settings(path, stored, expected)
        return None

    def craft(
        self,
        kappa: float,
        attack: Callable[[slice], dict[str, np.ndarray]],
        batch_size: int,
        *,
        machine: str,
        on_batch: Callable[[int, dict, bool], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """The examples of ``kappa``: from the cache, else crafted batch by batch.

        Args:
          kappa: the confidence.
          attack: ``attack(images slice) -> {field: array}`` for :data:`FIELDS`;
            called only for batches not on disk yet.
          batch_size: images per ``attack`` call.
          machine: recorded with each new batch.
          on_batch: ``on_batch(start, part, crafted)`` after each batch (``crafted``:
            made now, not read from disk).

        Returns:
          the arrays of :data:`FIELDS` and :data:`TIMING`, for all images.
        """
        cached = self.load(kappa)
        if cached is not None:
            return cached
        os.makedirs(self.folder, exist_ok=True)
        parts, start = [], 0
        while start < len(self.indices):
            part = self.load_part(kappa, start)
            crafted = part is None
            if crafted:
                sl = slice(start, start + batch_size)
                began, began_cpu = time.time(), time.process_time()
                part = {k: np.asarray(v) for k, v in attack(sl).items() if k in FIELDS}
                # wall time, and CPU time of all threads (not counting time the process
                # was stopped or starved by other jobs)
                part["seconds"] = time.time() - began
                part["cpu_seconds"] = time.process_time() - began_cpu
                part["machine"] = machine
                _save(
                    self.part_path(kappa, start),
                    {**self.expected(kappa), "indices": list(self.indices[sl])},
                    part,
                )
            if on_batch is not None:
                on_batch(start, part, crafted)
            parts.append(part)
            start += len(part["success"])
        out = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
        out["part_sizes"] = np.array([len(p["success"]) for p in parts])
        out["part_seconds"] = np.array([p["seconds"] for p in parts])
        out["part_cpu_seconds"] = np.array([p["cpu_seconds"] for p in parts])
        out["part_machines"] = np.array([p["machine"] for p in parts])
        _save(self.path(kappa), self.expected(kappa), out)
        # also the leftovers of a run with another batch size
        for part_path in glob.glob(os.path.join(self.folder, f"kappa_{kappa:g}.part_*.npz")):
            os.remove(part_path)
        return out


def default_folder(dataset: str, attack: str, preset: str) -> str:
    """``results/<dataset>/cache/<attack>[-<preset>]``: one cache per preset, so a CPU run
    never overwrites examples crafted with the reference ("paper") settings."""
    return os.path.join(
        "results", dataset, "cache", attack + ("" if preset == "paper" else f"-{preset}")
    )


# the key of the targeted sweeps' random target labels (every reader must agree)
TARGETS_SEED = 1234


def attack_labels(labels: np.ndarray, num_classes: int, targeted: bool) -> np.ndarray:
    """The labels the attack was given: the true ones, or random wrong targets.

    Targets are ``(label + s) % num_classes`` with s uniform in [1, num_classes) drawn
    from ``jax.random.key(TARGETS_SEED)``, one per image.
    """
    if not targeted:
        return np.asarray(labels)
    import jax

    shift = jax.random.randint(jax.random.key(TARGETS_SEED), (len(labels),), 1, num_classes)
    return (np.asarray(labels) + np.asarray(shift)) % num_classes


def crafting_time(arrays: dict) -> dict:
    """What crafting a finished kappa cost, over the batches whose time was kept.

    Returns:
      seconds (wall) and cpu_seconds (all threads; None where a batch lacks it) summed
      over the timed batches, images_timed, images, and the machines of all batches
      (machines) and of the timed ones (machines_timed). Caches made before batch
      times were kept give None and 0.
    """
    if "part_seconds" not in arrays:
        return {
            "seconds": None,
            "cpu_seconds": None,
            "images_timed": 0,
            "images": len(arrays["success"]),
            "machines": [],
            "machines_timed": [],
        }
    seconds, sizes = arrays["part_seconds"], arrays["part_sizes"]
    known = ~np.isnan(seconds)
    cpu = arrays.get("part_cpu_seconds", np.full(known.shape, np.nan))
    machines = arrays["part_machines"]
    return {
        "seconds": round(float(seconds[known].sum()), 1),
        # CPU time of all threads: unlike wall time, it does not count time the
        # job was paused or starved by other jobs
        "cpu_seconds": (
            round(float(cpu[known].sum()), 1) if not np.isnan(cpu[known]).any() else None
        ),
        "images_timed": int(sizes[known].sum()),
        "images": int(sizes.sum()),
        "machines": sorted(set(machines.tolist())),
        "machines_timed": sorted(set(machines[known].tolist())),
    }
