"""REMIX at work, one row per test image: clean, adversarial, reformer, masks, inpainted, combined.

    python -m eval.visualize --dataset mnist [--attack cw|ead] [--confidence K] [--index I ...]

Oblivious setting: the adversarial image x' is crafted on the bare classifier. The
figure then follows what the defense sees, x' only, through the stages of
:func:`remix_jax.defense.defend` with the reformer: r(x'), the n random complementary
masks m_i applied to r(x'), the inpainted copies, their combination
x_hat = sum_i x_hat_i * (1 - m_i) (and the result after K rounds with --iterations),
and last the perturbation x' - x. Each classified image is labelled
"prediction (softmax confidence)".

Adversarial images come from the sweep cache
``results/<dataset>/cache/<attack>/kappa_<K>.npz`` (eval.sweep, the paper's strong
settings) where it holds the requested test image, and are otherwise crafted here with
fast settings; the subtitle says which. The combined image is checked against
:func:`remix_jax.defense.mask_inpaint` and :func:`remix_jax.defense.defend` with the
same key, so the picture cannot drift from the library.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from remix_jax import attack_registry
from remix_jax.cli import CHECKPOINT_ROOT_HELP, DATA_DIR_HELP, HelpFormatter, add_dataset_flag

# Figure geometry in inches: fixed, so the PNG's pixel size follows from rows and columns.
DPI = 150
CELL = 0.8  # side of one image
COL_PITCH = 0.96  # CELL plus the horizontal gap
LABEL_ROOM = 0.3  # under each image, for its prediction
LEFT, RIGHT = 0.3, 0.06  # row labels; right edge
HEADER = 1.1  # title, subtitle and column titles
FOOTER = 0.12
MAX_WIDTH = 12.0  # README width; wider figures get smaller images
DEFAULT_ROWS = 3


@dataclass
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


def parse(argv) -> argparse.Namespace:
    """The command line, checked; argparse exits with a message on bad values."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--attack", choices=attack_registry.names("confidence"), default="cw")
    p.add_argument(
        "--confidence",
        type=float,
        default=30.0,
        help="kappa (MNIST sweep caches exist for 5..40; at 30 the reformer alone fails)",
    )
    p.add_argument(
        "--index",
        type=int,
        nargs="+",
        default=None,
        help=f"test-set indices (default: the first {DEFAULT_ROWS} the classifier gets right)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=1,
        help="mask-inpaint rounds K; K > 1 adds a column with the result",
    )
    p.add_argument("--seed", type=int, default=0, help="key of the random masks")
    p.add_argument(
        "--out",
        default=None,
        help="PNG path, the PDF gets the same stem (default: results/<dataset>/remix_at_work.png)",
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--checkpoint-root", default=None, help=CHECKPOINT_ROOT_HELP)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="sweep cache folder (default: results/<dataset>/cache/<attack>, then <attack>-cpu)",
    )
    p.add_argument("--no-cache", action="store_true", help="always craft on the fly")
    # settings of on-the-fly crafting: fast, not the paper's 9 x 10000
    p.add_argument("--binary-search-steps", type=int, default=3)
    p.add_argument("--max-iterations", type=int, default=1000)
    p.add_argument("--initial-const", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.1, help="EAD's L1 weight")
    p.add_argument(
        "--decision-rule",
        choices=["EN", "L1"],
        default="EN",
        help="EAD: which distortion picks the best example",
    )
    args = p.parse_args(argv)
    if args.confidence < 0:
        p.error("--confidence must be >= 0")
    for name in ("iterations", "binary_search_steps", "max_iterations"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.index is not None and len(set(args.index)) != len(args.index):
        p.error("--index values must be distinct")
    if args.out is not None and os.path.splitext(args.out)[1].lower() not in ("", ".png"):
        p.error("--out must be a .png path (the PDF gets the same stem)")
    return args


def _start_runtime() -> None:
    """Sets the XLA CPU flags; keeps going if JAX already runs in this process.

    That happens when ``main`` is called from a test or a notebook: the flags only
    make convolutions faster, so the figure is the same without them.
    """
    from remix_jax import runtime

    with contextlib.suppress(RuntimeError):
        runtime.configure()
    runtime.use_full_precision()  # judge cached examples as eval.sweep does


@dataclass(frozen=True)
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


def choose_indices(requested, logits_fn, x_all, labels) -> np.ndarray:
    """The requested test indices, or the first DEFAULT_ROWS the classifier gets right.

    Raises:
      ValueError: an index outside the test set.
    """
    from remix_jax import evaluation

    if requested is not None:
        bad = [i for i in requested if not 0 <= i < len(x_all)]
        if bad:
            raise ValueError(f"--index {bad} outside the test set [0, {len(x_all)})")
        return np.asarray(requested)
    head = min(len(x_all), 32 * DEFAULT_ROWS)  # enough: the classifier is ~99% accurate
    right = np.flatnonzero(evaluation.predict(logits_fn, x_all[:head]) == labels[:head])
    return right[:DEFAULT_ROWS]


def cached_adversarials(path: str, indices: np.ndarray) -> tuple[dict[int, np.ndarray], str]:
    """Adversarial images of ``indices`` found in a sweep cache file.

    Returns:
      ({test index: (H, W, C) image}, description of the cached settings); empty
      where the file is missing.
    """
    if not os.path.isfile(path):
        return {}, ""
    from remix_jax import adversarial_cache

    arrays, settings = adversarial_cache.read(path)
    rows = {int(t): r for r, t in enumerate(settings["indices"])}
    found = {int(i): arrays["adversarial"][rows[int(i)]] for i in indices if int(i) in rows}
    steps = f"{settings.get('binary_search_steps')} x {settings.get('max_iterations')} steps"
    beta = f", β {settings['beta']:g}" if "beta" in settings else ""
    return found, f"sweep cache {path} ({steps}{beta})"


def craft(args, logits_fn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Untargeted CW-L2 or EAD examples for ``x`` with the CLI's (fast) settings."""
    spec = attack_registry.get(args.attack)
    settings = {
        "confidence": args.confidence,
        "binary_search_steps": args.binary_search_steps,
        "max_iterations": args.max_iterations,
        "initial_const": args.initial_const,
        **spec.own_settings(args),
    }
    return np.asarray(spec.resolve()(logits_fn, x, y, **settings).adversarial)


def adversarial_images(args, logits_fn, indices, x, y) -> tuple[np.ndarray, str]:
    """x' for every row: from the sweep cache where it has the image, else crafted.

    Returns:
      ((B, H, W, C) adversarial images, a line saying where they came from).
    """
    # the reference-settings cache first, then the CPU preset's (see eval.sweep)
    folders = (
        [args.cache_dir]
        if args.cache_dir
        else [
            os.path.join("results", args.dataset, "cache", args.attack + suffix)
            for suffix in ("", "-cpu")
        ]
    )
    found, cache_note = {}, ""
    for folder in [] if args.no_cache else folders:
        path = os.path.join(folder, f"kappa_{args.confidence:g}.npz")
        found, cache_note = cached_adversarials(path, indices)
        if found:
            break
    adv = np.empty_like(x)
    missing = [r for r, i in enumerate(indices) if int(i) not in found]
    for r, i in enumerate(indices):
        if int(i) in found:
            adv[r] = found[int(i)]
    if missing:
        adv[missing] = craft(args, logits_fn, x[missing], y[missing])
    own = attack_registry.get(args.attack).own_settings(args)
    beta = f", β {own['beta']:g}" if "beta" in own else ""
    fly_note = (
        f"crafted here ({args.binary_search_steps} x {args.max_iterations} steps, "
        f"initial c {args.initial_const:g}{beta})"
    )
    if not missing:
        return adv, f"x' from the {cache_note}"
    if len(missing) == len(indices):
        return adv, f"x' {fly_note}"
    cached = ", ".join(f"#{i}" for i in indices if int(i) in found)
    return adv, f"x' from the {cache_note} for {cached}; the others {fly_note}"


def remix_stages(pre, key, x_adv: np.ndarray, iterations: int):
    """The defense's intermediate images on x', from the library's own primitive.

    ``remix_jax.defense.inpaint_copies`` with round 0's key of ``defend``
    (``fold_in(key, 0)``), so the figure shows exactly what the defense computes.

    Returns:
      dict of arrays: reformed (B, H, W, C), masks (n, B, H, W, 1|C), masked and
      inpainted (n, B, H, W, C), combined (B, H, W, C) and, for K > 1, final.
    """
    import jax
    import jax.numpy as jnp

    from remix_jax.defense import autoencoder_fn, combine_copies, defend, inpaint_copies

    remix = pre.remix
    reform = jax.jit(autoencoder_fn(remix.reformer_config, remix.reformer))
    inpaint_fn = autoencoder_fn(remix.inpainter_config, remix.inpainter)
    reformed = reform(jnp.asarray(x_adv))
    keys = jax.random.split(jax.random.fold_in(key, 0), reformed.shape[0])
    inpainted, masks = jax.jit(inpaint_copies, static_argnums=(0, 3, 4))(
        inpaint_fn, keys, reformed, remix.n_masks, remix.per_channel
    )
    masked = masks * reformed[None]
    combined = combine_copies(inpainted, masks)
    stages = {
        "reformed": reformed,
        "masks": masks,
        "masked": masked,
        "inpainted": inpainted,
        "combined": combined,
    }
    if iterations > 1:
        stages["final"] = defend(remix, key, jnp.asarray(x_adv), iterations=iterations)
    return {k: np.asarray(v) for k, v in stages.items()}


def build_columns(pre, x, x_adv, stages, iterations) -> list[Column]:
    """The figure's columns, left to right, with softmax outputs where classified."""
    import jax

    probs_fn = jax.jit(lambda images: jax.nn.softmax(pre.logits_fn(images), axis=-1))

    def probs(images):
        return np.asarray(probs_fn(images))

    cols = [
        Column("clean x", x, probs=probs(x)),
        Column("adversarial x'", x_adv, probs=probs(x_adv)),
        Column("reformer r(x')", stages["reformed"], probs=probs(stages["reformed"])),
    ]
    for i in range(len(stages["masks"])):
        k = i + 1
        cols += [
            Column(f"mask $m_{k}$\n(white = kept)", stages["masks"][i], kind="mask"),
            Column(f"$m_{k} \\cdot r(x')$", stages["masked"][i]),
            Column(f"inpainted\n$\\hat x_{k}$", stages["inpainted"][i]),
        ]
    cols.append(
        Column(
            "combined $\\hat x$ =\n$\\Sigma_i\\, \\hat x_i (1 - m_i)$",
            stages["combined"],
            probs=probs(stages["combined"]),
        )
    )
    if iterations > 1:
        cols.append(
            Column(f"after K={iterations}\nrounds", stages["final"], probs=probs(stages["final"]))
        )
    cols.append(Column("perturbation\nx' - x (scaled)", x_adv - x, kind="delta"))
    return cols


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


def draw(columns: list[Column], indices, labels, title: str, subtitle: str):
    """The figure: one row per test image, one column per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(indices), len(columns)
    geom = layout(rows, cols)
    width, height = geom.width, geom.height
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    fig.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=10.5, weight="bold")
    fig.text(0.5, 1 - 0.5 / height, subtitle, ha="center", va="top", fontsize=8, color="0.25")
    for r in range(rows):
        for c, column in enumerate(columns):
            left = LEFT + c * geom.pitch + (geom.pitch - geom.cell) / 2
            top = HEADER + r * (geom.cell + LABEL_ROOM)
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
            if column.probs is not None:
                pred = int(np.argmax(column.probs[r]))
                ax.set_xlabel(
                    f"{pred} ({100 * column.probs[r, pred]:.1f}%)",
                    fontsize=8.5,
                    labelpad=2,
                    color="tab:green" if pred == labels[r] else "tab:red",
                    weight="bold",
                )
            elif column.kind == "delta":
                delta = column.images[r]
                ax.set_xlabel(
                    f"L2 {np.linalg.norm(delta):.2f}, ±{np.abs(delta).max():.2f}",
                    fontsize=7.5,
                    labelpad=2,
                )
    return fig


def save_atomically(fig, out_png: str) -> list[str]:
    """Writes ``fig`` as PNG and PDF with the same stem, each via a temp file + os.replace."""
    stem = os.path.splitext(out_png)[0]
    folder = os.path.dirname(stem) or "."
    os.makedirs(folder, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        # beside the target so os.replace stays on one file system; pid keeps runs apart
        tmp = f"{stem}.{os.getpid()}.tmp.{ext}"
        try:
            fig.savefig(tmp, format=ext, dpi=DPI)
            os.replace(tmp, f"{stem}.{ext}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        written.append(f"{stem}.{ext}")
    return written


def main(argv=None) -> None:
    args = parse(argv)
    _start_runtime()
    import jax

    from remix_jax import data
    from remix_jax.pretrained import load_pretrained

    try:
        pre = load_pretrained(args.dataset, args.checkpoint_root)
        split = data.load_split(args.dataset, "test", args.data_dir)
        x_all = data.to_float(split.images)
        indices = choose_indices(args.index, pre.logits_fn, x_all, split.labels)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")
    x, y = x_all[indices], split.labels[indices]
    x_adv, source = adversarial_images(args, pre.logits_fn, indices, x, y)
    print(source)
    stages = remix_stages(pre, jax.random.key(args.seed), x_adv, args.iterations)
    columns = build_columns(pre, x, x_adv, stages, args.iterations)
    attack = {"cw": "CW-L2", "ead": "EAD (EN rule)"}[args.attack]
    title = (
        f"REMIX at work on {args.dataset.upper()}: {attack} at κ = {args.confidence:g} "
        "crafted on the bare classifier; REMIX is applied to the adversarial x'\n"
        f"reformer r(x'), then n = {pre.remix.n_masks} random complementary masks on "
        "r(x'), inpaint each copy, keep each pixel from the copy that hid it"
    )
    subtitle = (
        f"{source}; mask seed {args.seed}. Under classified images: "
        "prediction (softmax confidence), green = true label"
    )
    fig = draw(columns, indices, y, title, subtitle)
    out = args.out or os.path.join("results", args.dataset, "remix_at_work.png")
    written = save_atomically(fig, out)
    import matplotlib.pyplot as plt

    plt.close(fig)  # main may run many times in one process (tests)
    print("-> " + " / ".join(written))


if __name__ == "__main__":
    main()
