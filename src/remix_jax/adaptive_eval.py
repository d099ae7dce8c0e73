"""Adaptive evaluation of REMIX: crafting the planned runs (cached) and scoring them.

:mod:`remix_jax.adaptive_plan` says which runs; this module crafts each one (its
examples cached on disk under a name derived from its settings, so a killed
evaluation resumes and a changed setting never reuses old images) and scores it
behind every defense with evaluation keys the attacker never saw, through
:class:`remix_jax.evaluation.Defense`. The result is what ``eval.adaptive`` writes
and :mod:`remix_jax.adaptive_report` renders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax import adaptive_plan, attack_registry, evaluation, keys, progress, sharding
from remix_jax import detector as detector_lib
from remix_jax import magnet as magnet_lib
from remix_jax.adaptive_plan import (
    APE_GAN,
    HINGE,
    MAGNET_REFORMER,
    AdaptiveSetup,
    cached_settings,
    run_settings,
    settings_digest,
)
from remix_jax.attacks import adaptive
from remix_jax.defense import RemixParams, defend


@dataclasses.dataclass(frozen=True)
class Purifier:
    """A deterministic baseline: the classifier behind ``transform``, attacked with the
    transform's exact gradient and scored without keys.

    Attributes:
      transform: ``fn(x (B, H, W, C)) -> (B, H, W, C)``, jittable and differentiable.
      weights: :func:`remix_jax.progress.fingerprint` of what it depends on (part of
        every run's identity against it).
    """

    transform: Callable
    weights: str


def purifiers(magnet=None, apegan=None) -> dict[str, Purifier]:
    """The deterministic baselines of :data:`remix_jax.adaptive_plan.PURIFIERS` given
    their weights: "MagNet reformer" (``magnet``: MagNet's weights; the detectors are
    not part of it) and "APE-GAN" (``apegan``: :class:`remix_jax.apegan.APEGANParams`)."""
    out = {}
    if magnet is not None:
        # the whole of MagNet's weights: the committed runs' identities were named so
        weights = progress.fingerprint(magnet)
        out[MAGNET_REFORMER] = Purifier(lambda z: magnet_lib.reform(magnet, z), weights)
    if apegan is not None:
        from remix_jax import apegan as apegan_lib

        weights = progress.fingerprint(apegan.generator)
        out[APE_GAN] = Purifier(apegan_lib.purifier(apegan), weights)
    return out


def attacked_weights(remix: dict, purifiers: dict, defense: str) -> str | None:
    """:func:`remix_jax.progress.fingerprint` of what a run against ``defense`` attacks:
    the REMIX variant's weights, masks and layout (``remix``: by defense name), or a
    purifier's weights (``purifiers``: by name); None for "none" (the bare classifier)."""
    if defense == "none":
        return None
    if defense in adaptive_plan.PURIFIERS:
        if defense not in purifiers:
            raise ValueError(f"the {defense!r} defense needs its weights (purifiers=)")
        return purifiers[defense].weights
    params = remix[defense]
    return progress.fingerprint(params, params.n_masks, params.per_channel)


class AdaptiveEvaluation:
    """The runs of one :class:`AdaptiveSetup` on the images ``x`` (N, H, W, C), labels ``y``.

    Args:
      setup: the evaluation's settings.
      logits_fn: the protected classifier, ``fn(x (B, H, W, C)) -> (B, num_classes)``.
      remix: the shipped defense (its reformer is dropped for "mask-inpaint").
      x, y: the clean images the classifier gets right, and their labels.
      indices: their test-set indices (part of every run's identity).
      cache_dir: where crafted runs are kept.
      validation: ``() -> (M, H, W, C)`` clean validation images, loaded only if the
        detector needs calibrating.
      purifiers: the deterministic baselines by name (:func:`purifiers`), for the
        defenses of :data:`remix_jax.adaptive_plan.PURIFIERS` (``classifier(purify(x))``,
        attacked with exact gradients and scored without keys).
      models: the attacked models by (defense, BPDA components, draws), shared between
        evaluations of the same classifier and defense so that each compiles once
        (None: this evaluation's own).
      classifier_weights: the fingerprint of the classifier's weights
        (:meth:`remix_jax.eval_inputs.EvalInputs.classifier_weights`), part of every
        run's identity (None: left out, as for the committed runs' classifier).
    """

    def __init__(
        self,
        setup: AdaptiveSetup,
        logits_fn: Callable,
        remix: RemixParams,
        x: np.ndarray,
        y: np.ndarray,
        indices: list[int],
        cache_dir: str,
        validation: Callable[[], np.ndarray],
        models: dict | None = None,
        purifiers: dict[str, Purifier] | None = None,
        classifier_weights: str | None = None,
    ):
        self.setup, self.logits_fn, self.x, self.y = setup, logits_fn, x, y
        self.classifier_weights = classifier_weights
        self.indices, self.cache_dir, self.validation = indices, cache_dir, validation
        remix = remix.replace(iterations=setup.iterations)
        self.remix = {"reformer + mask-inpaint": remix, "mask-inpaint": remix.without_reformer()}
        self.spec = attack_registry.get(setup.attack)
        self.eval_keys = keys.evaluation_keys(setup.seed, setup.num_keys)
        # one logits function per (defense, bpda, samples)
        self._models: dict = {} if models is None else models
        self._thresholds: dict[str, float] = {}
        self.purifiers = dict(purifiers or {})
        self.defenses = {"none": evaluation.Defense(False, self._bare_predict)}
        for name in setup.defenses:
            if name in adaptive_plan.PURIFIERS:
                self.defenses[name] = evaluation.Defense(False, self._purified_predict(name))
                continue
            self.defenses[name] = evaluation.Defense(
                True,
                self._remix_predict(self.remix[name]),
                self._detector_reject(name) if setup.detector else None,
            )

    # --- crafting -----------------------------------------------------------------

    def attacked_weights(self, defense: str) -> str | None:
        """The fingerprint of the weights a run against ``defense`` attacks (None for
        the bare classifier: the setup names it)."""
        return attacked_weights(self.remix, self.purifiers, defense)

    def identity(self, run: dict) -> tuple[dict, str, jax.Array]:
        """The run's settings, cache path and attacker key (derived from the settings)."""
        settings = run_settings(
            self.setup,
            self.indices,
            run,
            self.attacked_weights(run["defense"]),
            self.classifier_weights,
        )
        digest = settings_digest(settings)
        key = keys.attack_key(self.setup.seed, digest)
        return settings, os.path.join(self.cache_dir, f"{self.setup.attack}-{digest}.npz"), key

    def craft(self, run: dict) -> dict[str, np.ndarray]:
        """The run's adversarial images (N, H, W, C), success (N,) and seconds, cached."""
        settings, path, key = self.identity(run)
        if os.path.isfile(path):
            with np.load(path) as f:
                if json.loads(str(f["settings"])) == settings:
                    return {k: f[k] for k in ("adversarial", "success", "seconds")}
        start = {}
        if run["threat"] == "eot-warm" and self.setup.start_from is not None:
            start = {"start": load_start(self.setup.start_from, self.setup.dataset, self.indices)}
        elif run["threat"] == "eot-warm":  # crafted (or loaded) first: not timed with this run
            transfer = {
                "group": None,
                "defense": "none",
                "threat": "oblivious",
                "budget": run["budget"],
                "samples": 1,
                "steps": run["steps"],
            }
            start = {"start": self.craft(transfer)["adversarial"]}
        began = time.time()
        result = self._attack(run, key, start)
        out = {
            "adversarial": np.asarray(result.adversarial),
            "success": np.asarray(result.success),
            "seconds": np.float64(time.time() - began),
        }
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, settings=json.dumps(settings), **out)
        os.replace(tmp, path)
        return out

    def _attack(self, run: dict, key: jax.Array, start: dict):
        """Calls the registered attack on the model the run's threat attacks, its batch
        split over the devices when there are several and it divides (as eval.sweep's:
        an attack's batch is never padded)."""
        x, y, *starts = sharding.split_if_divisible((self.x, self.y, *start.values()))
        start = dict(zip(start, starts, strict=True))
        if run["threat"] == "oblivious":
            fn, kwargs = self.logits_fn, {}
        else:
            fn = self._model(run)
            if run["threat"] == "fixed":
                fn = adaptive.fixed_masks(fn, key)
            # a deterministic defense (a purifier) is attacked as a plain model
            kwargs = self.spec.randomized(key) if self.defenses[run["defense"]].randomized else {}
        attack = self.spec.resolve()
        if not self.setup.epsilon:
            # eot-warm: the adaptive minimum-distortion attack, every search step begun
            # at the best example so far (first at the oblivious one)
            warm = {"warm_start": True, **start} if run["threat"] == "eot-warm" else {}
            return attack(
                fn, x, y, confidence=run["budget"], **self.setup.attack_settings, **kwargs,
                **warm,
            )  # fmt: skip
        if run.get("detector_weight"):
            kwargs["penalty"] = self._penalty(run["defense"], run["detector_weight"])
        kwargs["key"] = key  # an epsilon attack's random start
        return attack(
            fn,
            x,
            y,
            epsilon=run["budget"],
            steps=run["steps"],
            **self.setup.attack_settings,
            **start,
            **kwargs,
        )

    def _model(self, run: dict):
        if run["defense"] in adaptive_plan.PURIFIERS:
            return self._purified_logits(run["defense"])
        bpda = ("reformer", "mask-inpaint") if run["threat"] == "bpda" else ()
        name = (run["defense"], bpda, run["samples"])
        if name not in self._models:  # compiled once per model, not per run
            self._models[name] = adaptive.defended_logits(
                self.logits_fn,
                self.remix[run["defense"]],
                samples=run["samples"],
                bpda=bpda,
                chunk=None,
            )
        return self._models[name]

    # --- the detector -------------------------------------------------------------

    def threshold(self, defense: str) -> float:
        """The detector's threshold behind ``defense``, set on clean validation images."""
        if defense not in self._thresholds:
            self._thresholds[defense] = detector_lib.calibrate(
                self.remix[defense],
                self.logits_fn,
                keys.purpose_key(self.setup.seed, "calibration"),
                self.validation(),
                {self.setup.detector: self.setup.detector_drop_rate},
            )[self.setup.detector]
        return self._thresholds[defense]

    def _penalty(self, defense: str, weight: float):
        """``weight * max(score / threshold - HINGE, 0)``: (B,), the detector-aware term."""
        scale, params, score = (
            1.0 / self.threshold(defense),
            self.remix[defense],
            self.setup.detector,
        )

        def fn(z, key):
            scores = detector_lib.detector_scores(params, self.logits_fn, key, z)
            return weight * jnp.maximum(scale * scores[score] - HINGE, 0.0)

        return fn

    def _detector_reject(self, defense: str):
        def reject(key, x):
            scores = detector_lib.batched_scores(self.remix[defense], self.logits_fn, key, x)
            return scores[self.setup.detector] >= self.threshold(defense)

        return reject

    # --- scoring ------------------------------------------------------------------

    def _bare_predict(self, key, x):
        del key
        return evaluation.predict(self.logits_fn, x)

    def _purified_logits(self, name: str):
        """``logits_fn(purify(x))``: the classifier behind the purifier ``name``, exact
        gradients (compiled once, shared with the other evaluations' models)."""
        if name not in self.purifiers:
            raise ValueError(f"the {name!r} defense needs its weights (purifiers=)")
        if name not in self._models:
            transform, logits_fn = self.purifiers[name].transform, self.logits_fn
            self._models[name] = jax.jit(lambda z: logits_fn(transform(z)))
        return self._models[name]

    def _purified_predict(self, name: str):
        def predict(key, x):
            del key
            return evaluation.predict(self._purified_logits(name), x)

        return predict

    def _remix_predict(self, params: RemixParams):
        def predict(key, x):
            return evaluation.remix_predict(self.logits_fn, params, key, x)

        return predict

    def right(self, defense: str, x: np.ndarray) -> list[np.ndarray]:
        """Per evaluation key (one for "none"): (N,) bool, the classifier is right."""
        d = self.defenses[defense]
        return [d.predict(k, x) == self.y for k in (self.eval_keys if d.randomized else [None])]

    def detection(self, defense: str, x: np.ndarray, right: list, adversarial: bool) -> dict:
        """Rejected (%) and accuracy with the detector (see ``Defense.correct``)."""
        d = self.defenses[defense]
        caught = [d.reject(k, x) for k in self.eval_keys]
        handled = [
            evaluation.handled(o, c, adversarial) for o, c in zip(right, caught, strict=True)
        ]
        return {
            "rejected": evaluation.summarize([np.mean(c) for c in caught]),
            "accuracy": evaluation.summarize([np.mean(h) for h in handled]),
        }

    def score(self, run: dict, crafted: dict) -> tuple[dict, dict[str, list]]:
        """The run's table row and, per REMIX defense scored, per key (N,) bool right."""
        adv = crafted["adversarial"]
        delta = (adv - self.x).reshape(len(self.x), -1)
        scored = (
            ["none", *self.setup.defenses]
            if run["threat"] == "oblivious"
            else ["none", run["defense"]]
        )
        hits = {d: self.right(d, adv) for d in scored}
        row = {
            **run,
            "attacker_success": float(crafted["success"].mean() * 100),
            "mean_l2": float(np.sqrt((delta**2).sum(1)).mean()),
            "mean_linf": float(np.abs(delta).max(1).mean()),
            "l2_successful": _quartiles(np.sqrt((delta**2).sum(1))[crafted["success"]]),
            "craft_seconds": round(float(crafted["seconds"]), 1),
            "accuracy": {d: evaluation.summarize([np.mean(h) for h in hits[d]]) for d in scored},
        }
        if self.setup.detector:
            row["with_detector"] = {
                d: self.detection(d, adv, hits[d], adversarial=True) for d in scored[1:]
            }
        if run["threat"] == "fixed":  # the attacker's own draw: the check that it works
            own = defend(self.remix[run["defense"]], self.identity(run)[2], adv)
            row["accuracy_attacker_key"] = float(
                np.mean(evaluation.predict(self.logits_fn, np.asarray(own)) == self.y) * 100
            )
        return row, {d: hits[d] for d in scored[1:]}

    def clean(self) -> dict:
        """Clean accuracy of these images behind each defense."""
        return {
            d: evaluation.summarize([np.mean(h) for h in self.right(d, self.x)])
            for d in ["none", *self.setup.defenses]
        }

    def detector_summary(self) -> dict:
        """The detector's thresholds and what it does to these clean images."""
        return {
            "score": self.setup.detector,
            "drop_rate": self.setup.detector_drop_rate,
            "validation": f"last {self.setup.validation_size} training images",
            "thresholds": {d: self.threshold(d) for d in self.setup.defenses},
            "clean": {
                d: self.detection(d, self.x, self.right(d, self.x), adversarial=False)
                for d in self.setup.defenses
            },
        }


