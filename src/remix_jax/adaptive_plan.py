"""What an adaptive evaluation of REMIX runs: its settings, its runs and their identities.

JAX-free (the command's ``--help`` stays instant): :mod:`remix_jax.adaptive_eval`
crafts and scores the runs planned here, :mod:`remix_jax.adaptive_report` renders them.

A run is a dict: group (the table section), defense attacked ("none" for the
oblivious transfer attack), threat, budget (epsilon or kappa), samples (EOT draws per
step), steps (PGD; None for the binary-search attacks) and, for detector-aware runs,
the detector score, its weight and the penalty formula. Its settings (the run plus
what else the crafted images depend on) name its cache file and derive its attacker
key, so a changed setting never reuses old images.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping

from remix_jax import attack_registry

DEFENSES = ("mask-inpaint", "reformer + mask-inpaint")
# remix_jax.detector.SCORES, named here without importing JAX (eval.adaptive's choices)
DETECTOR_SCORES = ("inpaint-L2", "copies-JSD", "copies-disagree", "output-JSD")
# the deterministic baselines an evaluation may judge beside REMIX, each a purifier in
# front of the classifier (given its weights: remix_jax.adaptive_eval.purifiers)
MAGNET_REFORMER = "MagNet reformer"
APE_GAN = "APE-GAN"
PURIFIERS = (MAGNET_REFORMER, APE_GAN)
THREATS = ("oblivious", "eot", "bpda", "fixed", "eot-warm")
# detector-aware attacks pay weight * max(score / threshold - HINGE, 0); PENALTY names
# the formula in each run's cache settings, so a new formula never reuses old images
HINGE = 0.5
PENALTY = "hinge(score/threshold - 0.5)"
# the detector's calibration of every detector-aware run cached before it joined the
# runs' identity (see run_settings)
LEGACY_THRESHOLD_FROM = {"detector_drop_rate": 0.001, "validation_size": 5000}
# the weights (remix_jax.progress.fingerprint) of the defenses every committed run was
# crafted against, before the attacked weights joined a run's identity: runs against
# them keep their cache names; a run against any other weights (a retrained or newly
# shipped inpainter, another --checkpoint-root) gets a name of its own
LEGACY_DEFENSE_WEIGHTS = {
    ("mnist", "reformer + mask-inpaint"): "a7d88d338be7f0fd",
    ("mnist", "mask-inpaint"): "cac86cd7f15f6dc0",
    ("mnist", "MagNet reformer"): "bd05292faaa08c8a",
    ("cifar10", "reformer + mask-inpaint"): "608e46b2454c2a21",
    ("cifar10", "mask-inpaint"): "a8991b8da6b584e7",
    ("cifar10", "MagNet reformer"): "7ba6d571dfcc6443",
}
# the same for the attacked classifier (every run, the bare classifier's too)
LEGACY_CLASSIFIER_WEIGHTS = {"mnist": "21c261f5d05ccc62", "cifar10": "1c5daf5054423ef2"}
# how a detector-aware run's threshold draws its masks (part of the run's identity)
CALIBRATION_KEY = "keys.purpose_key(seed, 'calibration')"
# the large-budget sanity check of an epsilon attack, per norm
LARGE_BUDGET = {"linf": 0.5, "l2": 8.0}


@dataclasses.dataclass(frozen=True)
class AdaptiveSetup:
    """One adaptive evaluation's settings (``eval.adaptive``'s flags of the same names).

    Attributes:
      dataset, attack: registered names; ``epsilon`` says whether the attack is bounded
        to a norm ball (PGD) rather than swept over the confidence kappa (CW, EAD).
      budgets: epsilons or kappas of the curve.
      attack_settings: the attack's own settings that the crafted images depend on
        (PGD: norm, loss; CW/EAD: the search budget, initial const, EAD's beta).
      defenses: of :data:`DEFENSES`; threats: of :data:`THREATS`.
      samples: EOT mask draws per step (R); steps: PGD's steps.
      iterations: REMIX's mask-inpaint rounds K; seed: the run's seed (the attacker, the
        evaluation keys and the calibration draw from it by purpose: remix_jax.keys).
      num_keys: evaluation keys per defense.
      sanity, sanity_budget, large_budget: the checks of Carlini et al. (2019).
      detector, detector_weights, detector_drop_rate, validation_size: the detector
        scored beside REMIX and the detector-aware attacks' weights.
      classifier: the attacked classifier when it is not the dataset's shipped one (a
        checkpoint folder or "package.module:function"); part of every run's identity.
      start_from: a cached run (its ``.npz``) on the same images whose adversarial
        examples begin the eot-warm search instead of the oblivious ones (e.g. PGD's, for
        a minimum-distortion CW); its settings' digest joins the eot-warm runs' identity.
    """

    dataset: str
    attack: str
    epsilon: bool
    budgets: tuple[float, ...]
    attack_settings: Mapping[str, object]
    defenses: tuple[str, ...] = ("reformer + mask-inpaint",)
    threats: tuple[str, ...] = ("oblivious", "eot")
    norm: str = "linf"
    samples: int = 4
    steps: int = 100
    iterations: int = 1
    seed: int = 0
    num_keys: int = 10
    sanity: bool = False
    sanity_budget: float | None = None
    large_budget: float | None = None
    detector: str | None = None
    detector_weights: tuple[float, ...] = (1.0, 10.0, 100.0)
    detector_drop_rate: float = 0.001
    validation_size: int = 5000
    classifier: str | None = None
    start_from: str | None = None

    @classmethod
    def from_args(cls, args) -> AdaptiveSetup:
        """The setup from parsed flags named as the fields (lists become tuples); the
        attack's settings from its flags (PGD: norm, loss; CW/EAD: binary_search_steps,
        max_iterations, initial_const and the attack's own hyperparameters)."""
        attack = attack_registry.get(args.attack)
        epsilon = attack.budget == "epsilon"
        if epsilon:
            settings = {"norm": args.norm, "loss": args.loss}
        else:
            names = ("binary_search_steps", "max_iterations", "initial_const")
            settings = {**{n: getattr(args, n) for n in names}, **attack.own_settings(args)}
        names = {f.name for f in dataclasses.fields(cls)} - {"epsilon", "attack_settings"}
        values = {n: getattr(args, n) for n in names if hasattr(args, n)}
        values = {n: tuple(v) if isinstance(v, list) else v for n, v in values.items()}
        return cls(epsilon=epsilon, attack_settings=settings, **values)


