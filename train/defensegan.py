"""Train the Defense-GAN generator: ``python -m train.defensegan --dataset mnist``.

Defense-GAN (Samangouei et al. 2018; remix_jax.defensegan) classifies the closest
image its generator can make. The generator is a WGAN-GP: each step updates the critic
once on a real batch, every 5th step then updates the generator once; gradient penalty
10, Adam 1e-4 with betas (0.5, 0.9), batch 50, latent 128 (the official MNIST set-up;
CIFAR-10 has none officially: gan_cifar.py's generator with BatchNorm). The official run
is 200,000 generator iterations, ~910 epochs of MNIST at batch 50: the default --epochs;
far beyond a CPU (docs/notes/gan_baselines.md), so say what --epochs you trained.
Rerunning the command resumes an interrupted run; a larger --epochs continues a
finished one.

Writes checkpoints/<dataset>/defensegan/ (orbax + meta.json, with the critic's
Wasserstein estimate on the validation images per epoch).
"""

from __future__ import annotations

from remix_jax import cli
from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=910, batch_size=50, learning_rate=1e-4)
    p.add_argument("--latent", type=cli.positive_int, default=128, help="the size of z")
    p.add_argument(
        "--width", type=cli.positive_int, default=64, help="generator and critic width d"
    )
    p.add_argument(
        "--critic-steps",
        type=cli.positive_int,
        default=5,
        help="critic updates per generator update",
    )
    p.add_argument(
        "--penalty", type=cli.nonnegative_float, default=10.0, help="gradient penalty weight"
    )
    args = p.parse_args(argv)
    common.checkpoint_dir(args, "defensegan")
    import optax

    from remix_jax import datasets, defensegan

    try:
        config = defensegan.DefenseGANConfig.for_images(
            datasets.get(args.dataset).image_shape,
            latent=args.latent,
            width=args.width,
            critic_steps=args.critic_steps,
            penalty=args.penalty,
        )
        config.check()
    except (TypeError, ValueError) as e:
        common.fail(str(e))
    task = defensegan.wgan_gp_task(config)
    optimizer = optax.adam(args.learning_rate, b1=0.5, b2=0.9)
    common.train_component(args, "defensegan", task, optimizer, config.to_dict(), "wasserstein")


if __name__ == "__main__":
    main()
