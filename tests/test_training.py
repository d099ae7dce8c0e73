"""The shared training loop: learning, resuming, and a killed CLI run that resumes."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from remix_jax import checkpoints, objectives, training
from remix_jax.models import AutoencoderConfig, MNISTClassifier
from remix_jax.models.classifiers import CIFARResNet, as_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_digits(n, seed=0):
    """Two separable classes: bright top half vs bright bottom half, uint8 28x28."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.integers(0, 60, (n, 28, 28, 1)).astype(np.uint8)
    images[labels == 0, :14] += 150
    images[labels == 1, 14:] += 150
    return images, labels


def test_fit_learns_and_resumes_to_the_same_parameters(tmp_path):
    train, val = toy_digits(256), toy_digits(64, seed=1)
    task = objectives.classifier_task(MNISTClassifier(), (28, 28, 1))
    opt = optax.sgd(0.01, momentum=0.9, nesterov=True)
    key = jax.random.key(0)
    two_epochs = training.TrainConfig(epochs=2, batch_size=32, save_every=3)
    straight, meta = training.fit(
        key, task, opt, train, val, two_epochs, str(tmp_path / "a"), {}, progress=False
    )
    assert meta["history"][-1]["accuracy"] > 0.9
    # one epoch, then continue the same run to two epochs from its checkpoint, each
    # session with its own provenance
    one_epoch = training.TrainConfig(epochs=1, batch_size=32, save_every=3)
    first = {"command": "first", "git_commit": "aaa", "machine": "m1", "date": "d1"}
    first_config = {"config": {"init_from": "/abs/start", "width": 4}}
    training.fit(
        key, task, opt, train, val, one_epoch, str(tmp_path / "b"), {**first, **first_config},
        progress=False,
    )  # fmt: skip
    later = {"command": "later", "git_commit": "bbb", "machine": "m2", "date": "d2"}
    later_config = {"config": {"init_from": "elsewhere", "width": 4}}
    resumed, meta_b = training.fit(
        key, task, opt, train, val, two_epochs, str(tmp_path / "b"), {**later, **later_config},
        progress=False,
    )  # fmt: skip
    assert meta_b["resumed_from"] == [8]
    # it continued the run that started from /abs/start, whatever the resume was given
    assert meta_b["config"] == {"init_from": "/abs/start", "width": 4}
    # a resumed run keeps its first session's provenance on top and lists every session
    assert meta_b["command"] == "first" and meta_b["machine"] == "m1"
    assert meta_b["sessions"] == [first, {**later, "resumed_at_step": 8}]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)


def test_a_run_killed_after_any_checkpoint_resumes_to_the_same_parameters(tmp_path, monkeypatch):
    """A kill anywhere between two checkpoints leaves the disk as a kill right after
    the first of them: killed there, mid-epoch or at an epoch's end, the same call
    resumes and ends with the parameters and history of an uninterrupted run."""
    train, val = toy_digits(96), toy_digits(32, seed=1)
    task = objectives.classifier_task(MNISTClassifier(), (28, 28, 1))
    opt = optax.sgd(0.01, momentum=0.9)
    config = training.TrainConfig(epochs=2, batch_size=16, save_every=4)  # 6 steps/epoch
    key = jax.random.key(0)
    saved = []
    original_save = checkpoints.save

    class Killed(Exception):
        pass

    def save_then_die_after(n):
        def save(folder, step, *a, **k):
            original_save(folder, step, *a, **k)
            saved.append(step)
            if len(saved) == n:
                raise Killed

        return save

    monkeypatch.setattr(checkpoints, "save", save_then_die_after(None))
    straight, meta = training.fit(key, task, opt, train, val, config, str(tmp_path / "a"), {},
                                  progress=False)  # fmt: skip
    steps_saved = list(saved)
    assert steps_saved == [4, 6, 8, 12]  # mid-epoch, epoch end, mid-epoch, the end
    for n in range(1, len(steps_saved)):
        folder, saved[:] = str(tmp_path / f"killed-after-{n}"), []
        monkeypatch.setattr(checkpoints, "save", save_then_die_after(n))
        with pytest.raises(Killed):
            training.fit(key, task, opt, train, val, config, folder, {}, progress=False)
        saved[:] = []
        monkeypatch.setattr(checkpoints, "save", save_then_die_after(None))
        resumed, meta_n = training.fit(key, task, opt, train, val, config, folder, {},
                                       progress=False)  # fmt: skip
        assert meta_n["resumed_from"] == [steps_saved[n - 1]]
        assert saved == steps_saved[n:]  # nothing before the kill is trained again
        assert meta_n["history"] == meta["history"]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)


