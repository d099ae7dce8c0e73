"""Train REMIX's inpainter: ``python -m train.inpainter --dataset mnist``.

Each training image is masked with a fresh draw of the n-mask generator (n = 2
MNIST, 3 CIFAR-10); the skip autoencoder learns to restore the hidden pixels
(mean squared error on them). Adam at 3e-4: at 1e-3 the variant that takes the mask
as an input channel collapsed to an all-zero output in its first steps (3 of 3 seeds).
"""

from __future__ import annotations

from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=30, batch_size=128, learning_rate=3e-4)
    p.add_argument("--n-masks", type=int, default=None, help="default: 2 MNIST, 3 CIFAR-10")
    common.add_architecture_flags(p)
    p.add_argument(
        "--mask-channel",
        choices=["yes", "no"],
        default=None,
        help="give the mask as an extra input channel (default: yes)",
    )
    p.add_argument(
        "--per-channel",
        action="store_true",
        help="partition the H*W*C elements instead of the pixels",
    )
    args = p.parse_args(argv)
    import dataclasses

    import optax

    from remix_jax import components, data, objectives

    config = common.autoencoder_config(args, "inpainter")
    if args.mask_channel is not None:
        config = dataclasses.replace(config, mask_channel=args.mask_channel == "yes")
    n = components.N_MASKS[args.dataset] if args.n_masks is None else args.n_masks
    if n < 2:
        common.fail(f"--n-masks must be >= 2 (one mask hides every pixel), got {n}")
    task = objectives.inpainter_task(
        config, data.DATASETS[args.dataset][:2], n, per_channel=args.per_channel
    )
    meta_config = {**config.to_dict(), "n_masks": n, "per_channel": args.per_channel}
    common.train_component(
        args, "inpainter", task, optax.adam(args.learning_rate), meta_config, "mse_hidden"
    )


if __name__ == "__main__":
    main()