def default_cache_dir(dataset: str) -> str:
    """Where eval.adaptive and eval.robustness keep crafted runs (they share them)."""
    return os.path.join("results", dataset, "cache", "adaptive")


def budget_problem(epsilon: bool, norm: str, budgets: list[float]) -> str:
    """What is wrong with these budgets for an attack (``epsilon``: a ball attack such
    as PGD; otherwise CW/EAD, whose budgets are confidences), or ""."""
    if epsilon and min(budgets) == 0:
        return "--budgets must be > 0 for an epsilon attack"
    if epsilon and norm == "linf" and max(budgets) >= 1:
        return "an L-inf budget >= 1 allows any image in [0, 1]: --budgets must be < 1"
    return ""


def _run(
    setup: AdaptiveSetup, group, defense, threat, budget, samples=None, steps=None, weight=None
):
    samples = 1 if threat in ("oblivious", "fixed") else samples or setup.samples
    extra = {}
    if weight is not None:
        extra = {"detector": setup.detector, "detector_weight": weight, "detector_penalty": PENALTY}
    return {
        "group": group,
        "defense": defense if threat != "oblivious" else "none",
        "threat": threat,
        "budget": budget,
        "samples": samples,
        "steps": (steps or setup.steps) if setup.epsilon else None,
        **extra,
    }


def plan(setup: AdaptiveSetup) -> list[dict]:
    """The runs, in evaluation order, each once (a sanity run equal to a curve run is
    reported under the curve)."""
    runs = [
        _run(setup, "curve", defense, threat, budget)
        for budget in setup.budgets
        for threat in setup.threats
        for defense in ([None] if threat == "oblivious" else setup.defenses)
    ]
    if setup.detector and setup.epsilon:
        runs += [
            _run(setup, "detector-aware", defense, "eot", budget, weight=weight)
            for budget in setup.budgets
            for weight in setup.detector_weights
            for defense in setup.defenses
        ]
    if setup.sanity:
        runs += _sanity_runs(setup)
    unique = []
    for r in runs:
        if all({**r, "group": None} != {**u, "group": None} for u in unique):
            unique.append(r)
    return unique


