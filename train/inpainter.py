"""Train REMIX's inpainter: ``python -m train.inpainter --dataset mnist``.

Each training image is masked with a fresh draw of the n-mask generator (n = 2
MNIST, 3 CIFAR-10); the autoencoder learns to restore the hidden pixels (mean
squared error on them). Adam at 3e-4: at 1e-3 the variant that takes the mask as an
input channel collapsed to an all-zero output in its first steps (3 of 3 seeds).

With ``--classifier-weight L`` the loss becomes classifier-aware: each image goes
through a whole mask-inpaint round and L x the frozen classifier's cross-entropy on
the result (against its own prediction on the clean image) joins the hidden-pixel
error (``remix_jax.objectives.classifier_aware_inpainter_task``); ``--init-from``
starts from an MSE-trained inpainter, whose architecture is then used.
"""

from __future__ import annotations

from remix_jax import cli
from remix_jax.models.autoencoder import ARCHITECTURES, FILLS
from train import common


def parse(argv):
    p = common.parser(__doc__.splitlines()[0], epochs=30, batch_size=128, learning_rate=3e-4)
    p.add_argument(
        "--n-masks", type=cli.mask_count, default=None, help="default: 2 MNIST, 3 CIFAR-10"
    )
    common.add_architecture_flags(p)
    p.add_argument(
        "--mask-channel",
        choices=["yes", "no"],
        default=None,
        help="give the mask as an extra input channel (default: yes)",
    )
    p.add_argument(
        "--architecture",
        choices=list(ARCHITECTURES),
        default="rednet",
        help="rednet: the paper's skip autoencoder; unet: levels at 1, 1/2, 1/4 ... "
        "resolution with concatenated skips (--features: level widths, "
        "--strides 1 2 2 ...)",
    )
    p.add_argument(
        "--fill",
        choices=list(FILLS),
        default=None,
        help="hidden pixels as the network sees them: zero (default), or interpolate "
        "(mean of the visible neighbours); with --init-from, changes the restored "
        "network's (its weights fit either)",
    )
    p.add_argument(
        "--per-channel",
        action="store_true",
        help="partition the H*W*C elements instead of the pixels",
    )
    p.add_argument(
        "--classifier-weight",
        type=cli.nonnegative_float,
        default=0.0,
        help="lambda of the classifier-aware loss (0: hidden-pixel MSE only)",
    )
    p.add_argument(
        "--init-from",
        type=cli.existing_folder,
        default=None,
        help="start from this inpainter checkpoint folder (its architecture, "
        "n and mask layout are used)",
    )
    p.add_argument(
        "--through-reformer",
        action="store_true",
        help="with --classifier-weight: mask the shipped reformer's output, as the defense "
        "does, instead of the clean image",
    )
    p.add_argument(
        "--classifier",
        type=cli.existing_folder,
        default=None,
        help="classifier checkpoint folder for --classifier-weight "
        "(default: the dataset's shipped classifier)",
    )
    return p.parse_args(argv)


def architecture(args, spec):
    """The inpainter's config, its n and the weights it starts from (--init-from's, or
    None): a fine-tuned inpainter keeps its architecture, n and per-channel masks."""
    import dataclasses

    from remix_jax import pretrained

    if args.init_from:
        try:
            config, init_params, trained = pretrained.restore_autoencoder(args.init_from, spec.hw)
        except (FileNotFoundError, ValueError) as e:
            common.fail(f"--init-from {args.init_from}: {e}")
        args.per_channel = trained.get("per_channel", False)
        if args.fill is not None:
            try:
                config = dataclasses.replace(config, fill=args.fill)
            except ValueError as e:
                common.fail(f"--fill: {e}")
        return config, trained.get("n_masks", spec.n_masks), init_params
    config = common.autoencoder_config(args, "inpainter")
    if args.mask_channel is not None:
        config = dataclasses.replace(config, mask_channel=args.mask_channel == "yes")
    try:
        config = dataclasses.replace(
            config, architecture=args.architecture, fill=args.fill or "zero"
        )
    except ValueError as e:
        where = (
            ""
            if args.strides
            else (
                f" (the default strides for {spec.hw[0]}x{spec.hw[1]} images; pass "
                "--features and --strides, e.g. --strides 1 2 2 2 for a unet)"
            )
        )
        common.fail(f"{e}{where}")
    return config, spec.n_masks if args.n_masks is None else args.n_masks, None


def classifier_aware_task(args, config, hw, n, init_params):
    """The classifier-aware loss's task (--classifier-weight > 0), with the meta fields
    that say which classifier (and reformer) it learned through."""
    from remix_jax import objectives, pretrained
    from remix_jax.defense import autoencoder_fn

    try:
        model, weights = pretrained.load_classifier(args.dataset, folder=args.classifier)
    except (FileNotFoundError, ValueError) as e:
        common.fail(f"classifier: {e}")
    variables = pretrained.as_variables(weights)
    reform = None
    if args.through_reformer:
        try:
            reformer_config, reformer, _ = pretrained.load_autoencoder(args.dataset, "reformer")
        except (FileNotFoundError, ValueError) as e:
            common.fail(f"--through-reformer: {e}")
        reform = autoencoder_fn(reformer_config, reformer)
    task = objectives.classifier_aware_inpainter_task(
        config,
        hw,
        n,
        lambda x: model.apply(variables, x),
        args.classifier_weight,
        per_channel=args.per_channel,
        init_params=init_params,
        reform=reform,
    )
    meta = dict(
        classifier_weight=args.classifier_weight,
        through_reformer=args.through_reformer,
        classifier=args.classifier or "shipped",
        init_from=args.init_from,
    )
    return task, meta


def main(argv=None) -> None:
    args = parse(argv)
    common.checkpoint_dir(args, "inpainter")  # before anything is built or loaded
    import optax

    from remix_jax import datasets, objectives, runtime
    from remix_jax.masking import num_positions

    runtime.configure()  # before the first JAX computation (restoring weights is one)
    if args.through_reformer and not args.classifier_weight > 0:
        common.fail(
            "--through-reformer applies to the classifier-aware loss: pass --classifier-weight"
        )
    spec = datasets.get(args.dataset)
    config, n, init_params = architecture(args, spec)
    positions = num_positions(spec.image_shape, args.per_channel)
    if not 2 <= n <= positions:
        common.fail(
            f"--n-masks must be in [2, {positions}] (one mask hides every pixel; "
            f"more than the positions leaves masks empty), got {n}"
        )
    meta_config = {**config.to_dict(), "n_masks": n, "per_channel": args.per_channel}
    if args.classifier_weight > 0:
        task, meta = classifier_aware_task(args, config, spec.hw, n, init_params)
        meta_config.update(meta)
    else:
        task = objectives.inpainter_task(config, spec.hw, n, per_channel=args.per_channel)
        if init_params is not None:
            task = task._replace(init=lambda key: init_params)
            meta_config["init_from"] = args.init_from
    common.train_component(
        args, "inpainter", task, optax.adam(args.learning_rate), meta_config, "mse_hidden"
    )


if __name__ == "__main__":
    main()
