"""Protecting one's own model: ``--classifier`` / ``load_classifier_fn``, ``load_remix``,
and the README section "Protect your own classifier" run as written."""

import dataclasses
import importlib
import json
import os
import re
import shlex
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax import datasets, load_classifier_fn, load_remix, pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the commands the README section runs, imported before a test changes the working folder
CLIS = {name: importlib.import_module(name) for name in ("train.reformer", "train.inpainter")}
CLIS["eval.sweep"] = importlib.import_module("eval.sweep")

MODULE = "own_classifier_models"  # written by the `models` fixture
MODELS = """
import jax.numpy as jnp


def logits_fn(x):  # MNIST-shaped: (B, 28, 28, 1) -> (B, 10)
    return jnp.tile(jnp.mean(x, axis=(1, 2)), (1, 10))


def make_logits_fn():
    return logits_fn


def half_precision(x):
    return logits_fn(x).astype(jnp.bfloat16)


def three_classes(x):
    return jnp.tile(jnp.mean(x, axis=(1, 2)), (1, 3))


def integer_logits(x):
    return jnp.zeros((x.shape[0], 10), jnp.int32)


def two_outputs(x):
    return logits_fn(x), logits_fn(x)


def needs_colour(x):
    return x.reshape(x.shape[0], -1, 3)[..., 0]


def broken_factory():
    raise RuntimeError("weights missing")


not_a_function = 3
"""


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(MODULE, None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_package_xyz.model:logits_fn", "cannot import no_such_package_xyz"),
        (f"{MODULE}:missing", f"{MODULE} has no missing"),
        (f"{MODULE}:three_classes", r"returns \(2, 3\) float32 .* expected \(2, 10\) float"),
        (f"{MODULE}:integer_logits", r"returns \(2, 10\) int32"),
        (f"{MODULE}:two_outputs", "returns a tuple"),
        (f"{MODULE}:needs_colour", r"fails on a \(2, 28, 28, 1\) float32 batch of mnist"),
        (f"{MODULE}:not_a_function", "expected logits_fn"),
        (f"{MODULE}:broken_factory", r"broken_factory\(\) failed \(RuntimeError: weights missing"),
        ("no_folder_nor_spec", "neither a checkpoint folder nor package.module:function"),
    ],
)
def test_a_classifier_that_does_not_fit_is_refused_in_one_line(models, spec, message):
    with pytest.raises(ValueError, match=message) as info:
        load_classifier_fn(spec, "mnist")
    assert "\n" not in str(info.value)


def test_a_function_or_a_factory_of_it_gives_float32_logits(models):
    x = jnp.zeros((3, 28, 28, 1))
    for name in ("logits_fn", "make_logits_fn", "half_precision"):
        logits = load_classifier_fn(f"{MODULE}:{name}", "mnist")(x)
        assert (logits.shape, logits.dtype) == ((3, 10), jnp.float32), name
    with pytest.raises(ValueError, match="1 channel"):
        load_classifier_fn(f"{MODULE}:logits_fn", "mnist")(jnp.zeros((3, 28, 28, 3)))


def checkpoint(folder, dataset, spec=None):
    """A checkpoint folder holding only its meta.json (enough for every check here)."""
    folder.mkdir(parents=True)
    meta = {"dataset": dataset, **({"dataset_spec": datasets.spec_to_dict(spec)} if spec else {})}
    (folder / "meta.json").write_text(json.dumps(meta))
    return str(folder)


def test_a_checkpoint_trained_on_other_images_is_refused(tmp_path):
    folder = checkpoint(tmp_path / "classifier", "mnist")
    shapes = r"trained on 28x28x1 images of 10 classes \(mnist\), but cifar10 has 32x32x3"
    with pytest.raises(ValueError, match=shapes + ".*python -m train.classifier"):
        load_classifier_fn(folder, "cifar10")
    with pytest.raises(ValueError, match=shapes + ".*python -m train.inpainter"):
        pretrained.load_pretrained("cifar10", inpainter=checkpoint(tmp_path / "inp", "mnist"))


def test_load_remix_refuses_a_reformer_and_an_inpainter_of_other_images(tmp_path):
    checkpoint(tmp_path / "reformer", "mnist")
    checkpoint(tmp_path / "inpainter", "cifar10")
    with pytest.raises(ValueError, match=r"reformer was trained on 28x28x1 .* cifar10 has 32x32"):
        load_remix(str(tmp_path))


def test_load_remix_needs_its_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reformer checkpoint folder"):
        load_remix(str(tmp_path))
    with pytest.raises(ValueError, match="needs folder= or reformer= and inpainter="):
        load_remix()


def test_a_checkpoint_registers_its_unknown_dataset_and_refuses_a_name_clash(tmp_path):
    spec = datasets.derive_spec("own_toy", (16, 16, 3), 3, source=str(tmp_path))
    try:
        folder = checkpoint(tmp_path / "a", "own_toy", spec)
        assert pretrained.checkpoint_dataset(folder) == "own_toy"
        assert datasets.get("own_toy") == spec
    finally:
        datasets.unregister("own_toy")
    clash = checkpoint(tmp_path / "b", "mnist", dataclasses.replace(spec, name="mnist"))
    with pytest.raises(ValueError, match="registered here with 28x28x1"):
        pretrained.checkpoint_dataset(clash)


