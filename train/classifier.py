"""Train the protected classifier: ``python -m train.classifier --dataset mnist``.

MNIST follows MagNet's / Carlini's recipe: SGD, learning rate 0.01, Nesterov
momentum 0.9, batch 128, 50 epochs.
"""

from __future__ import annotations

from train import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=50, batch_size=128, learning_rate=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    args = p.parse_args(argv)
    import optax

    from remix_jax import components, data, objectives

    model = components.classifier(args.dataset)
    task = objectives.classifier_task(model, data.DATASETS[args.dataset])
    optimizer = optax.sgd(args.learning_rate, momentum=args.momentum, nesterov=True)
    config = {"architecture": type(model).__name__}
    common.train_component(args, "classifier", task, optimizer, config, "accuracy")


if __name__ == "__main__":
    main()