def toy_colour(n, seed=0):
    """toy_digits as 32x32 RGB images (CIFAR-10's shape)."""
    images, labels = toy_digits(n, seed)
    return np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1), labels


def test_batchnorm_classifier_trains_its_statistics_and_resumes_exactly(tmp_path):
    train, val = toy_colour(256), toy_colour(64, seed=1)
    task = objectives.classifier_task(CIFARResNet(width=4), (32, 32, 3), augment=True)
    assert task.stateful
    initial = task.init(jax.random.key(0))
    assert set(initial) == {"params", "batch_stats"}
    opt = optax.sgd(0.05, momentum=0.9, nesterov=True)
    key = jax.random.key(0)
    three_epochs = training.TrainConfig(epochs=3, batch_size=32, save_every=5)
    straight, meta = training.fit(
        key, task, opt, train, val, three_epochs, str(tmp_path / "a"), {}, progress=False
    )
    assert meta["history"][-1]["accuracy"] > 0.9  # evaluated with the running statistics
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(a - b))), initial["batch_stats"], straight["batch_stats"]
    )
    assert min(jax.tree.leaves(moved)) > 0  # every BatchNorm's statistics were updated
    training.fit(
        key,
        task,
        opt,
        train,
        val,
        training.TrainConfig(epochs=1, batch_size=32),
        str(tmp_path / "b"),
        {},
        progress=False,
    )
    resumed, _ = training.fit(
        key, task, opt, train, val, three_epochs, str(tmp_path / "b"), {}, progress=False
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), straight, resumed)


def test_as_variables_accepts_both_stored_layouts():
    # the layouts only: jax.eval_shape traces the inits and compiles nothing
    def layout(model, shape):
        return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))

    bare = layout(MNISTClassifier(), (1, 28, 28, 1))["params"]
    assert set(as_variables(bare)) == {"params"}
    full = dict(layout(CIFARResNet(width=4), (1, 32, 32, 3)))
    assert set(full) == {"params", "batch_stats"} and as_variables(full) is full


