"""The attack registry: what the CLIs dispatch through."""

import argparse
import subprocess
import sys

import pytest

from remix_jax import attack_registry


def test_registered_attacks_resolve_and_pass_their_own_settings():
    from remix_jax.attacks import apgd, cw_l2, ead, pgd

    assert attack_registry.names() == ["cw", "ead", "pgd", "apgd"]
    assert attack_registry.names("confidence") == ["cw", "ead"]
    assert attack_registry.names("epsilon") == ["pgd", "apgd"]
    got = [attack_registry.get(n).resolve() for n in ("cw", "ead", "pgd", "apgd")]
    assert got == [cw_l2, ead, pgd, apgd]
    args = argparse.Namespace(beta=0.5, decision_rule="L1", other=1)
    assert attack_registry.get("ead").own_settings(args) == {"beta": 0.5, "decision_rule": "L1"}
    assert attack_registry.get("cw").own_settings(args) == {}
    # a source without a flag leaves the attack's default
    assert attack_registry.get("ead").own_settings(argparse.Namespace(beta=0.1)) == {"beta": 0.1}
    assert attack_registry.get("pgd").randomized(1) == {"key": 1, "stochastic": True}
    with pytest.raises(ValueError, match=r"one of \['cw', 'ead', 'pgd', 'apgd'\]"):
        attack_registry.get("fgsm")
    with pytest.raises(ValueError, match="budget"):
        attack_registry.AttackSpec("x", "m:f", "time")


def test_a_registered_attack_is_a_sweep_choice():
    from eval import sweep

    spec = attack_registry.register(
        attack_registry.AttackSpec("toy", "remix_jax.attacks.cw:cw_l2", "confidence")
    )
    try:
        assert sweep.parse(["--attack", "toy"]).attack == "toy"
    finally:
        attack_registry.unregister(spec.name)
    with pytest.raises(SystemExit):
        sweep.parse(["--attack", "toy"])


def test_registry_imports_no_jax():
    code = "import sys, remix_jax.attack_registry; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_sweep_takes_the_linear_initial_const_and_its_cache_records_it(capsys):
    from eval import sweep

    def settings(*flags):
        return sweep.attack_settings(sweep.parse(["--attack", "cw", *flags]))

    # the references' 1e-3 is left out of the cache's identity, anything else is kept
    assert "initial_const" not in settings()
    assert settings("--initial-const", "0.5")["initial_const"] == 0.5
    assert settings("--initial-const", "linear")["initial_const"] == "linear"
    with pytest.raises(SystemExit):
        settings("--initial-const", "auto")
    assert "expected a number, got 'auto' (or 'linear')" in capsys.readouterr().err