def _sanity_runs(setup: AdaptiveSetup) -> list[dict]:
    """More EOT draws and more steps must not weaken the attack; the attacker's own mask
    draw must be beaten; a large budget must bring accuracy to ~0."""
    budget = setup.sanity_budget or setup.budgets[min(1, len(setup.budgets) - 1)]
    main = setup.defenses[-1]
    runs = [
        _run(setup, "samples", main, "eot", budget, samples=r)
        for r in sorted({1, setup.samples, 2 * setup.samples})
    ]
    if setup.epsilon:
        steps = {setup.steps // 4, setup.steps // 2, setup.steps, 2 * setup.steps} - {0}
        runs += [_run(setup, "steps", main, "eot", budget, steps=s) for s in sorted(steps)]
    runs.append(_run(setup, "fixed masks", main, "fixed", budget))
    large = setup.large_budget or (LARGE_BUDGET[setup.norm] if setup.epsilon else None)
    if large:
        runs.append(_run(setup, "large budget", main, "eot", large))
    return runs


def classifier_weights_entry(dataset: str, weights: str | None) -> dict:
    """What a cache identity records of the classifier's weights (their fingerprint):
    ``{"classifier_weights": weights}``, or ``{}`` for None and for the weights the
    committed caches were crafted on (:data:`LEGACY_CLASSIFIER_WEIGHTS`: their
    identities predate the field). Adaptive runs and eval.sweep's caches share it."""
    if weights is None or weights == LEGACY_CLASSIFIER_WEIGHTS.get(dataset):
        return {}
    return {"classifier_weights": weights}


def run_settings(
    setup: AdaptiveSetup,
    indices: list[int],
    run: dict,
    weights: str | None = None,
    classifier_weights: str | None = None,
) -> dict:
    """What a crafted run depends on: its cache identity (and, hashed, its attacker key).

    A run depends on the attacked classifier's weights (``classifier_weights``, their
    fingerprint) and a run against a defense on that defense's ``weights``; each joins
    the identity unless it is what the committed runs were crafted against
    (:data:`LEGACY_CLASSIFIER_WEIGHTS`, :data:`LEGACY_DEFENSE_WEIGHTS`). A detector-aware run also
    depends on the detector's threshold, i.e. on the drop rate, the calibration set and
    the calibration draw (:data:`CALIBRATION_KEY`). The drop rate and the set join the
    identity only when they differ from the values every run used before they were part
    of it (0.001, 5000 images).
    """
    settings = {
        "dataset": setup.dataset,
        "attack": setup.attack,
        "indices": indices,
        "iterations": setup.iterations,
        "seed": setup.seed,
        **setup.attack_settings,
        **{k: v for k, v in run.items() if k != "group"},
    }
    settings.update(classifier_weights_entry(setup.dataset, classifier_weights))
    legacy = LEGACY_DEFENSE_WEIGHTS.get((setup.dataset, run.get("defense")))
    if run.get("defense", "none") != "none" and weights is not None and weights != legacy:
        settings["defense_weights"] = weights
    threshold_from = {
        "detector_drop_rate": setup.detector_drop_rate,
        "validation_size": setup.validation_size,
    }
    if "detector_weight" in run:
        if threshold_from != LEGACY_THRESHOLD_FROM:
            settings.update(threshold_from)
        # the threshold is set on masks drawn from this key (remix_jax.keys): a run
        # crafted against a threshold of other draws is never reused (the 0.1% quantile
        # of 5000 scores moved from 0.062 to 0.040 between two draws on MNIST)
        settings["calibration_key"] = CALIBRATION_KEY
    if setup.classifier is not None:  # only then: the shipped classifier's caches keep their names
        settings["classifier"] = setup.classifier
    if setup.start_from is not None and run.get("threat") == "eot-warm":
        settings["start_from"] = settings_digest(cached_settings(setup.start_from))
    return settings


@functools.lru_cache(maxsize=16)
def _cached_settings_json(path: str) -> str:
    import numpy as np

    with np.load(path) as f:
        return str(f["settings"])


def cached_settings(path: str) -> dict:
    """The settings a cached run (``.npz`` written by ``AdaptiveEvaluation.craft``) was
    crafted with: its dataset, attack, images (``indices``), budget, threat..."""
    return json.loads(_cached_settings_json(path))


def settings_digest(settings: dict) -> str:
    """16 hex digits naming a run's cache file; its first 7 fold into the attacker key."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