def test_cached_examples_of_another_classifier_are_refused():
    own = pretrained.Pretrained(None, None, None, None, classifier_source="my_pkg.model:f")
    with pytest.raises(ValueError, match="crafted on the dataset's classifier, not on my_pkg"):
        own.check_crafted_on({"targeted": False}, "cache/cw")
    own.check_crafted_on({"classifier": "my_pkg.model:f"}, "cache/cw")
    assert own.classifier_entry() == {"classifier": "my_pkg.model:f"}
    assert own._replace(classifier_source=None).classifier_entry() == {}


@pytest.mark.slow
def test_load_pretrained_protects_the_classifier_it_is_given(models):
    from remix_jax import progress

    folder = os.path.join(REPO, "checkpoints", "mnist", "classifier")
    if not os.path.isdir(folder):
        pytest.skip("no MNIST checkpoints committed")
    shipped = pretrained.load_pretrained("mnist")
    given = pretrained.load_pretrained("mnist", classifier=folder)
    x = jnp.linspace(0, 1, 4 * 28 * 28).reshape(4, 28, 28, 1)
    np.testing.assert_array_equal(given.logits_fn(x), shipped.logits_fn(x))
    assert (shipped.classifier_source, given.classifier_source) == (None, folder)
    # a function's weights hide in its closure: its stand-in tells models apart
    names = ("logits_fn", "half_precision")
    own = [pretrained.load_pretrained("mnist", classifier=f"{MODULE}:{name}") for name in names]
    assert own[0].classifier is None and own[0].classifier_source == f"{MODULE}:logits_fn"
    assert progress.fingerprint(own[0].classifier_params) != progress.fingerprint(
        own[1].classifier_params
    )


@pytest.mark.parametrize(
    "command, flags, needs",
    [
        ("eval.clean", [], "--out"),
        ("eval.sweep", ["--attack", "cw", "--out", "o"], "--cache-dir"),
        ("eval.adaptive", ["--attack", "pgd"], "--out and --cache-dir"),
        ("eval.detector", ["--attack", "cw"], "--out and --cache-dir"),
        ("eval.visualize", [], "--out"),
    ],
)
def test_another_classifier_on_a_shipped_dataset_needs_its_own_paths(command, flags, needs, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(command).main([*flags, "--classifier", "pkg.model:fn"])
    assert f"--classifier on mnist needs {needs}" in capsys.readouterr().err


# --- the README section, end to end -----------------------------------------------------

# classes by their strong colour channel; folder order (blue, green, red) = class index
MY_MODEL = """
import jax.numpy as jnp


def logits_fn(x):
    return 20.0 * jnp.mean(x, axis=(1, 2))[:, ::-1]
"""


def write_image_folder(root, per_class):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for channel, name in ((2, "blue"), (1, "green"), (0, "red")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 80, (16, 16, 3))
                image[..., channel] += 150
                Image.fromarray(image.astype(np.uint8)).save(root / split / name / f"{i}.png")


def readme_section() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of "Protect your own classifier", in order."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text.split("## Protect your own classifier\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^( *)```(\w+)\n(.*?)^\1```", section, flags=re.S | re.M)
    return [(language, textwrap.dedent(code)) for _, language, code in blocks]


@pytest.fixture
def own_project(tmp_path, monkeypatch):
    """tmp_path as the folder the README's commands run in: my_images/, my_pkg/."""
    from remix_jax import runtime

    write_image_folder(tmp_path / "my_images", {"train": 12, "test": 6})
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "model.py").write_text(MY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REMIX_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    monkeypatch.setattr(runtime, "use_full_precision", lambda: None)  # process-wide
    yield tmp_path
    if "my_images" in datasets.names():
        datasets.unregister("my_images")
    for name in ("my_pkg", "my_pkg.model"):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_the_readme_protects_your_own_classifier(own_project, capsys):
    blocks = readme_section()
    assert [language for language, _ in blocks] == ["bash", "python", "bash"]
    for language, code in blocks:
        if language == "python":
            # as in a fresh process: the dataset is known only from the checkpoints' meta.json
            datasets.unregister("my_images")
            capsys.readouterr()
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
            printed = dict(line.rsplit(" ", 1) for line in capsys.readouterr().out.splitlines())
            continue
        for line in code.replace("\\\n", " ").splitlines():
            python, dash_m, command, *argv = shlex.split(line)
            assert (python, dash_m) == ("python", "-m"), line
            CLIS[command].main(argv)
    assert float(printed["clean"]) == 1.0 and 0 <= float(printed["clean + REMIX"]) <= 1
    assert datasets.get("my_images").source == str(own_project / "my_images")

    result = json.loads((own_project / "results" / "my_images" / "cw.json").read_text())
    assert result["classifier"] == "my_pkg.model:logits_fn"
    assert [row["confidence"] for row in result["rows"]] == [0.0, 10.0]
    assert result["rows"][0]["attack_success"] > 0
    cache = own_project / "results" / "my_images" / "cache" / "cw-cpu" / "kappa_0.npz"
    with np.load(cache) as f:
        assert json.loads(str(f["settings"]))["classifier"] == "my_pkg.model:logits_fn"
