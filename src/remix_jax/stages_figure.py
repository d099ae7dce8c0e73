"""The REMIX stages of images as a figure: one row per image, one column per stage.

Oblivious setting: the adversarial image x' is crafted on the bare classifier, and the
figure follows what the defense sees, x' only, through the stages of
:func:`remix_jax.defense.defend` with the reformer: r(x'), the n random complementary
masks m_i applied to r(x'), the inpainted copies, their combination
x_hat = sum_i x_hat_i * (1 - m_i) (and the result after K rounds), and last the
perturbation x' - x. Each classified image is labelled "prediction (softmax
confidence)".

The stages come from the library's one mask-inpaint primitive
(:func:`~remix_jax.defense.inpaint_copies`, :func:`~remix_jax.defense.combine_copies`)
with the key of :func:`~remix_jax.defense.defend`'s first round, so the picture cannot
drift from the defense. ``python -m eval.visualize`` is the command line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax import adversarial_cache, evaluation, result_files
from remix_jax.defense import RemixParams, autoencoder_fn, combine_copies, defend, inpaint_copies

# Figure geometry in inches: fixed, so the PNG's pixel size follows from rows and columns.
DPI = 150
CELL = 0.8  # side of one image
COL_PITCH = 0.96  # CELL plus the horizontal gap
LABEL_ROOM = 0.3  # under each image, for its prediction
LEFT, RIGHT = 0.3, 0.06  # row labels; right edge
HEADER = 1.1  # title, subtitle and column titles
FOOTER = 0.12
MAX_WIDTH = 12.0  # README width; wider figures get smaller images

# The attacks' names in the title; an attack not listed shows its registry name.
ATTACK_TITLES = {"cw": "CW-L2", "ead": "EAD (EN rule)"}

# What savefig embeds beside the drawing, by format (result_files.FIGURE_METADATA).
METADATA = result_files.FIGURE_METADATA


@dataclasses.dataclass
class Column:
    """One stage of the figure: a title and one image per row.

    Attributes:
      title: column heading.
      images: (B, H, W, 1|C) arrays to draw.
      kind: "image" (values in [0, 1]), "mask" (binary, 1 = visible) or "delta"
        (signed, drawn with a symmetric diverging colormap).
      probs: (B, classes) softmax of the classifier on ``images``, or None where the
        stage is not classified.
    """

    title: str
    images: np.ndarray
    kind: str = "image"
    probs: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """Sizes in inches: the figure's, and of one image and its column."""

    width: float
    height: float
    cell: float
    pitch: float


def layout(rows: int, cols: int) -> Layout:
    """Geometry of a figure with ``rows`` x ``cols`` images, at most MAX_WIDTH wide."""
    scale = min(1.0, (MAX_WIDTH - LEFT - RIGHT) / (cols * COL_PITCH))
    cell, pitch = CELL * scale, COL_PITCH * scale
    return Layout(
        width=LEFT + cols * pitch + RIGHT,
        height=HEADER + rows * (cell + LABEL_ROOM) + FOOTER,
        cell=cell,
        pitch=pitch,
    )


def num_columns(n_masks: int, iterations: int) -> int:
    """Stage count: clean, adversarial, reformer, (mask, masked, inpainted) per mask,
    combined, [after K rounds,] perturbation."""
    return 3 + 3 * n_masks + 1 + (iterations > 1) + 1


def choose_indices(
    requested: Sequence[int] | None,
    logits_fn: evaluation.LogitsFn,
    x_all: np.ndarray,
    labels: np.ndarray,
    rows: int,
) -> np.ndarray:
    """The requested test indices, or the first ``rows`` the classifier gets right.

    Args:
      requested: test-set indices, or None.
      logits_fn: the classifier, ``(B, H, W, C) -> (B, classes)``.
      x_all: (N, H, W, C) test images.
      labels: (N,) their labels.
      rows: how many to choose when none are requested.

    Returns:
      (B,) test-set indices: ``requested``, or at most ``rows`` chosen ones.

    Raises:
      ValueError: an index outside the test set.
    """
    if requested is not None:
        bad = [i for i in requested if not 0 <= i < len(x_all)]
        if bad:
            raise ValueError(f"--index {bad} outside the test set [0, {len(x_all)})")
        return np.asarray(requested)
    head = min(len(x_all), 32 * rows)  # enough: the classifier is ~99% accurate
    return evaluation.first_correct(logits_fn, x_all[:head], labels[:head], rows)


