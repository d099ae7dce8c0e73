"""What every command-line tool shares; imports no JAX, so ``--help`` is instant."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to an option's help only where it tells something.

    Left out for on/off flags (their default is "not given"), for ``None`` defaults
    (the help says what ``None`` means) and where the help already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or action.default is None or "default:" in text:
            return action.help
        return super()._get_help_string(action)


# help texts of the options most tools share
DATA_DIR_HELP = (
    "folder with <dataset>/<split>.npz (default: $REMIX_DATA_DIR, else tensorflow-datasets)"
)
CHECKPOINT_ROOT_HELP = "default: $REMIX_CHECKPOINT_DIR, else the repo's checkpoints/"


def add_dataset_flag(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """``--dataset`` (or ``--datasets`` with ``many``): choices and default from the registry."""
    from remix_jax import datasets  # imports no JAX

    if many:
        parser.add_argument(
            "--datasets", nargs="+", choices=datasets.names(), default=datasets.names()
        )
    else:
        parser.add_argument("--dataset", choices=datasets.names(), default=datasets.default())


def check_output_path(prefix: str) -> None:
    """Exits with one line unless files ``<prefix>.*`` can be written, before any work.

    Creates the folder; a long run must not find out at its end that it cannot save.
    """
    import os
    import sys

    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot create the output folder {folder} ({e.strerror})")
    if not os.access(folder, os.W_OK | os.X_OK):
        sys.exit(f"error: the output folder {folder} is not writable")
    if os.path.isdir(prefix):
        sys.exit(f"error: the output {prefix} is a folder; --out names a file prefix")