def load_start(path: str, dataset: str, indices: list[int]) -> np.ndarray:
    """The adversarial images (N, H, W, C) of a cached run (``.npz``) on the test images
    ``indices`` of ``dataset``.

    Raises:
      ValueError: the file holds examples of other images or another dataset.
    """
    settings = cached_settings(path)
    if settings.get("indices") != list(indices) or settings.get("dataset") != dataset:
        raise ValueError(
            f"{path} holds examples of other images (or another dataset) than this "
            "evaluation's: start from a run with the same --num-examples"
        )
    with np.load(path) as f:
        return f["adversarial"]


def _quartiles(values: np.ndarray) -> dict | None:
    """Count, 25th percentile, median and 75th percentile of ``values`` (e.g. the L2
    distortion of an attack's successful examples); None if there are none."""
    if not len(values):
        return None
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return {"count": int(len(values)), "q25": q1, "median": median, "q75": q3}


def evaluate(
    adaptive_run: AdaptiveEvaluation,
    runs: list[dict],
    *,
    log=print,
    scoring: progress.ProgressFile | None = None,
) -> dict:
    """Crafts (or loads) and scores every run; then the clean accuracies, the worst case
    per budget and, with a detector, its summary. ``log`` gets one line per run.

    With ``scoring`` (its identity: :func:`scoring_identity`), each scored run is kept
    on disk, so a killed evaluation resumes without scoring its finished runs again.
    """
    rows, survived = [], {}  # (budget, defense) -> per attack run, per key: (N,) bool right
    for r in runs:
        name = settings_digest(adaptive_run.identity(r)[0])
        done = scoring.get(name) if scoring is not None else None
        if done is None:
            row, hits = adaptive_run.score(r, adaptive_run.craft(r))
            if scoring is not None:
                as_bits = {
                    d: [h.astype(int).tolist() for h in per_key] for d, per_key in hits.items()
                }
                scoring.put(name, {"row": row, "hits": as_bits})
        else:
            row = done["row"]
            hits = {
                d: [np.asarray(h, bool) for h in per_key] for d, per_key in done["hits"].items()
            }
        for defense, right in hits.items():
            survived.setdefault((r["budget"], defense), []).append(right)
        rows.append(row)
        log(
            f"{r['group']} {r['defense']} {r['threat']} budget {r['budget']:g} "
            f"R={r['samples']} steps={r['steps']}: accuracy "
            + ", ".join(f"{d} {a['mean']:.1f}" for d, a in row["accuracy"].items())
        )
    return {
        "clean": adaptive_run.clean(),
        "rows": rows,
        "worst_case": worst_case(survived, adaptive_run.setup.num_keys),
        "detector": adaptive_run.detector_summary() if adaptive_run.setup.detector else None,
    }


def scoring_identity(adaptive_run: AdaptiveEvaluation, weights: str) -> dict:
    """What the scored runs depend on beyond each run's own settings: the whole setup,
    the images and the weights (:func:`remix_jax.progress.fingerprint`)."""
    return {
        "setup": dataclasses.asdict(adaptive_run.setup),
        "indices": adaptive_run.indices,
        "weights": weights,
        "row_format": 2,  # rows with l2_successful: never resume from rows without it
        "keys": "per image",  # remix_jax.keys: never resume rows scored under other draws
    }


def worst_case(survived: dict[tuple[float, str], list[list[np.ndarray]]], num_keys: int) -> list:
    """Accuracy when an image survives a budget under a key only if it survives every
    attack run there.

    Args:
      survived: (budget, defense) -> per run, per key, (N,) bool right.
      num_keys: the evaluation keys.
    """
    return [
        {
            "budget": budget,
            "defense": defense,
            "attacks": len(runs),
            "accuracy": evaluation.summarize(
                [np.mean(np.logical_and.reduce([run[k] for run in runs])) for k in range(num_keys)]
            ),
        }
        for (budget, defense), runs in sorted(survived.items())
    ]
