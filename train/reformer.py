"""Train REMIX's reformer (denoising skip autoencoder): ``python -m train.reformer``.

Inputs are clip(x + sigma * N(0, 1), 0, 1), targets x, mean squared error; sigma
defaults to MagNet's training noise (0.1 MNIST, 0.025 CIFAR-10).
"""

from __future__ import annotations

from remix_jax import cli
from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=20, batch_size=128, learning_rate=1e-3)
    p.add_argument(
        "--noise", type=cli.nonnegative_float, default=None, help="default: MagNet's per dataset"
    )
    common.add_architecture_flags(p)
    args = p.parse_args(argv)
    common.checkpoint_dir(args, "reformer")  # before the model is built
    import optax

    from remix_jax import datasets, objectives

    config = common.autoencoder_config(args, "reformer")
    spec = datasets.get(args.dataset)
    noise = spec.reformer_noise if args.noise is None else args.noise
    task = objectives.denoiser_task(config, spec.hw, noise)
    meta_config = {**config.to_dict(), "noise": noise}
    common.train_component(
        args, "reformer", task, optax.adam(args.learning_rate), meta_config, "mse_noisy"
    )


if __name__ == "__main__":
    main()
