"""The one training loop that every ``train/*`` CLI shares.

Resumable by construction: the data order of epoch e comes from ``fold_in(key, e)``
and the step's randomness from ``fold_in(key, step)``, and the checkpoint stores the
parameters, the optimizer state and the step. Rerunning the same command restores
the latest checkpoint and continues at the exact batch it stopped before, so a kill
loses at most the steps since the last save (every ``save_every`` steps and at every
epoch end; Ctrl-C saves first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from remix_jax import checkpoints, sharding

logger = logging.getLogger(__name__)

# loss_fn(params, key, images uint8 (B,H,W,C), labels (B,)) -> (loss, metrics)
LossFn = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, dict]]
# eval_fn(params, images uint8, labels) -> metrics summed over the batch
EvalFn = Callable[[Any, jax.Array, jax.Array], dict]

# The metrics key under which a stateful task's loss returns its updated model state.
MODEL_STATE = "model_state"
# metadata fields that say who ran a training session (remix_jax.provenance.stamp)
PROVENANCE = ("command", "git_commit", "machine", "date")


class Task(NamedTuple):
    """What differs between components: how to init, what to minimise, how to score.

    Attributes:
      init: ``init(key) -> params``.
      loss: ``loss(params, key, images, labels) -> (scalar loss, metrics dict)``;
        images are uint8 (B, H, W, C); preprocessing (noise, masks, augmentation)
        happens inside, on the device, from ``key``.
      evaluate: ``evaluate(params, images, labels) -> dict of per-batch sums``;
        :func:`evaluate` divides them by the number of examples.
      stateful: the model keeps non-trained state (BatchNorm statistics). Then
        "params" everywhere above is Flax's whole variables dict ``{"params": ...,
        "batch_stats": ...}``, the optimizer trains only its "params" entry, and
        ``loss`` returns the updated other collections in its metrics under
        :data:`MODEL_STATE`; the step stores them back. Checkpoints hold both.
      custom_step: for a task that trains its networks its own way (a GAN's
        alternating discriminator and generator updates): ``custom_step(optimizer) ->
        (init_state, step)`` with ``init_state(params) -> optimizer state`` and
        ``step(params, opt_state, key, images, labels) -> (params, opt_state,
        metrics)``, which :func:`fit` jits and runs instead of one gradient step on
        ``loss`` (then unused). Its checkpoints, resume and evaluation stay fit's.
      host_step: ``custom_step``'s step runs as it is, on the host, instead of jitted
        whole: it jits its own parts and chooses between them in Python (Defense-GAN's
        WGAN-GP updates its generator on every 5th step; as ``lax.cond`` inside one
        jitted step, XLA's CPU backend ran it 2.5x slower).
    """

    init: Callable[[jax.Array], Any]
    loss: LossFn | None
    evaluate: EvalFn
    stateful: bool = False
    custom_step: Callable[[optax.GradientTransformation], tuple[Callable, Callable]] | None = None
    host_step: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    save_every: int = 500
    eval_batch_size: int = 1000


def evaluate(
    eval_fn: EvalFn, params: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000
) -> dict[str, float]:
    """Means of ``eval_fn``'s per-batch sums over a whole split."""
    jitted = jax.jit(eval_fn)
    totals: dict[str, float] = {}
    for start in range(0, len(images), batch_size):
        sums = jitted(
            params, images[start : start + batch_size], labels[start : start + batch_size]
        )
        for name, value in sums.items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return {name: value / max(len(images), 1) for name, value in totals.items()}


def _trainable(task: Task, params: Any) -> Any:
    """What the optimizer updates: all params, or a stateful model's "params" entry."""
    return params["params"] if task.stateful else params


@functools.lru_cache(maxsize=2)
def _step_of(task: Task, optimizer: optax.GradientTransformation) -> tuple[Callable, Callable]:
    """(init_state(params) -> optimizer state, the jitted step) of a task, built once per
    (task, optimizer): a run resumed in the same process compiles nothing again."""
    if task.custom_step is None:
        return (lambda params: optimizer.init(_trainable(task, params))), _make_step(
            task, optimizer
        )
    init_state, custom = task.custom_step(optimizer)
    return init_state, custom if task.host_step else jax.jit(custom, donate_argnums=(0, 1))


def _make_step(task: Task, optimizer: optax.GradientTransformation):
    def step(params, opt_state, key, images, labels):
        def loss_fn(trainable):
            variables = {**params, "params": trainable} if task.stateful else trainable
            return task.loss(variables, key, images, labels)

        trainable = _trainable(task, params)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        # optax's bias correction raises a Python float to an int32 count: standard
        # promotion, so that the library also runs under jax_numpy_dtype_promotion=strict
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        if task.stateful:
            params = {**params, **metrics.pop(MODEL_STATE), "params": trainable}
        else:
            params = trainable
        return params, opt_state, {"loss": loss, **metrics}

    return jax.jit(step, donate_argnums=(0, 1))


@contextlib.contextmanager
def deferred_interrupts():
    """Ctrl-C (SIGINT) and SIGTERM set a flag that the training loop reads between
    steps, instead of raising inside a JAX call.

    A KeyboardInterrupt thrown while a step is being dispatched can leave the runtime
    waiting forever: the save that follows it then never ends (seen with a CIFAR-10
    U-Net: orbax hung on moving the interrupted step's arrays to the host). A second
    signal interrupts at once, as usual. Outside the main thread (where Python cannot
    install handlers) nothing is deferred.

    Yields:
      A list that receives the number of each deferred signal.
    """
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if requested:  # asked twice: stop now
            raise KeyboardInterrupt
        requested.append(signum)
        logger.warning("interrupt received: stopping after this step (again to stop now)")

    for s in previous:
        signal.signal(s, handler)
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fit(
    key: jax.Array,
    task: Task,
    optimizer: optax.GradientTransformation,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    config: TrainConfig,
    checkpoint_dir: str,
    metadata: dict,
    *,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Trains ``task`` (resuming from ``checkpoint_dir`` if it holds a checkpoint).

    Args:
      key: PRNG key of the run (data order, init, per-step randomness).
      task: the component's :class:`Task`.
      optimizer: an optax transformation (schedules count the restored step).
      train: (images uint8 (N, H, W, C), labels (N,)).
      validation: held-out split, evaluated at every epoch end.
      config: epochs, batch size, save interval.
      checkpoint_dir: where checkpoints and ``meta.json`` live.
      metadata: JSON-able facts to store (command, config, ...); this function adds
        ``history`` (validation metrics per epoch), ``steps`` and ``train_seconds``.
        A resumed run keeps the :data:`PROVENANCE` fields of its first session and
        lists every session under ``sessions``.

    Returns:
      (trained params, metadata as written).

    Raises:
      checkpoints.CheckpointDirInUse: another process is training into
        ``checkpoint_dir``.
      FloatingPointError: the validation loss or a metric is not finite (diverged).
    """
    checkpoints.claim(checkpoint_dir)  # one run per folder (the CLIs claimed it already)
    images, labels = train
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(images)} training images"
        )
    total_steps = steps_per_epoch * config.epochs
    # a run's key is its identity, passed again to resume it: split a copy of it
    init_key, order_key, step_key = jax.random.split(jax.random.clone(key), 3)

    params = task.init(init_key)
    try:
        hash((task, optimizer))
        build = _step_of
    except TypeError:  # an unhashable task or optimizer: built for this run only
        build = _step_of.__wrapped__
    init_state, train_step = build(task, optimizer)
    opt_state = init_state(params)
    # placed on the device as a restored checkpoint is: the step then compiles once
    # for a fresh run and a resumed one alike (jit keys on the arrays' placement)
    params, opt_state = jax.device_put((params, opt_state), jax.local_devices()[0])
    step, meta = 0, {**metadata, "history": [], "train_seconds": 0.0}
    if checkpoints.latest_step(checkpoint_dir) is not None:
        restored = checkpoints.restore(checkpoint_dir, params, state_target=opt_state)
        params, opt_state, step = restored.params, restored.state, restored.step
        try:
            previous = checkpoints.read_metadata(checkpoint_dir)
            meta["history"] = previous.get("history", [])
            meta["train_seconds"] = previous.get("train_seconds", 0.0)
            meta["resumed_from"] = previous.get("resumed_from", [])
            # the run's first session stays on top; every session is listed
            first = {k: previous[k] for k in PROVENANCE if k in previous}
            session = {k: metadata[k] for k in PROVENANCE if k in metadata}
            meta["sessions"] = [
                *previous.get("sessions", [first]),
                {**session, "resumed_at_step": step},
            ]
            meta.update(first)
            # where the run started is the first session's (RESUME_IGNORES): a resume
            # given another --init-from continues this run, so it records this start
            for name in RESUME_IGNORES:
                section, _, key = name.partition(".")
                if key in previous.get(section, {}) and isinstance(meta.get(section), dict):
                    meta[section] = {**meta[section], key: previous[section][key]}
        except FileNotFoundError:
            pass
        meta.setdefault("resumed_from", []).append(step)
        logger.info("resuming from step %d of %d", step, total_steps)

    # data parallel over every device (GPUs, TPUs, CPU host devices): params and
    # optimizer state replicated, each batch split; one device runs as before
    parallel = _data_parallel(config.batch_size)
    if parallel:
        params, opt_state = sharding.replicate((params, opt_state))
    started = time.time()
    seconds_before = meta["train_seconds"]

    def save():
        meta["steps"] = step
        meta["train_seconds"] = round(seconds_before + time.time() - started, 1)
        checkpoints.save(checkpoint_dir, step, params, state=opt_state, metadata=meta)

    bar = tqdm(
        total=total_steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True
    )
    interrupts = contextlib.ExitStack()
    requested = interrupts.enter_context(deferred_interrupts())
    try:
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            order = np.asarray(
                jax.random.permutation(jax.random.fold_in(order_key, epoch), len(images))
            )
            for i in range(offset, steps_per_epoch):
                idx = np.sort(order[i * config.batch_size : (i + 1) * config.batch_size])
                batch = (images[idx], labels[idx])
                if parallel:
                    batch = sharding.shard_batch(batch)
                params, opt_state, metrics = train_step(
                    params, opt_state, jax.random.fold_in(step_key, step), *batch
                )
                step += 1
                bar.update(1)
                if step % 50 == 0 or step == total_steps:
                    bar.set_postfix({k: f"{float(v):.4f}" for k, v in metrics.items()})
                if step % config.save_every == 0 and step % steps_per_epoch:
                    save()
                if requested:  # between steps: nothing of JAX's is interrupted
                    raise KeyboardInterrupt
            val = evaluate(task.evaluate, params, *validation, config.eval_batch_size)
            bar.write(
                f"epoch {epoch + 1}: " + ", ".join(f"val_{k}={v:.4f}" for k, v in val.items())
            )
            if not all(np.isfinite(v) for v in val.values()):
                # a diverged run must not pass for a trained one: stop before its
                # epoch checkpoint and the metadata record it as done
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (validation {val}); "
                    "try a smaller learning rate"
                )
            meta["history"].append({"epoch": epoch + 1, "step": step, **val})
            save()
    except KeyboardInterrupt:
        bar.write(f"interrupted at step {step}: saving")
        save()
        raise
    finally:
        bar.close()
        interrupts.close()
    if checkpoints.latest_step(checkpoint_dir) != step:
        save()
    return params, meta


def _data_parallel(batch_size: int) -> bool:
    """Whether to split each batch over the devices: more than one, and a batch size
    they divide (otherwise one device trains, and a warning says why)."""
    devices = jax.device_count()
    if devices > 1 and batch_size % devices:
        logger.warning(
            "batch size %d is not divisible by the %d devices: training on one device",
            batch_size,
            devices,
        )
        return False
    return devices > 1


# what a resumed run must share with the checkpoint it continues (--epochs may grow,
# except under a schedule, which train_component checks separately)
RESUME_MUST_MATCH = ("batch_size", "learning_rate", "seed", "train_images", "validation_images")
# config fields that say where a run came from, not how it trains: once a checkpoint
# has steps, the run continues from them, whatever folder it was first started from
# (recorded as typed, so the same run reads "/abs/path" on one machine, "path" on another)
RESUME_IGNORES = ("config.init_from",)


def resume_conflicts(before: dict, now: dict) -> list[str]:
    """The settings in which a new run differs from the checkpoint's ``meta.json``.

    Compares the model/recipe ``config`` (keys both record, so fields added to the
    metadata later do not count; not RESUME_IGNORES) and the training settings of
    RESUME_MUST_MATCH.

    Returns:
      One "name: checkpoint value -> new value" string per difference.
    """

    def flat(tree, prefix=""):
        if isinstance(tree, dict):
            out = {}
            for k, v in tree.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: tree}

    old = flat(json.loads(json.dumps(before.get("config", {}))), "config.")
    new = flat(json.loads(json.dumps(now.get("config", {}))), "config.")
    old.update({f"train.{k}": before.get("train", {}).get(k) for k in RESUME_MUST_MATCH})
    new.update({f"train.{k}": now["train"].get(k) for k in RESUME_MUST_MATCH})
    return [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if old[k] is not None and old[k] != new[k] and k not in RESUME_IGNORES
    ]


def finished_steps(
    directory: str, meta: dict, total_steps: int, schedule_steps: int | None = None
) -> int | None:
    """The resume policy: may this run continue the checkpoint in ``directory``?

    Args:
      directory: the run's checkpoint folder.
      meta: the new run's metadata (its ``config`` and ``train`` settings).
      total_steps: the steps the new run trains for.
      schedule_steps: the length of its learning-rate schedule, if it follows one (a
        schedule spans the whole run: resuming with another length would bend it).

    Returns:
      The steps done if they already finish the run (nothing to train), else None
      (train from scratch or resume).

    Raises:
      ValueError: the checkpoint was trained with other settings or schedule; the
        message names them and the ways on.
    """
    done = checkpoints.latest_step(directory)
    if done is None:
        return None
    try:
        before = checkpoints.read_metadata(directory)
    except FileNotFoundError:
        before = {}
    if conflicts := resume_conflicts(before, meta):
        raise ValueError(
            f"the run in {directory} was trained with other settings ("
            + "; ".join(conflicts)
            + "): rerun with the original flags to resume it, or pass another --checkpoint-dir"
        )
    if done >= total_steps:
        return done
    old_schedule = before.get("train", {}).get("schedule_steps")
    if schedule_steps is not None and old_schedule not in (None, schedule_steps):
        raise ValueError(
            f"the run in {directory} follows a learning-rate schedule of {old_schedule} "
            f"steps; these flags give {schedule_steps} (--epochs, --batch-size, --limit or "
            "--validation-size differ): rerun with the original flags or another "
            "--checkpoint-dir"
        )
    return None


def holdout(images: np.ndarray, labels: np.ndarray, size: int) -> tuple[tuple, tuple]:
    """Splits off the last ``size`` examples as a validation set (fixed, reproducible)."""
    if not 0 < size < len(images):
        raise ValueError(f"validation size must be in (0, {len(images)}), got {size}")
    return (images[:-size], labels[:-size]), (images[-size:], labels[-size:])


def accuracy_sum(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Number of correct argmax predictions in a batch."""
    return jnp.sum(jnp.argmax(logits, axis=-1) == labels)
