"""Train the MagNet baseline: ``python -m train.magnet --dataset mnist``.

As MagNet's official code: each autoencoder (MNIST: I = [3, average, 3], II = [3];
CIFAR-10: I = [3]) learns to restore x from clip(x + v * N(0, 1), 0, 1) (v = 0.1
MNIST, 0.025 CIFAR-10) with Adam and mean squared error; then every detector's
threshold is set on the clean validation images (the last --validation-size training
images, never trained on) so that it rejects its drop rate of them. Rerunning the
command resumes an interrupted training and recalibrates.

Writes checkpoints/<dataset>/magnet/<autoencoder>/ (orbax + meta.json) and
checkpoints/<dataset>/magnet/detectors.json (detectors, thresholds, clean rates).
"""

from __future__ import annotations

import argparse
import os

from remix_jax import cli
from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=100, batch_size=256, learning_rate=1e-3)
    p.add_argument(
        "--noise",
        type=cli.nonnegative_float,
        default=None,
        help="training noise v (default: MagNet's per dataset)",
    )
    p.add_argument(
        "--autoencoders",
        nargs="+",
        default=None,
        help="which to train (default: all of the dataset's)",
    )
    args = p.parse_args(argv)
    import optax

    from remix_jax import components, datasets, objectives

    spec = datasets.get(args.dataset)
    try:
        names = args.autoencoders or sorted(components.magnet_setup(args.dataset).autoencoders)
    except ValueError as e:  # a dataset without MagNet's set-up
        common.fail(str(e))
    noise = spec.reformer_noise if args.noise is None else args.noise
    root = common.checkpoint_dir(args, "magnet")  # each autoencoder's folder goes in it
    hw = spec.hw
    try:  # every name, before the first one trains for hours
        configs = {name: components.magnet_autoencoder(args.dataset, name) for name in names}
    except ValueError as e:
        common.fail(f"--autoencoders: {e}")
    for name, config in configs.items():
        task = objectives.magnet_denoiser_task(config, hw, noise)
        meta_config = {**config.to_dict(), "noise": noise, "name": name}
        ae_args = argparse.Namespace(**{**vars(args), "checkpoint_dir": os.path.join(root, name)})
        common.train_component(
            ae_args,
            f"magnet-{name}",
            task,
            optax.adam(args.learning_rate),
            meta_config,
            "mse_noisy",
        )
    calibrate(args, root)


def calibrate(args, root: str) -> None:
    """Sets the thresholds on the validation images; reports clean rates on the test set."""
    from remix_jax import data, evaluation, provenance
    from remix_jax import magnet as magnet_lib
    from remix_jax.models.classifiers import as_variables
    from remix_jax.pretrained import load_classifier, load_magnet

    try:
        model, params = load_classifier(args.dataset)
        magnet = load_magnet(args.dataset, folder=root, calibrated=False)
    except (FileNotFoundError, ValueError) as e:
        common.fail(str(e))

    def logits_fn(x):
        return model.apply(as_variables(params), x)

    _, (val_images, _), (test_images, test_labels), _ = common.splits(args)
    validation_size = len(val_images)
    try:
        magnet = magnet_lib.calibrate(magnet, logits_fn, data.to_float(val_images))
    except ValueError as e:
        common.fail(str(e))
    x_test = data.to_float(test_images)
    scores = magnet_lib.outcomes(magnet, logits_fn, x_test, test_labels)
    per_detector = {
        name: float(fired.mean() * 100) for name, fired in scores["rejected_by"].items()
    }
    plain = evaluation.predict(logits_fn, x_test) == test_labels
    report = {
        "dataset": args.dataset,
        "validation_images": int(validation_size),
        "test": {
            "images": len(test_labels),
            "classifier_accuracy": float(plain.mean() * 100),
            "reformer_accuracy": float(scores["reformed_correct"].mean() * 100),
            "rejected_percent": float(scores["rejected"].mean() * 100),
            "rejected_percent_per_detector": per_detector,
        },
        **provenance.stamp(),
    }
    path = magnet_lib.save_calibration(root, magnet, report)
    print(
        f"MagNet ({args.dataset}): clean test rejected {report['test']['rejected_percent']:.2f}%"
        f", reformer accuracy {report['test']['reformer_accuracy']:.2f}% -> {path}"
    )


if __name__ == "__main__":
    main()
