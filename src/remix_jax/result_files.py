"""Writing result files: atomically (a killed run never leaves half a file), and the
look the accuracy plots share. JAX-free; matplotlib is imported by the callers."""

from __future__ import annotations

import json
import os


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path: str, payload, *, newline: bool = True) -> None:
    """``payload`` as indented JSON, atomically (``newline``: end the file with one)."""
    write_text(path, json.dumps(payload, indent=2) + ("\n" if newline else ""))


# What savefig embeds beside the drawing, by format. The PDF backend stamps the time of
# the run (CreationDate): left out, so a rerun writes the same bytes. The PNG's only
# entry is Software (matplotlib's version, no date), kept. A figure saved with ``data``
# (:func:`save_figure`) also carries the fingerprint of what it draws (PNG:
# Description, PDF: Subject).
FIGURE_METADATA = {"png": {}, "pdf": {"CreationDate": None}}
_DATA_KEY = {"png": "Description", "pdf": "Subject"}


def data_stamp(data) -> str:
    """The text a figure drawn from ``data`` (JSON-able: numbers, strings, lists,
    dicts) carries: ``remix-jax data <16 hex digits of its SHA-256>``."""
    import hashlib

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return "remix-jax data " + hashlib.sha256(text.encode()).hexdigest()[:16]


def save_figure(fig, path: str, *, data=None, close: bool = True, **savefig_kwargs) -> bool:
    """Saves a matplotlib figure atomically (the temporary name keeps the extension, so
    matplotlib infers the format), with :data:`FIGURE_METADATA`.

    Args:
      fig: the figure.
      path: where, its extension naming the format (``.png``, ``.pdf``).
      data: what the figure draws (JSON-able; round floats to what the figure shows).
        Given, the file carries its :func:`data_stamp`, and a file at ``path`` that
        already carries it is kept as it is: a rerun on the same numbers leaves a
        committed figure byte-identical, even under another matplotlib release (whose
        pixels would differ).
      close: close the figure afterwards.
      savefig_kwargs: passed to ``fig.savefig`` (dpi, ...).

    Returns:
      whether the file was written.
    """
    import matplotlib.pyplot as plt

    _, extension = os.path.splitext(path)
    fmt = extension[1:].lower()
    metadata = dict(FIGURE_METADATA.get(fmt, {}))
    stamp = None if data is None else data_stamp(data)
    kept = False
    if stamp is not None and fmt in _DATA_KEY:
        metadata[_DATA_KEY[fmt]] = stamp
        if os.path.isfile(path):
            with open(path, "rb") as f:
                kept = stamp.encode() in f.read()  # PNG tEXt / PDF Info are plain bytes
    if not kept:
        tmp = f"{path}.{os.getpid()}.tmp{extension}"  # beside it: os.replace stays on one disk
        try:
            fig.savefig(tmp, metadata=metadata, **savefig_kwargs)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    if close:
        plt.close(fig)
    return not kept


def accuracy_axes(ax, title: str) -> None:
    """The accuracy plots' frame: 0-100% with a margin, a light grid and the title."""
    ax.set_title(title, fontsize=10)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)


def legend_beside(ax) -> None:
    """The legend right of the axes: inside, it hides the curves wherever they cross the
    middle."""
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)


def accuracy_curve(ax, points: list, **style) -> None:
    """Accuracy (mean, error bar: std over keys) vs budget: ``points`` are
    (budget, summary) pairs, drawn in budget order."""
    points = sorted(points, key=lambda p: p[0])
    ax.errorbar(
        [p[0] for p in points],
        [p[1]["mean"] for p in points],
        yerr=[p[1]["std"] for p in points],
        marker="o",
        ms=3,
        capsize=2,
        **style,
    )