def test_autoencoder_tasks_reduce_their_loss():
    images, labels = toy_digits(64)
    cfg = AutoencoderConfig(channels=1, features=(8, 8), strides=(1, 1), mask_channel=True)
    denoiser_cfg = AutoencoderConfig(channels=1, features=(8, 8), strides=(1, 1))
    for task in (
        objectives.denoiser_task(denoiser_cfg, (28, 28), 0.1),
        objectives.inpainter_task(cfg, (28, 28), 2),
    ):
        params = task.init(jax.random.key(0))
        opt = optax.adam(3e-3)
        state = opt.init(params)

        @jax.jit
        def step(params, state, key, task=task, opt=opt):
            (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(
                params, key, jnp.asarray(images), jnp.asarray(labels)
            )
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
                updates, state = opt.update(grads, state)
            return optax.apply_updates(params, updates), state, loss

        first = None
        for i in range(30):
            params, state, loss = step(params, state, jax.random.key(i))
            first = float(loss) if first is None else first
        assert float(loss) < 0.7 * first


def test_random_flip_crop_keeps_shape_and_content():
    x = jax.random.uniform(jax.random.key(0), (8, 32, 32, 3))
    y = objectives.random_flip_crop(jax.random.key(1), x)
    assert y.shape == x.shape
    assert not np.allclose(x, y)
    # the crop window is a shifted copy of the (reflect-)padded image: same value range
    assert float(y.min()) >= float(x.min()) and float(y.max()) <= float(x.max())


def test_holdout_rejects_bad_sizes():
    images, labels = toy_digits(10)
    (tx, _), (vx, _) = training.holdout(images, labels, 3)
    assert len(tx) == 7 and len(vx) == 3
    with pytest.raises(ValueError, match="validation size"):
        training.holdout(images, labels, 10)


def write_fake_mnist(folder):
    os.makedirs(folder / "mnist")
    for split, n in (("train", 1200), ("test", 200)):
        images, labels = toy_digits(n, seed=len(split))
        np.savez(folder / "mnist" / f"{split}.npz", image=images, label=labels, source="toy")


@pytest.mark.default_draws  # the run the subprocesses began goes on here
def test_killed_training_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    from train import classifier as train_classifier

    write_fake_mnist(tmp_path / "data")
    ckpt = tmp_path / "ckpt"
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--checkpoint-dir",
        str(ckpt),
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--validation-size",
        "200",
        "--save-every",
        "25",
        "--no-progress",
        # the recipe's 0.01 drives this separable toy's loss to exactly 0 in epoch 1 and
        # then, depending on the last bits of the arithmetic, collapses it in epoch 2
        "--learning-rate",
        "0.003",
    ]
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here

    def start_and_wait_for_a_checkpoint_after(step):
        proc = subprocess.Popen(
            [sys.executable, "-m", "train.classifier", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while (checkpoints.latest_step(str(ckpt)) or -1) <= step and time.time() < deadline:
            assert proc.poll() is None, "training ended before it could be stopped"
            time.sleep(0.05)
        return proc

    # Ctrl-C: the run saves at the step's end, says how to go on, and prints no traceback
    proc = start_and_wait_for_a_checkpoint_after(-1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted; saved in" in err and "rerun the same command to resume" in err
    interrupted_at = checkpoints.latest_step(str(ckpt))
    # SIGKILL of the resumed run: nothing saved after its last checkpoint
    proc = start_and_wait_for_a_checkpoint_after(interrupted_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoints.latest_step(str(ckpt))
    assert killed_at is not None and interrupted_at < killed_at < 2 * 50
    train_classifier.main(args)
    assert "test accuracy" in capsys.readouterr().out
    meta = checkpoints.read_metadata(str(ckpt))
    assert meta["resumed_from"][-1] >= killed_at
    assert meta["steps"] == 2 * 50
    assert meta["test"]["accuracy"] > 0.9


def test_cifar_classifier_cli_trains_a_narrow_resnet_that_loads_back(tmp_path, monkeypatch, capsys):
    from remix_jax import data
    from remix_jax.pretrained import load_classifier
    from train import classifier as train_classifier

    os.makedirs(tmp_path / "data" / "cifar10")
    for split, n in (("train", 600), ("test", 100)):
        images, labels = toy_colour(n, seed=len(split))
        np.savez(
            tmp_path / "data" / "cifar10" / f"{split}.npz", image=images, label=labels, source="toy"
        )
    root = tmp_path / "ckpt"
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here

    def train(epochs="3", *extra):
        train_classifier.main(
            ["--dataset", "cifar10", "--width", "4", "--epochs", epochs, "--batch-size", "50",
             "--validation-size", "100", "--no-progress", "--data-dir", str(tmp_path / "data"),
             "--checkpoint-dir", str(root / "cifar10" / "classifier"), *extra]
        )  # fmt: skip

    train()
    meta = checkpoints.read_metadata(str(root / "cifar10" / "classifier"))
    assert meta["config"]["module"]["width"] == 4
    assert meta["config"]["recipe"]["schedule"] == "onecycle"
    model, weights = load_classifier("cifar10", str(root))
    assert model.width == 4 and "batch_stats" in weights
    images, labels = data.load("cifar10", "test", str(tmp_path / "data"))
    logits = model.apply(as_variables(weights), data.to_float(images))
    accuracy = float(np.mean(np.argmax(logits, -1) == labels))
    assert abs(accuracy - meta["test"]["accuracy"]) < 1e-6
    assert accuracy > 0.9
    # the one-cycle schedule spans the run: resuming with another length is refused
    with pytest.raises(SystemExit):
        train("4")
    assert meta["train"]["schedule_steps"] == 3 * (500 // 50)
    # so is resuming with another learning rate, and meta.json keeps the run's own
    with pytest.raises(SystemExit):
        train("3", "--learning-rate", "0.01")
    assert checkpoints.read_metadata(str(root / "cifar10" / "classifier")) == meta
    with pytest.raises(SystemExit):  # --width is the CIFAR-10 ResNet's
        train_classifier.main(
            ["--dataset", "mnist", "--width", "4", "--checkpoint-dir", str(root / "w")]
        )
    # the same command on the finished run says so and leaves its files byte-identical
    meta_file = root / "cifar10" / "classifier" / checkpoints.META_FILE
    before = meta_file.read_bytes()
    train()
    assert "already holds the finished run" in capsys.readouterr().out
    assert meta_file.read_bytes() == before


@pytest.mark.parametrize("component", ["reformer", "inpainter", "classifier"])
def test_an_unusable_checkpoint_dir_fails_before_any_work(tmp_path, capsys, monkeypatch, component):
    import importlib

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    trainer = importlib.import_module(f"train.{component}")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    started = time.time()
    with pytest.raises(SystemExit) as info:
        trainer.main(["--checkpoint-dir", str(not_a_folder), "--data-dir", str(tmp_path)])
    assert info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert time.time() - started < 30  # before loading data or building anything


def test_a_folder_another_process_trains_into_is_refused_and_kept(tmp_path, capsys, monkeypatch):
    """Two runs on one folder would prune each other's checkpoints: the second is
    refused in one line (the CLI before any work, fit as well), --fresh included, and
    the first run's files stay; once the first process lets go, the folder is free."""
    from train import reformer

    fcntl = pytest.importorskip("fcntl")

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "7").mkdir()  # the other run's checkpoint
    # the other process's lock: flock conflicts between two opens of the file even
    # within one process, so this stands for another run
    fd = os.open(busy / checkpoints.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"process 4242")
    try:
        with pytest.raises(SystemExit) as info:
            reformer.main(["--checkpoint-dir", str(busy), "--fresh", "--data-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "is in use: process 4242 is training into it" in err
        assert err.count("\n") == 1 and (busy / "7").is_dir()  # one line; nothing deleted
        with pytest.raises(checkpoints.CheckpointDirInUse):  # --fresh empties nothing
            checkpoints.prepare_dir(str(busy), fresh=True)
        assert (busy / "7").is_dir()
        with pytest.raises(checkpoints.CheckpointDirInUse):
            training.fit(jax.random.key(0), None, None, (None, None), None, None, str(busy), {})
    finally:
        os.close(fd)  # the other process exits
    checkpoints.prepare_dir(str(busy), fresh=True)  # now it is this process's
    assert os.listdir(busy) == [checkpoints.LOCK_FILE]
    checkpoints.claim(str(busy))  # claiming it again is a no-op


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_recipe_restores_the_shipped_classifier_with_its_optimizer_state(dataset):
    # rerunning `train.classifier` on a shipped checkpoint must resume (or only
    # re-evaluate), so each recipe must build the optimizer state it was saved with
    from remix_jax import components, datasets
    from remix_jax.pretrained import load_classifier
    from train import classifier as train_classifier

    folder = components.checkpoint_dir(dataset, "classifier")
    if checkpoints.latest_step(folder) is None:
        pytest.skip(f"no {dataset} classifier committed")
    model, _ = load_classifier(dataset)
    task = objectives.classifier_task(model, datasets.get(dataset).image_shape)
    params = task.init(jax.random.key(0))
    recipe = datasets.get(dataset).classifier_recipe
    optimizer = train_classifier.make_optimizer(
        recipe["schedule"], recipe["learning_rate"], 0.9, recipe["weight_decay"], 1000
    )
    trainable = params["params"] if task.stateful else params
    restored = checkpoints.restore(folder, params, state_target=optimizer.init(trainable))
    assert restored.step == checkpoints.read_metadata(folder)["steps"]


@pytest.mark.parametrize(
    "bad",
    [
        ["--limit", "0"],
        ["--save-every", "0"],
        ["--learning-rate", "-1"],
        ["--validation-size", "-5"],
    ],
)
def test_trainers_refuse_nonsense_shared_flags(bad, capsys):
    from train import common

    parser = common.parser("test", epochs=1, batch_size=8, learning_rate=1e-3)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(bad)
    assert exit_info.value.code != 0 and f"argument {bad[0]}: must be" in capsys.readouterr().err


def test_resume_conflicts_name_changed_settings_but_not_fields_added_later():

    before = {
        "config": {"architecture": "MNISTClassifier"},
        "train": {"batch_size": 128, "learning_rate": 0.01, "seed": 0, "epochs": 50},
    }
    same = {
        "config": {"architecture": "MNISTClassifier", "recipe": {"momentum": 0.9}},
        "train": {"batch_size": 128, "learning_rate": 0.01, "seed": 0, "epochs": 60},
    }
    assert training.resume_conflicts(before, same) == []  # more epochs may resume
    # where a fine-tune started from is provenance: the checkpoint's steps are the start
    started = {**before, "config": {**before["config"], "init_from": "/abs/ckpt"}}
    resumed = {**same, "config": {**same["config"], "init_from": "ckpt"}}
    assert training.resume_conflicts(started, resumed) == []
    other = {
        "config": {"architecture": "CIFARResNet"},
        "train": {"batch_size": 64, "learning_rate": 0.01, "seed": 0},
    }
    assert training.resume_conflicts(before, other) == [
        "config.architecture: 'MNISTClassifier' -> 'CIFARResNet'",
        "train.batch_size: 128 -> 64",
    ]


def test_a_diverged_run_stops_with_an_error_instead_of_passing_for_trained(tmp_path):
    train, val = toy_digits(64), toy_digits(32, seed=1)
    task = objectives.classifier_task(MNISTClassifier(), (28, 28, 1))
    config = training.TrainConfig(epochs=1, batch_size=32, save_every=100)
    with pytest.raises(FloatingPointError, match="diverged at epoch 1"):
        training.fit(
            jax.random.key(0),
            task,
            optax.sgd(1e30),
            train,
            val,
            config,
            str(tmp_path / "run"),
            {},
            progress=False,
        )


def test_classifier_aware_inpainter_loss_is_mse_plus_lambda_ce_of_the_frozen_classifier():
    from jax.flatten_util import ravel_pytree

    from remix_jax.defense import autoencoder_fn, mask_inpaint
    from remix_jax.models.autoencoder import AutoencoderConfig, init_autoencoder

    cfg = AutoencoderConfig(channels=1, features=(4, 4), strides=(1, 1), mask_channel=True)
    start = init_autoencoder(jax.random.key(3), cfg, (8, 8))
    w = jax.random.normal(jax.random.key(4), (64, 3))

    def classify(x):
        return x.reshape(x.shape[0], -1) @ w

    images = jax.random.randint(jax.random.key(5), (4, 8, 8, 1), 0, 256).astype(jnp.uint8)
    key = jax.random.key(6)
    x = images.astype(jnp.float32) / 255
    x_hat = mask_inpaint(autoencoder_fn(cfg, start), jax.random.clone(key), x, 2)
    mse = jnp.mean((x_hat - x) ** 2)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        classify(x_hat), jnp.argmax(classify(x), -1)
    ).mean()
    for lam in (0.0, 0.5):
        task = objectives.classifier_aware_inpainter_task(
            cfg, (8, 8), 2, classify, lam, init_params=start
        )
        params = task.init(jax.random.key(0))
        assert params is start  # fine-tuning starts from the given weights
        loss, metrics = task.loss(params, jax.random.clone(key), images, None)
        np.testing.assert_allclose(loss, mse + lam * ce, rtol=1e-5)
        np.testing.assert_allclose(metrics["mse_hidden"], mse, rtol=1e-5)
    # the classifier term moves the inpainter: its gradient differs from the MSE one's
    tasks = [
        objectives.classifier_aware_inpainter_task(cfg, (8, 8), 2, classify, lam)
        for lam in (0.0, 0.5)
    ]
    grads = [
        jax.grad(lambda p, t=t: t.loss(p, jax.random.clone(key), images, None)[0])(start)
        for t in tasks
    ]
    assert not np.allclose(*(ravel_pytree(g)[0] for g in grads))
    # through a (frozen) reformer the inpainter sees the reformed image, the MSE the clean
    halve = objectives.classifier_aware_inpainter_task(
        cfg, (8, 8), 2, classify, 0.0, init_params=start, reform=lambda v: 0.5 * v
    )
    x_half = mask_inpaint(autoencoder_fn(cfg, start), jax.random.clone(key), 0.5 * x, 2)
    np.testing.assert_allclose(
        halve.loss(start, jax.random.clone(key), images, None)[0],
        jnp.mean((x_half - x) ** 2),
        rtol=1e-5,
    )
    sums = task.evaluate(start, images, jnp.zeros(4, jnp.int32))
    assert set(sums) == {"mse_hidden", "ce", "agreement", "accuracy"}


def test_ctrl_c_during_a_step_stops_at_the_step_boundary_saves_and_resumes(tmp_path):
    """The signal arrives while JAX runs a step (from inside the jitted loss); fit
    finishes that step, saves it and raises KeyboardInterrupt; the run then resumes."""
    train, val = toy_digits(96), toy_digits(32, seed=1)
    task = objectives.classifier_task(MNISTClassifier(), (28, 28, 1))
    calls = []

    def interrupt_third_call():
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    def loss(params, key, images, labels):
        jax.debug.callback(interrupt_third_call)
        return task.loss(params, key, images, labels)

    interrupted = task._replace(loss=loss)
    config = training.TrainConfig(epochs=1, batch_size=16, save_every=100)
    folder = str(tmp_path / "run")
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        training.fit(
            jax.random.key(0), interrupted, optax.sgd(0.01), train, val, config, folder, {}
        )
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    assert checkpoints.latest_step(folder) == 3  # the step it was in, finished and saved
    _, meta = training.fit(jax.random.key(0), task, optax.sgd(0.01), train, val, config, folder, {})
    assert meta["resumed_from"] == [3] and meta["steps"] == 6


def test_classifier_task_preprocesses_training_batches_only_and_starts_from_given_weights():
    """The hook of the classifier fine-tuned on REMIX's outputs (``train.classifier
    --through-remix --init-from``): training batches go through ``preprocess`` with a
    key of their own, validation images do not, and ``init_params`` are the start."""
    seen = []

    def preprocess(key, x):
        seen.append((jax.random.key_data(key).shape, x.shape))
        return jnp.zeros_like(x)  # the classifier then sees blank images only

    model = MNISTClassifier()
    plain = objectives.classifier_task(model, (28, 28, 1))
    start = plain.init(jax.random.key(0))
    task = objectives.classifier_task(model, (28, 28, 1), preprocess=preprocess, init_params=start)
    assert task.init(jax.random.key(1)) is start
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)), jnp.uint8)
    labels = jnp.arange(4) % 10
    loss, _ = task.loss(start, jax.random.key(2), images, labels)
    blank, _ = plain.loss(start, jax.random.key(2), jnp.zeros_like(images), labels)
    assert seen == [((2,), (4, 28, 28, 1))] and jnp.allclose(loss, blank)
    # validation: the plain images, untouched
    assert task.evaluate(start, images, labels) == plain.evaluate(start, images, labels)
    assert len(seen) == 1


def test_the_docs_python_training_example_runs_as_written(tmp_path, monkeypatch):
    """docs/api/training.md's way from a user's arrays to a defense: the reformer and
    the inpainter trained with training.fit, assembled as RemixParams, then defend."""
    import re

    with open(os.path.join(REPO, "docs", "api", "training.md")) as f:
        [code] = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 12, 12, 1)).astype(np.uint8)  # what users bring
    monkeypatch.chdir(tmp_path)  # its checkpoint folders land here
    namespace = {"images": images, "labels": np.zeros(64, np.int32)}
    exec(compile(code, "training.md", "exec"), namespace)
    assert namespace["x_hat"].shape == (8, 12, 12, 1)
    assert namespace["remix"].n_masks == 2
    for component in ("reformer", "inpainter"):
        assert checkpoints.latest_step(str(tmp_path / "ckpt" / component)) == 56 // 16
