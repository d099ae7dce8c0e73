"""What the train CLIs share: flags, data, the run, the final test evaluation."""

from __future__ import annotations

import argparse
import os
import sys

from remix_jax import cli, runtime


def parser(
    description: str, *, epochs: int, batch_size: int, learning_rate: float
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=cli.HelpFormatter)
    cli.add_dataset_flag(p)
    p.add_argument("--epochs", type=cli.positive_int, default=epochs)
    p.add_argument("--batch-size", type=cli.positive_int, default=batch_size)
    p.add_argument("--learning-rate", type=cli.positive_float, default=learning_rate)
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--data-dir", default=None, help=cli.DATA_DIR_HELP)
    p.add_argument(
        "--checkpoint-dir", default=None, help="default: checkpoints/<dataset>/<component>"
    )
    p.add_argument(
        "--validation-size",
        type=cli.positive_int,
        default=5000,
        help="last N training images held out for validation",
    )
    p.add_argument(
        "--save-every", type=cli.positive_int, default=500, help="checkpoint every N steps"
    )
    p.add_argument(
        "--limit",
        type=cli.positive_int,
        default=None,
        help="use only the first N training/test images (quick checks)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard the checkpoints in --checkpoint-dir and train from scratch",
    )
    return p


def add_architecture_flags(p: argparse.ArgumentParser) -> None:
    """--features / --strides for the skip autoencoders."""
    for flag, text in (
        ("--features", "encoder widths (default: the dataset's standard architecture)"),
        ("--strides", "encoder strides, one per width (default: all 1)"),
    ):
        p.add_argument(flag, type=cli.positive_int, nargs="+", default=None, help=text)


def autoencoder_config(args, component: str):
    """The dataset's standard architecture with the command line's overrides."""
    import dataclasses

    from remix_jax import components

    config = components.default_autoencoder(args.dataset, component)
    if args.strides and not args.features:
        fail("--strides needs --features (one stride per encoder width)")
    if args.features:
        strides = args.strides or [1] * len(args.features)
        try:
            config = dataclasses.replace(
                config, features=tuple(args.features), strides=tuple(strides)
            )
        except ValueError as e:
            fail(str(e))
    return config


def checkpoint_dir(args, component: str, *, fresh: bool = False) -> str:
    """--checkpoint-dir, else the component's default, made ready for checkpoints
    (emptied if ``fresh``), or one line and exit 2. Called right after parsing too, so an
    unusable folder fails before any model is built or compiled."""
    from remix_jax import checkpoints, components

    directory = os.path.abspath(
        args.checkpoint_dir or components.checkpoint_dir(args.dataset, component)
    )
    try:
        checkpoints.prepare_dir(directory, fresh)
    except ValueError as e:
        fail(str(e))
    return directory


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def splits(args):
    """(train, validation, test, data source): each split an (images, labels) pair.

    Validation is the last --validation-size training images (at most a fifth of
    them); --limit cuts the training and test sets first.
    """
    from remix_jax import data, training

    try:
        train_split = data.load_split(args.dataset, "train", args.data_dir)
        test_split = data.load_split(args.dataset, "test", args.data_dir)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    images, labels = train_split.images, train_split.labels
    test_images, test_labels = test_split.images, test_split.labels
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
        test_images, test_labels = test_images[: args.limit], test_labels[: args.limit]
    validation_size = min(args.validation_size, len(images) // 5)
    train, validation = training.holdout(images, labels, validation_size)
    return train, validation, (test_images, test_labels), train_split.source


def train_component(
    args, component: str, task, optimizer, config: dict, summary_metric: str
) -> dict:
    """Loads data, trains (resuming), evaluates on the test split, writes meta.json.

    ``optimizer`` is an optax transformation, or a function ``total_steps -> one``
    (for schedules that need the run's length).
    """
    runtime.configure()
    import jax

    from remix_jax import checkpoints, datasets, provenance, training

    directory = checkpoint_dir(args, component, fresh=args.fresh)
    train, validation, (test_images, test_labels), source = splits(args)
    if args.batch_size > len(train[0]):
        fail(f"--batch-size {args.batch_size} exceeds the {len(train[0])} training images")
    meta = {
        "component": component,
        "dataset": args.dataset,
        "dataset_spec": datasets.spec_to_dict(datasets.get(args.dataset)),
        "config": config,
        "train": {
            **{k: getattr(args, k) for k in ("epochs", "batch_size", "learning_rate", "seed")},
            "train_images": len(train[0]),
            "validation_images": len(validation[0]),
        },
        "data_source": source,
        **provenance.stamp(),
    }
    total_steps = args.epochs * (len(train[0]) // args.batch_size)
    schedule = not hasattr(optimizer, "update")  # a function of the run's length
    if schedule:
        meta["train"]["schedule_steps"] = total_steps
    try:
        done = training.finished_steps(
            directory, meta, total_steps, total_steps if schedule else None
        )
    except ValueError as e:
        fail(str(e))
    if done is not None:
        print(
            f"{component} ({args.dataset}): {directory} already holds the finished run "
            f"({done} steps); nothing to do. Train again with --fresh or another "
            "--checkpoint-dir, or continue it with a larger --epochs."
        )
        return checkpoints.read_metadata(directory)
    train_config = training.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, save_every=args.save_every
    )
    if schedule:
        optimizer = optimizer(total_steps)
    try:
        params, meta = training.fit(
            jax.random.key(args.seed),
            task,
            optimizer,
            train,
            validation,
            train_config,
            directory,
            meta,
            progress=not args.no_progress,
        )
    except FloatingPointError as e:
        fail(f"{e} (checkpoints in {directory})")
    except checkpoints.UnreadableCheckpoint as e:  # resuming from a damaged folder
        fail(f"{e}; train again with --fresh (discards it) or another --checkpoint-dir")
    except KeyboardInterrupt:  # fit saved before re-raising: no traceback, a way on
        print(
            f"interrupted; saved in {directory}: rerun the same command to resume", file=sys.stderr
        )
        sys.exit(130)
    test = training.evaluate(task.evaluate, params, test_images, test_labels)
    meta["test"] = {**test, "images": len(test_images)}
    checkpoints.write_metadata(directory, meta)
    print(
        f"{component} ({args.dataset}): test {summary_metric} = {test[summary_metric]:.4f} "
        f"-> {directory}"
    )
    return meta
