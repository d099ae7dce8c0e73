"""The robustness protocol run: every attack crafted in cached batches, then judged.

:mod:`remix_jax.robustness_plan` says which attacks; each is crafted batch by batch
through :class:`~remix_jax.adaptive_eval.AdaptiveEvaluation` (one cache file per
attack and batch, so a killed run loses at most one batch of one attack), then scored
on all the images at once with the evaluation keys (the judgement does not depend on
the crafting's batch size). An image is robust at a budget under a key only if it
survives every attack of the worst case there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from remix_jax import evaluation, progress
from remix_jax.adaptive_eval import AdaptiveEvaluation
from remix_jax.adaptive_plan import settings_digest
from remix_jax.defense import RemixParams
from remix_jax.robustness_plan import WORST_CASE_GROUPS, Part, RobustnessSetup

# the sanity checks' tolerance: an accuracy may exceed the stronger attack's by the
# larger of this many points and twice the spread over keys before a check fails
TOLERANCE = 1.0
NEAR_ZERO = 2.0  # "~0%": a large budget, and the bare classifier at the largest budget


class RobustnessEvaluation:
    """The protocol's attacks on the images ``x`` (N, H, W, C), labels ``y`` (N,).

    Args:
      setup: the protocol's settings.
      logits_fn: the protected classifier, ``fn(x (B, H, W, C)) -> (B, K)``.
      remix: the shipped defense (its reformer dropped for "mask-inpaint").
      x, y: clean images the classifier gets right, their labels.
      indices: their test-set indices (part of every cache's identity).
      cache_dir: where crafted batches are kept.
      batch_size: images crafted per cache file.
      purifiers: the deterministic baselines' transforms and weights, by name
        (:func:`remix_jax.adaptive_eval.purifiers`), to judge one of them.
      classifier_weights: the classifier's fingerprint, as :class:`AdaptiveEvaluation`
        takes it.
    """

    def __init__(
        self,
        setup: RobustnessSetup,
        logits_fn: Callable,
        remix: RemixParams,
        x: np.ndarray,
        y: np.ndarray,
        indices: Sequence[int],
        cache_dir: str,
        batch_size: int,
        purifiers: dict | None = None,
        classifier_weights: str | None = None,
    ):
        self.setup, self.logits_fn, self.remix = setup, logits_fn, remix
        self.purifiers = purifiers
        self.classifier_weights = classifier_weights
        self.x, self.y, self.indices = x, y, list(indices)
        self.cache_dir, self.batch_size = cache_dir, batch_size
        self._models: dict = {}  # compiled once for every part and batch

    def _evaluation(self, part: Part, rows: slice = slice(None)) -> AdaptiveEvaluation:
        return AdaptiveEvaluation(
            part.setup,
            self.logits_fn,
            self.remix,
            self.x[rows],
            self.y[rows],
            self.indices[rows],
            self.cache_dir,
            validation=lambda: None,  # no detector: never called
            models=self._models,
            purifiers=self.purifiers,
            classifier_weights=self.classifier_weights,
        )

    def craft(self, part: Part) -> dict[str, np.ndarray]:
        """The part's adversarial images (N, H, W, C), attacker success (N,) and seconds."""
        batches = [
            self._evaluation(part, slice(s, s + self.batch_size)).craft(part.run)
            for s in range(0, len(self.x), self.batch_size)
        ]
        return {
            "adversarial": np.concatenate([b["adversarial"] for b in batches]),
            "success": np.concatenate([b["success"] for b in batches]),
            "seconds": np.float64(sum(float(b["seconds"]) for b in batches)),
        }

    def name(self, part: Part) -> str:
        """The part's identity digest (its settings on all the images)."""
        return settings_digest(self._evaluation(part).identity(part.run)[0])

    def score(self, part: Part) -> dict:
        """The part's row: the defense's accuracy per key, the bare classifier's, the
        attacker's success, mean distortions and crafting time; with ``hits``, per
        judged defense, per key (N,) bool right."""
        crafted = self.craft(part)
        evaluation_ = self._evaluation(part)
        row, hits = evaluation_.score(part.run, crafted)
        hits = {d: h for d, h in hits.items() if d == self.setup.defense}
        hits["none"] = evaluation_.right("none", crafted["adversarial"])
        return {
            "label": part.label,
            "group": part.group,
            "budget": part.budget,
            "attack": part.setup.attack,
            "threat": part.run["threat"],
            "settings": {**part.setup.attack_settings, "steps": part.run["steps"]},
            "eot_draws": part.setup.attack_settings.get("draws", part.run["samples"]),
            **{k: row[k] for k in ("attacker_success", "mean_l2", "mean_linf", "craft_seconds")},
            "accuracy": {d: row["accuracy"][d] for d in hits if d in row["accuracy"]},
            "hits": hits,
        }

    def clean(self, part: Part) -> dict:
        """Clean accuracy behind the judged defense and bare, and the defense's output
        variation between keys (AutoAttack's ``check_randomized``): the share of images
        whose predicted class is not the same under every key. ``part``: any of the
        protocol's (its defenses and keys are the protocol's)."""
        evaluation_ = self._evaluation(part)
        out = {"none": evaluation.summarize([np.mean(evaluation_.right("none", self.x)[0])])}
        if self.setup.defense != "none" and not self.setup.randomized:
            right = evaluation_.right(self.setup.defense, self.x)[0]
            out[self.setup.defense] = evaluation.summarize([np.mean(right)])
        if self.setup.randomized:
            defense = evaluation_.defenses[self.setup.defense]
            predictions = np.stack([defense.predict(k, self.x) for k in evaluation_.eval_keys])
            out[self.setup.defense] = evaluation.summarize(
                [np.mean(p == self.y) for p in predictions]
            )
            out["varies_between_keys"] = float(np.mean(np.any(predictions != predictions[0], 0)))
        return out


def evaluate(
    robustness: RobustnessEvaluation,
    parts: list[Part],
    *,
    log=print,
    scoring: progress.ProgressFile | None = None,
) -> dict:
    """Crafts (or loads) and scores every part; then the worst case per budget and the
    sanity checks. With ``scoring``, each scored part is kept on disk (a killed run
    resumes without scoring it again)."""
    rows, first = [], None
    for part in parts:  # may be a progress bar over the parts
        first = first or part
        name = robustness.name(part)
        row = scoring.get(name) if scoring is not None else None
        if row is None:
            row = robustness.score(part)
            row["hits"] = {
                d: [h.astype(int).tolist() for h in per] for d, per in row["hits"].items()
            }
            if scoring is not None:
                scoring.put(name, row)
        rows.append(row)
        log(
            f"{part.group} {part.label} at {part.budget:g}: accuracy "
            + ", ".join(f"{d} {a['mean']:.1f}" for d, a in row["accuracy"].items())
        )
    setup = robustness.setup
    result = {
        "clean": robustness.clean(first),
        "rows": [{k: v for k, v in r.items() if k != "hits"} for r in rows],
        "worst_case": worst_case(rows, setup),
    }
    result["sanity"] = sanity_checks(result, setup)
    return result


def worst_case(rows: list[dict], setup: RobustnessSetup) -> list[dict]:
    """Per budget and judged model, accuracy when an image counts only if it survives
    every attack of the worst case under a key (the bare classifier: one key)."""
    out = []
    judged = setup.judged
    for budget in setup.budgets:
        for model in judged:
            # the bare classifier is judged by the attacks crafted on it alone
            here = [
                r
                for r in rows
                if r["budget"] == budget
                and r["group"] in WORST_CASE_GROUPS
                and (model != "none" or r["threat"] == "oblivious")
            ]
            runs = [[np.asarray(h, bool) for h in r["hits"][model]] for r in here]
            if not runs:
                continue
            keys = min(len(run) for run in runs)
            accuracy = [
                np.mean(np.logical_and.reduce([run[k] for run in runs])) for k in range(keys)
            ]
            out.append(
                {
                    "budget": budget,
                    "model": model,
                    "attacks": [r["label"] for r in here],
                    "accuracy": evaluation.summarize(accuracy),
                }
            )
    return out


def _check(name: str, passed: bool, detail: str) -> dict:
    return {"check": name, "passed": bool(passed), "detail": detail}


def sanity_checks(result: dict, setup: RobustnessSetup) -> list[dict]:
    """The checks of Carlini et al. (2019) on a scored protocol, each with its numbers:
    fewer EOT draws or steps never leave a lower accuracy (within the tolerance), a
    large budget leaves ~0%, and the bare classifier is at ~0% at the largest budget."""
    rows, d = result["rows"], setup.defense
    checks = []
    worst_bare = [w for w in result["worst_case"] if w["model"] == "none"]
    top = max(worst_bare, key=lambda w: w["budget"])
    checks.append(
        _check(
            "bare classifier ~0% at the largest budget",
            top["accuracy"]["mean"] <= NEAR_ZERO,
            f"{top['accuracy']['mean']:.1f}% at {top['budget']:g} (APGD-CE, APGD-T)",
        )
    )
    if setup.defense == "none":
        return checks
    protocol_ce = [
        r
        for r in rows
        if r["group"] in ("rand", "standard")
        and r["label"].startswith("APGD-CE")
        and r["budget"] == setup.checked_budget()
    ]
    protocol_ce = protocol_ce[0] if protocol_ce else None
    for r in rows:
        if r["group"] == "sanity" and protocol_ce is not None:
            weak, strong = r["accuracy"][d], protocol_ce["accuracy"][d]
            slack = max(TOLERANCE, 2 * max(weak["std"], strong["std"]))
            checks.append(
                _check(
                    f"{protocol_ce['label']} no weaker than {r['label']}",
                    strong["mean"] <= weak["mean"] + slack,
                    f"{strong['mean']:.1f}% vs {weak['mean']:.1f}% at {r['budget']:g} "
                    f"(tolerance {slack:.1f})",
                )
            )
        if r["group"] == "large budget":
            checks.append(
                _check(
                    "a large budget leaves ~0%",
                    r["accuracy"][d]["mean"] <= NEAR_ZERO,
                    f"{r['accuracy'][d]['mean']:.1f}% at {r['budget']:g} ({r['label']})",
                )
            )
    return checks


def scoring_identity(robustness: RobustnessEvaluation, weights: str) -> dict:
    """What the scored parts depend on beyond their own settings."""
    return {
        "setup": dataclasses.asdict(robustness.setup),
        "keys": "per image",  # remix_jax.keys: never resume parts scored under other draws
        "indices": robustness.indices,
        "batch_size": robustness.batch_size,
        "weights": weights,
    }
