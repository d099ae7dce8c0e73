"""Train the APE-GAN baseline: ``python -m train.apegan --dataset mnist``.

APE-GAN (Shen et al. 2017; remix_jax.apegan): a purifier G learns, against a
discriminator, to map FGSM examples of the dataset's bare classifier (step --epsilon,
made per batch) back to their clean images; each batch runs one discriminator step and
two generator steps, Adam with beta1 0.5. Defaults are the official code's (batch 64, lr
2e-4, 2 epochs; its README trains CIFAR-10 for 5) with the paper's loss weights 0.7 /
0.3. Rerunning the command resumes an interrupted run.

Writes checkpoints/<dataset>/apegan/ (orbax + meta.json, with the validation RMSE of the
purified FGSM examples and the classifier's accuracy on them per epoch).
"""

from __future__ import annotations

from remix_jax import cli
from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=2, batch_size=64, learning_rate=2e-4)
    p.add_argument(
        "--epsilon",
        type=cli.positive_float,
        default=None,
        help="FGSM's step on the training images (default: the dataset's apegan_epsilon, "
        "0.3 MNIST, 0.1 CIFAR-10)",
    )
    p.add_argument(
        "--content-weight", type=cli.nonnegative_float, default=0.7, help="weight of the RMSE"
    )
    p.add_argument(
        "--adversarial-weight",
        type=cli.nonnegative_float,
        default=0.3,
        help="weight of the GAN loss (the official code later used 0.9 / 0.02)",
    )
    p.add_argument("--width", type=cli.positive_int, default=64, help="first conv's features")
    cli.add_classifier_flag(p)
    args = p.parse_args(argv)
    common.checkpoint_dir(args, "apegan")  # before the classifier is loaded
    import optax

    from remix_jax import apegan, datasets, runtime

    spec = datasets.get(args.dataset)
    if spec.hw[0] % 4 or spec.hw[1] % 4:
        common.fail(f"APE-GAN needs a height and width divisible by 4, got {spec.hw}")
    config = apegan.APEGANConfig(
        channels=spec.channels,
        width=args.width,
        epsilon=spec.apegan_epsilon if args.epsilon is None else args.epsilon,
        content_weight=args.content_weight,
        adversarial_weight=args.adversarial_weight,
    )
    try:
        apegan.check_config(config)
    except (TypeError, ValueError) as e:
        common.fail(str(e))
    runtime.configure()
    from remix_jax.pretrained import protected_classifier

    try:
        _, _, logits_fn, _ = protected_classifier(args.dataset, args.classifier)
    except (FileNotFoundError, ValueError) as e:
        common.fail(str(e))
    task = apegan.apegan_task(config, spec.image_shape, logits_fn)
    optimizer = optax.adam(args.learning_rate, b1=0.5)
    # the classifier FGSM attacked is part of what the purifier learned
    meta_config = {**config.to_dict(), "classifier": args.classifier or "the dataset's"}
    common.train_component(args, "apegan", task, optimizer, meta_config, "rmse")


if __name__ == "__main__":
    main()
