"""Shared bench plumbing: the shipped models and images, the flags and result paths of
the timing benches, atomic result files."""

from __future__ import annotations

import argparse

from remix_jax.cli import add_dataset_flag, check_output_path, parser, positive_int
from remix_jax.result_files import write_json  # noqa: F401  (the benches import it from here)
from remix_jax.timing import timed  # noqa: F401  (the benches import the timer from here)


def setup(dataset: str, num_examples: int, data_dir: str | None = None):
    """A dataset's shipped models and the first N test images its classifier gets right."""
    from remix_jax import data, evaluation
    from remix_jax.pretrained import load_pretrained

    pre = load_pretrained(dataset)
    images, labels = data.load(dataset, "test", data_dir)
    x = data.to_float(images[: 2 * num_examples + 100])
    right = evaluation.predict(pre.logits_fn, x) == labels[: len(x)]
    return pre, x[right][:num_examples], labels[: len(x)][right][:num_examples]


def step_parser(doc: str, parts: list[str], batch_help: str) -> argparse.ArgumentParser:
    """The flags bench.attacks and bench.speed share: --part (one of ``parts``),
    --dataset, --attacks and the timed search step's --batch and --iterations.
    ``doc``: the module docstring, whose first line describes the tool."""
    p = parser(doc)
    p.add_argument("--part", choices=parts, required=True)
    add_dataset_flag(p)
    p.add_argument("--attacks", nargs="+", choices=["cw", "ead"], default=["cw", "ead"])
    p.add_argument("--batch", type=positive_int, default=1000, help=batch_help)
    p.add_argument("--iterations", type=positive_int, default=50, help="timed attack iterations")
    return p


def add_out_flag(p: argparse.ArgumentParser, default: str) -> None:
    """--out, the result's JSON path; ``default`` says where it goes without it."""
    p.add_argument("--out", default=None, help=f"JSON path (default: {default})")


def configure(full_precision: bool = False) -> None:
    """Sets JAX up for a bench, before JAX is first imported; ``full_precision``: float32
    matmuls and convolutions in full float32 (not TF32), as the attacks run them."""
    from remix_jax import runtime

    runtime.configure()
    if full_precision:
        runtime.use_full_precision()


def result_path(out: str | None, default: str) -> str:
    """``out``, or ``default`` with ``<backend>`` replaced by JAX's platform ("cpu",
    "gpu"); exits with one line unless it can be written. After :func:`configure`."""
    import jax

    path = out or default.replace("<backend>", jax.default_backend())
    check_output_path(path)
    return path
