"""What a training step of each inpainter candidate costs: ``python -m bench.inpainter_cost``.

Times one optimizer step (batch --batch-size, CIFAR-10 shapes by default) of the
hidden-pixel MSE objective for each candidate architecture, and of the
classifier-aware objective (one whole mask-inpaint round through the shipped
classifier) for the shipped RED-Net, then converts to minutes per epoch of 45,000
training images. Also times what each architecture costs at test time: ``defend()``
(the shipped reformer, then n masks inpainted, K = 1) in images per second. Writes
results/bench/inpainter_cost_<platform>[_<dataset>].json.
"""

from __future__ import annotations

import argparse
import os

from bench import common
from remix_jax import datasets
from remix_jax.cli import HelpFormatter, add_dataset_flag, check_output_path, positive_int

# name -> AutoencoderConfig fields (channels and mask_channel are added)
CANDIDATES = {
    "rednet 4x32 (shipped)": dict(features=(32,) * 4, strides=(1,) * 4),
    "rednet 4x64": dict(features=(64,) * 4, strides=(1,) * 4),
    "unet 32-64-128": dict(features=(32, 64, 128), strides=(1, 2, 2), architecture="unet"),
    "unet 32-64-128-256": dict(
        features=(32, 64, 128, 256), strides=(1, 2, 2, 2), architecture="unet"
    ),
    "unet 32-64-128-256 interpolate": dict(
        features=(32, 64, 128, 256), strides=(1, 2, 2, 2), architecture="unet", fill="interpolate"
    ),
}


def step_seconds(task, batch, repeats: int) -> float:
    """Median seconds of one jitted Adam step of ``task`` on a random uint8 batch."""
    import jax
    import numpy as np
    import optax

    params = task.init(jax.random.key(0))
    opt = optax.adam(3e-4)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key, images):
        (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(params, key, images, None)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
            updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    images = np.random.default_rng(0).integers(0, 256, batch, dtype=np.uint8)
    (params, state, _), _ = common.timed(step, params, state, jax.random.key(1), images)
    times = []
    for i in range(repeats):
        (params, state, _), seconds = common.timed(
            step, params, state, jax.random.key(2 + i), images
        )
        times.append(seconds)
    return float(np.median(times))


def defend_images_per_second(remix, batch, repeats: int) -> float:
    """Images per second of the jitted ``defend(remix, key, x)`` on a random batch
    (the median of ``repeats`` timed calls after one that compiles)."""
    import jax
    import numpy as np

    from remix_jax import defend

    run = jax.jit(defend)
    x = np.random.default_rng(0).random(batch, dtype=np.float32)
    common.timed(run, remix, jax.random.key(0), x)  # compiles
    times = [common.timed(run, remix, jax.random.key(1 + i), x)[1] for i in range(repeats)]
    return batch[0] / float(np.median(times))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--repeats", type=positive_int, default=5, help="timed steps per candidate")
    p.add_argument("--train-images", type=positive_int, default=45_000, help="images per epoch")
    p.add_argument(
        "--defend-batch", type=positive_int, default=256, help="images per timed defend() call"
    )
    args = p.parse_args(argv)
    from remix_jax import runtime

    runtime.configure()
    import jax

    from remix_jax import objectives, pretrained, provenance
    from remix_jax.models.autoencoder import AutoencoderConfig

    platform = jax.default_backend()
    path = os.path.join(
        "results", "bench", f"inpainter_cost_{platform}{datasets.file_suffix(args.dataset)}.json"
    )
    check_output_path(path, "the result")
    spec = datasets.get(args.dataset)
    batch = (args.batch_size, *spec.image_shape)
    steps_per_epoch = args.train_images // args.batch_size
    shipped_remix = pretrained.load_pretrained(args.dataset).remix
    rows = []
    for name, fields in CANDIDATES.items():
        config = AutoencoderConfig(channels=spec.channels, mask_channel=True, **fields)
        task = objectives.inpainter_task(config, spec.hw, spec.n_masks)
        params = task.init(jax.random.key(0))
        # the same defense with this architecture's (untrained) inpainter: the cost of a
        # pass depends on the architecture, not on the weights
        remix = shipped_remix.replace(inpainter=params, inpainter_config=config)
        rows.append({"candidate": name, "objective": "mse", "config": config.to_dict(),
                     "params": objectives.param_count(params),
                     "step_seconds": step_seconds(task, batch, args.repeats),
                     "defend_images_per_second": defend_images_per_second(
                         remix, (args.defend_batch, *spec.image_shape), args.repeats)})  # fmt: skip
        print(f"{name}, mse: {rows[-1]['step_seconds']:.3f} s per step, defend() "
              f"{rows[-1]['defend_images_per_second']:.0f} images/s", flush=True)  # fmt: skip
    model, weights = pretrained.load_classifier(args.dataset)
    variables = pretrained.as_variables(weights)
    config, shipped, _ = pretrained.load_autoencoder(args.dataset, "inpainter")
    task = objectives.classifier_aware_inpainter_task(
        config, spec.hw, spec.n_masks, lambda x: model.apply(variables, x), 0.1,
        init_params=shipped,
    )  # fmt: skip
    rows.append({"candidate": "rednet 4x32 (shipped)", "objective": "classifier-aware",
                 "config": config.to_dict(), "params": objectives.param_count(shipped),
                 "step_seconds": step_seconds(task, batch, args.repeats)})  # fmt: skip
    print(f"shipped rednet, classifier-aware: {rows[-1]['step_seconds']:.3f} s per step")
    for row in rows:
        row["minutes_per_epoch"] = round(row["step_seconds"] * steps_per_epoch / 60, 1)
    common.write_json(path, {"dataset": args.dataset, "batch_size": args.batch_size,
                             "defend_batch": args.defend_batch,
                             "steps_per_epoch": steps_per_epoch, "rows": rows,
                             **provenance.stamp()})  # fmt: skip
    print(f"-> {path}")


if __name__ == "__main__":
    main()
