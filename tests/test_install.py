"""The shipped weights travel with the package (``pip install .``, wheels, git URLs)."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = [
    f"{dataset}/{component}"
    for dataset in ("mnist", "cifar10")
    for component in ("classifier", "reformer", "inpainter", "magnet")
] + ["mnist/apegan", "cifar10/apegan"]  # the baselines trained so far


def setuptools_config():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_under_src_is_listed():
    # pyproject.toml lists the packages by hand (discovery cannot also map the
    # weights folder), so a new subpackage left off would be missing from the wheel
    setuptools = pytest.importorskip("setuptools")
    listed = set(setuptools_config()["packages"])
    assert listed == {*setuptools.find_packages(os.path.join(REPO, "src")), "remix_jax._weights"}


def test_package_data_names_exactly_the_shipped_components():
    patterns = setuptools_config()["package-data"]["remix_jax._weights"]
    assert sorted(patterns) == sorted(f"{folder}/**/*" for folder in SHIPPED)


def shipped_files():
    """The wheel paths the shipped checkpoint folders must become."""
    files = set()
    for folder in SHIPPED:
        top = os.path.join(REPO, "checkpoints", folder)
        for parent, _, names in os.walk(top):
            for name in names:
                if name.startswith("."):  # e.g. a training run's .lock: never packaged
                    continue
                relative = os.path.relpath(os.path.join(parent, name), top)
                files.add(f"remix_jax/_weights/{folder}/{relative}")
    return files


@pytest.mark.slow
def test_built_wheel_holds_the_shipped_weights_and_nothing_else(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")  # setuptools' bdist_wheel needs it (no build isolation)
    if not all(os.path.isdir(os.path.join(REPO, "checkpoints", f)) for f in SHIPPED):
        pytest.skip("shipped checkpoints not all present")
    # build from a copy so that build/ and *.egg-info never land in the checkout;
    # checkpoints/ is linked, not copied (35 MB with the ablations)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), source)
    shutil.copytree(
        os.path.join(REPO, "src"),
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    os.symlink(os.path.join(REPO, "checkpoints"), source / "checkpoints")
    # offline: no build isolation, so no download of setuptools into a fresh env
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = {name for name in names if name.startswith("remix_jax/_weights/")}
    assert shipped_files() <= weights
    assert all(any(w.startswith(f"remix_jax/_weights/{f}/") for f in SHIPPED) for w in weights)
    assert not any("/ablation/" in name or "/candidates/" in name for name in names)
    for folder in SHIPPED:
        meta = "detectors.json" if folder.endswith("magnet") else "meta.json"
        assert f"remix_jax/_weights/{folder}/{meta}" in names
    assert "remix_jax/pretrained.py" in names and "remix_jax/models/autoencoder.py" in names