def cached_adversarials(path: str, indices: np.ndarray) -> tuple[dict[int, np.ndarray], str]:
    """Adversarial images of ``indices`` found in one sweep cache file.

    Args:
      path: a finished ``kappa_<k>.npz`` of :mod:`remix_jax.adversarial_cache`.
      indices: (B,) test-set indices.

    Returns:
      ({test index: (H, W, C) image}, description of the cached settings); empty
      where the file is missing.
    """
    if not os.path.isfile(path):
        return {}, ""
    arrays, settings = adversarial_cache.read(path)
    rows = {int(t): r for r, t in enumerate(settings["indices"])}
    found = {int(i): arrays["adversarial"][rows[int(i)]] for i in indices if int(i) in rows}
    steps = f"{settings.get('binary_search_steps')} x {settings.get('max_iterations')} steps"
    beta = f", β {settings['beta']:g}" if "beta" in settings else ""
    return found, f"sweep cache {path} ({steps}{beta})"


def adversarial_images(
    indices: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    cache_paths: Sequence[str],
    craft: Callable[[np.ndarray, np.ndarray], np.ndarray],
    crafted_note: str,
) -> tuple[np.ndarray, str]:
    """x' for every row: from the first cache file holding any of them, else crafted.

    Args:
      indices: (B,) test-set indices of the rows.
      x: (B, H, W, C) their clean images.
      y: (B,) their labels.
      cache_paths: cache files to look in, in order (:func:`cached_adversarials`).
      craft: ``craft(x (M, H, W, C), y (M,)) -> (M, H, W, C)`` adversarial images of
        the rows no cache holds; called only if there are some.
      crafted_note: how ``craft`` makes them, for the returned line.

    Returns:
      ((B, H, W, C) adversarial images, a line saying where they came from).
    """
    found, cache_note = {}, ""
    for path in cache_paths:
        found, cache_note = cached_adversarials(path, indices)
        if found:
            break
    adv = np.empty_like(x)
    missing = [r for r, i in enumerate(indices) if int(i) not in found]
    for r, i in enumerate(indices):
        if int(i) in found:
            adv[r] = found[int(i)]
    if missing:
        adv[missing] = craft(x[missing], y[missing])
    if not missing:
        return adv, f"x' from the {cache_note}"
    if len(missing) == len(indices):
        return adv, f"x' {crafted_note}"
    cached = ", ".join(f"#{i}" for i in indices if int(i) in found)
    return adv, f"x' from the {cache_note} for {cached}; the others {crafted_note}"


def remix_stages(
    params: RemixParams, key: jax.Array, x_adv: np.ndarray, iterations: int
) -> dict[str, np.ndarray]:
    """The defense's intermediate images on x', from the library's own primitive.

    :func:`~remix_jax.defense.inpaint_copies` with round 0's key of ``defend``
    (``fold_in(key, 0)``), so the figure shows exactly what the defense computes.

    Args:
      params: the defense, with its reformer.
      key: the key ``defend`` would get.
      x_adv: (B, H, W, C) adversarial images.
      iterations: K; above 1 the result of ``defend`` after K rounds is added.

    Returns:
      dict of arrays: reformed (B, H, W, C), masks (n, B, H, W, 1|C), masked and
      inpainted (n, B, H, W, C), combined (B, H, W, C) and, for K > 1, final.
    """
    reform = jax.jit(autoencoder_fn(params.reformer_config, params.reformer))
    inpaint_fn = autoencoder_fn(params.inpainter_config, params.inpainter)
    reformed = reform(jnp.asarray(x_adv))
    keys = jax.random.split(jax.random.fold_in(key, 0), reformed.shape[0])
    inpainted, masks = jax.jit(inpaint_copies, static_argnums=(0, 3, 4))(
        inpaint_fn, keys, reformed, params.n_masks, params.per_channel
    )
    stages = {
        "reformed": reformed,
        "masks": masks,
        "masked": masks * reformed[None],
        "inpainted": inpainted,
        "combined": combine_copies(inpainted, masks),
    }
    if iterations > 1:
        stages["final"] = defend(params, key, jnp.asarray(x_adv), iterations=iterations)
    return {k: np.asarray(v) for k, v in stages.items()}


