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
# entry is Software (matplotlib's version, no date), kept: the committed PNGs carry it,
# and their pixels depend on that version anyway.
FIGURE_METADATA = {"png": {}, "pdf": {"CreationDate": None}}


def save_figure(fig, path: str, **savefig_kwargs) -> None:
    """Saves a matplotlib figure atomically (the temporary name keeps the extension, so
    matplotlib infers the format) and closes it."""
    import matplotlib.pyplot as plt

    base, extension = os.path.splitext(path)
    tmp = f"{path}.tmp{extension}"
    fig.savefig(tmp, **savefig_kwargs)
    os.replace(tmp, path)
    plt.close(fig)


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
