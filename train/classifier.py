"""Train the protected classifier: ``python -m train.classifier --dataset mnist``.

Each dataset has its recipe (the defaults; every flag overrides it):

- MNIST follows MagNet's / Carlini's: SGD, learning rate 0.01, Nesterov momentum
  0.9, batch 128, 50 epochs, no augmentation.
- CIFAR-10 uses a fast-training recipe for a narrow ResNet-9 (Page, "How to train
  your ResNet"): batch 512, Nesterov SGD with a one-cycle schedule (linear warm-up
  to 0.4 over the first 5/24 of training, linear decay to 0), weight decay 5e-4,
  random flip + crop. No label smoothing (Page uses 0.2): it caps the logit gaps
  (median 3.0 on the test set), and CW/EAD's confidence kappa is a logit margin, so
  the paper's kappa grid would test a different regime (results/logit-gaps.md).
"""

from __future__ import annotations

import argparse

from remix_jax import cli, datasets, runtime
from train import common

# the flags a dataset's recipe (remix_jax.datasets.DatasetSpec.classifier_recipe) sets
RECIPE_FLAGS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "schedule",
    "weight_decay",
    "label_smoothing",
    "augment",
)
WARMUP_FRACTION = 5 / 24


def learning_rate_schedule(kind: str, peak: float, total_steps: int):
    """A constant rate, or the one-cycle triangle: 0 -> peak -> 0."""
    import optax

    if kind == "constant":
        return peak  # a float, not a schedule: no step counter in the optimizer state
    warmup = max(int(WARMUP_FRACTION * total_steps), 1)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, warmup),
            optax.linear_schedule(peak, 0.0, max(total_steps - warmup, 1)),
        ],
        [warmup],
    )


def make_optimizer(
    schedule: str, learning_rate: float, momentum: float, weight_decay: float, total_steps: int
):
    """Nesterov SGD with the recipe's schedule, plus weight decay when it is non-zero."""
    import optax

    sgd = optax.sgd(
        learning_rate_schedule(schedule, learning_rate, total_steps),
        momentum=momentum,
        nesterov=True,
    )
    if not weight_decay:
        return sgd  # the optimizer state layout of the shipped MNIST checkpoint
    return optax.chain(optax.add_decayed_weights(weight_decay), sgd)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=None, batch_size=None, learning_rate=None)
    p.add_argument("--momentum", type=cli.unit_fraction, default=0.9)
    p.add_argument("--schedule", choices=["constant", "onecycle"], default=None)
    p.add_argument("--weight-decay", type=cli.nonnegative_float, default=None)
    p.add_argument("--label-smoothing", type=cli.unit_fraction, default=None)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random flip + crop (--no-augment to disable)",
    )
    p.add_argument(
        "--width",
        type=cli.positive_int,
        default=None,
        help="ResNet width, where the classifier has one (CIFAR-10; default: "
        "the shipped architecture's)",
    )
    p.add_argument(
        "--init-from",
        type=cli.existing_folder,
        default=None,
        help="start from this classifier checkpoint folder (a fine-tune) instead of fresh weights",
    )
    p.add_argument(
        "--through-remix",
        action="store_true",
        help="train on the shipped REMIX's outputs (reformer + mask-inpaint, K=1, fresh "
        "masks every step) instead of the images: a classifier adapted to the defense, "
        "a different protected network (validation stays on clean images)",
    )
    p.epilog = "defaults (None) come from the dataset's recipe: " + "; ".join(
        f"{name}: {dict(datasets.get(name).classifier_recipe)}" for name in datasets.names()
    )
    args = p.parse_args(argv)
    spec = datasets.get(args.dataset)
    for name, value in spec.classifier_recipe.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if missing := [name for name in RECIPE_FLAGS if getattr(args, name) is None]:
        p.error(f"{args.dataset} has no recipe for --{missing[0].replace('_', '-')}: pass it")
    common.checkpoint_dir(args, "classifier")  # before the model is built
    runtime.configure()  # before building the task, which traces the model
    import functools

    from remix_jax import components, defense, objectives, pretrained

    init_params = None
    if args.init_from:
        if args.width:
            p.error("--width: the architecture comes from --init-from")
        try:
            model, init_params = pretrained.load_classifier(args.dataset, folder=args.init_from)
        except (FileNotFoundError, ValueError) as e:
            common.fail(f"--init-from {args.init_from}: {e}")
    else:
        try:
            width = {"width": args.width} if args.width else {}
            model = components.classifier(args.dataset, **width)
        except TypeError:
            p.error(f"--width: the {args.dataset} classifier has no width")
    preprocess = None
    if args.through_remix:
        try:
            remix = pretrained.load_remix(
                reformer=components.find_checkpoint(args.dataset, "reformer"),
                inpainter=components.find_checkpoint(args.dataset, "inpainter"),
            )
        except (FileNotFoundError, ValueError) as e:
            common.fail(f"--through-remix: {e}")
        preprocess = functools.partial(defense.defend, remix, iterations=1, chunk=None)
    task = objectives.classifier_task(
        model,
        spec.image_shape,
        augment=args.augment,
        label_smoothing=args.label_smoothing,
        preprocess=preprocess,
        init_params=init_params,
    )

    def optimizer(total_steps):
        return make_optimizer(
            args.schedule, args.learning_rate, args.momentum, args.weight_decay, total_steps
        )

    config = {
        "architecture": type(model).__name__,
        "module": components.module_fields(model),
        "recipe": {name: getattr(args, name) for name in (*RECIPE_FLAGS, "momentum")},
    }
    # always recorded (a resumed run compares the keys both record): a run begun on
    # REMIX's outputs must not go on on clean images
    config["init_from"] = args.init_from
    config["through_remix"] = args.through_remix
    common.train_component(args, "classifier", task, optimizer, config, "accuracy")


if __name__ == "__main__":
    main()