def build_columns(
    logits_fn: evaluation.LogitsFn,
    x: np.ndarray,
    x_adv: np.ndarray,
    stages: dict[str, np.ndarray],
    iterations: int,
) -> list[Column]:
    """The figure's columns, left to right, with softmax outputs where classified.

    Args:
      logits_fn: the classifier, ``(B, H, W, C) -> (B, classes)``.
      x: (B, H, W, C) clean images.
      x_adv: (B, H, W, C) their adversarial images.
      stages: :func:`remix_stages` of ``x_adv``.
      iterations: K, as given to :func:`remix_stages`.

    Returns:
      :func:`num_columns` columns.
    """
    probs_fn = jax.jit(lambda images: jax.nn.softmax(logits_fn(images), axis=-1))

    def classified(title: str, images: np.ndarray) -> Column:
        return Column(title, images, probs=np.asarray(probs_fn(images)))

    cols = [
        classified("clean x", x),
        classified("adversarial x'", x_adv),
        classified("reformer r(x')", stages["reformed"]),
    ]
    for i in range(len(stages["masks"])):
        k = i + 1
        cols += [
            Column(f"mask $m_{k}$\n(white = kept)", stages["masks"][i], kind="mask"),
            Column(f"$m_{k} \\cdot r(x')$", stages["masked"][i]),
            Column(f"inpainted\n$\\hat x_{k}$", stages["inpainted"][i]),
        ]
    cols.append(
        classified("combined $\\hat x$ =\n$\\Sigma_i\\, \\hat x_i (1 - m_i)$", stages["combined"])
    )
    if iterations > 1:
        cols.append(classified(f"after K={iterations}\nrounds", stages["final"]))
    cols.append(Column("perturbation\nx' - x (scaled)", x_adv - x, kind="delta"))
    return cols


def titles(
    dataset: str, attack: str, confidence: float, n_masks: int, source: str, seed: int
) -> tuple[str, str]:
    """The figure's title (what was attacked and how REMIX answers) and subtitle (where
    x' came from, the mask seed and how to read the labels)."""
    title = (
        f"REMIX at work on {dataset.upper()}: {ATTACK_TITLES.get(attack, attack)} at "
        f"κ = {confidence:g} crafted on the bare classifier; REMIX is applied to the "
        f"adversarial x'\nreformer r(x'), then n = {n_masks} random complementary masks on "
        "r(x'), inpaint each copy, keep each pixel from the copy that hid it"
    )
    subtitle = (
        f"{source}; mask seed {seed}. Under classified images: "
        "prediction (softmax confidence), green = true label"
    )
    return title, subtitle


