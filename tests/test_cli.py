"""Every command line answers --help, and its help prints only meaningful defaults."""

import importlib
import subprocess
import sys

import pytest

import remix_jax

COMMANDS = [
    "eval.adaptive",
    "eval.cache_margins",
    "eval.clean",
    "eval.demo",
    "eval.detector",
    "eval.figure",
    "eval.logit_gaps",
    "eval.sweep",
    "eval.training_curves",
    "eval.visualize",
    "train.classifier",
    "train.inpainter",
    "train.magnet",
    "train.reformer",
    "bench.apgd_reference",
    "bench.attacks",
    "bench.cifar_widths",
    "bench.defend_sizes",
    "bench.defense_cost",
    "bench.inpainter_cost",
    "bench.magnet_init",
    "bench.presets",
    "bench.reference_attacks",
    "bench.speed",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_no_empty_defaults(name, capsys, monkeypatch):
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    with pytest.raises(SystemExit) as done:
        importlib.import_module(name).main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage:")
    for noise in ("(default: None)", "(default: False)", "(default: True)"):
        assert noise not in " ".join(text.split()), f"{name} --help prints {noise}"


def test_help_formatter_keeps_real_defaults():
    import argparse

    from remix_jax.cli import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--steps", type=int, default=9, help="search steps")
    p.add_argument("--out", default=None, help="default: results/")
    p.add_argument("--fast", action="store_true", help="go fast")
    text = " ".join(p.format_help().split())
    assert "search steps (default: 9)" in text
    assert "default: results/" in text and "(default: None)" not in text
    assert "go fast" in text and "(default: False)" not in text


def test_cli_helpers_import_without_jax():
    code = "import sys, remix_jax.cli; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve_lazily():
    from remix_jax import defense, pretrained

    assert remix_jax.defend is defense.defend
    assert remix_jax.load_pretrained is pretrained.load_pretrained
    assert set(remix_jax.__all__) <= set(dir(remix_jax))
    with pytest.raises(AttributeError, match="no_such_name"):
        remix_jax.no_such_name  # noqa: B018