def _show(ax, image: np.ndarray, kind: str) -> None:
    """Draws one (H, W, 1|C) image in an axis without ticks."""
    if kind == "delta":
        # channels averaged for colour images; scale symmetric per image so 0 is white
        delta = image.mean(axis=-1)
        bound = max(float(np.abs(delta).max()), 1e-8)
        ax.imshow(delta, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    elif image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def caption_text(column: Column, r: int) -> str:
    """The caption under image ``r``: its prediction and confidence, a perturbation's
    size, or "" (what :func:`draw` writes and :func:`drawn` records)."""
    if column.probs is not None:
        pred = int(np.argmax(column.probs[r]))
        return f"{pred} ({100 * column.probs[r, pred]:.1f}%)"
    if column.kind == "delta":
        delta = column.images[r]
        return f"L2 {np.linalg.norm(delta):.2f}, ±{np.abs(delta).max():.2f}"
    return ""


def _caption(ax, column: Column, r: int, label: int) -> None:
    """Under image ``r``: its prediction (green if ``label``), or a perturbation's size."""
    if column.probs is not None:
        right = int(np.argmax(column.probs[r])) == label
        ax.set_xlabel(caption_text(column, r), fontsize=8.5, labelpad=2,
                      color="tab:green" if right else "tab:red", weight="bold")  # fmt: skip
    elif column.kind == "delta":
        ax.set_xlabel(caption_text(column, r), fontsize=7.5, labelpad=2)


def draw(columns: list[Column], indices: np.ndarray, labels: np.ndarray, title: str, subtitle: str):
    """The figure: one row per test image, one column per stage.

    Args:
      columns: the stages, left to right (:func:`build_columns`).
      indices: (B,) test-set indices of the rows.
      labels: (B,) their true labels.
      title, subtitle: the text above the images (:func:`titles`).

    Returns:
      a ``matplotlib.figure.Figure`` outside pyplot: nothing to close, no global state.
    """
    from matplotlib.figure import Figure

    geom = layout(len(indices), len(columns))
    width, height = geom.width, geom.height
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=10.5, weight="bold")
    fig.text(0.5, 1 - 0.5 / height, subtitle, ha="center", va="top", fontsize=8, color="0.25")
    for r in range(len(indices)):
        top = HEADER + r * (geom.cell + LABEL_ROOM)
        for c, column in enumerate(columns):
            left = LEFT + c * geom.pitch + (geom.pitch - geom.cell) / 2
            ax = fig.add_axes(
                (
                    left / width,
                    1 - (top + geom.cell) / height,
                    geom.cell / width,
                    geom.cell / height,
                )
            )
            _show(ax, column.images[r], column.kind)
            if r == 0:
                ax.set_title(column.title, fontsize=7.5, pad=3)
            if c == 0:
                ax.set_ylabel(f"test #{indices[r]}, label {labels[r]}", fontsize=7.5)
            _caption(ax, column, r, labels[r])
    return fig


def drawn(columns: list[Column], indices: np.ndarray, labels: np.ndarray, title: str,
          subtitle: str, inputs: dict) -> dict:  # fmt: skip
    """What a figure of :func:`draw` is, as :func:`remix_jax.result_files.data_stamp`
    takes it: what its pixels are a function of (``inputs``, e.g. the weights' and the
    adversarial images' fingerprints and the rounds K) and what it shows as text
    (titles, with the mask seed; test indices, labels, every caption as rendered).
    Pixel values are left out: float noise of another CPU would change their hash, not
    the figure.
    """
    return {
        "inputs": inputs,
        "title": title,
        "subtitle": subtitle,
        "indices": np.asarray(indices).tolist(),
        "labels": np.asarray(labels).tolist(),
        "columns": [
            [c.title, c.kind, [caption_text(c, r) for r in range(len(c.images))]] for c in columns
        ],
    }


def save_atomically(fig, out_png: str, data: dict | None = None) -> list[str]:
    """Writes ``fig`` as PNG and PDF with the same stem, each atomically
    (:func:`remix_jax.result_files.save_figure`), then closes it.

    The bytes depend on the drawing only (:data:`METADATA`); with ``data`` (what it
    draws: :func:`drawn`) a file that already shows it is kept, so a rerun leaves
    committed files unchanged even under another matplotlib release.

    Returns:
      the paths written, PNG first (a kept file is not listed).
    """
    import matplotlib.pyplot as plt

    stem = os.path.splitext(out_png)[0]
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    written = [
        f"{stem}.{ext}"
        for ext in ("png", "pdf")
        if result_files.save_figure(fig, f"{stem}.{ext}", data=data, close=False, dpi=DPI)
    ]
    plt.close(fig)
    return written
