"""The robustness protocol: its plan, its worst case and sanity checks, a tiny run, the CLI."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_adaptive import linear_classifier
from test_defense import MNIST, images, tiny_params

from eval import robustness as cli
from remix_jax import progress, robustness_eval, robustness_plan, robustness_report
from remix_jax.adaptive_plan import run_settings, settings_digest
from remix_jax.robustness_plan import RobustnessSetup


def setup(**overrides):
    return RobustnessSetup(
        **{"dataset": "mnist", "norm": "linf", "budgets": (0.1, 0.3), **overrides}
    )


def test_the_plan_is_rand_apgd_plus_portfolio_plus_transfer_at_each_budget():
    parts = robustness_plan.plan(setup(sanity=False), num_classes=10)
    at = [(p.label, p.group, p.run["threat"]) for p in parts if p.budget == 0.1]
    assert at == [
        ("APGD-CE", "bare", "oblivious"),
        ("APGD-T", "bare", "oblivious"),
        ("APGD-CE, EOT-20", "rand", "eot"),
        ("APGD-DLR, EOT-20", "rand", "eot"),
        ("PGD (transfer)", "portfolio", "oblivious"),
        ("PGD eot, EOT-4", "portfolio", "eot"),
        ("PGD eot-warm, EOT-4", "portfolio", "eot-warm"),
        ("PGD bpda, EOT-4", "portfolio", "bpda"),
    ]
    rand = [p for p in parts if p.group == "rand"]
    # APGD's own EOT (loss and gradient averaged over 20 draws) on one-draw models
    assert {p.setup.attack_settings["draws"] for p in rand} == {20}
    assert {p.run["samples"] for p in rand} == {1}
    assert "draws" not in parts[0].setup.attack_settings  # a deterministic model takes none
    names = {settings_digest(run_settings(p.setup, [0, 1], p.run)) for p in parts}
    assert len(names) == len(parts)  # every attack its own cache and attacker key


def test_the_bare_classifier_alone_and_few_classes_drop_what_does_not_apply():
    bare = robustness_plan.plan(setup(defense="none"), num_classes=10)
    assert {p.group for p in bare} == {"bare"}
    three = robustness_plan.plan(setup(sanity=False), num_classes=3)
    assert "APGD-T" not in {p.label for p in three}  # APGD-T reads a fourth logit
    assert "APGD-DLR, EOT-20" in {p.label for p in three}
    two = robustness_plan.plan(setup(sanity=False), num_classes=2)
    assert not any("DLR" in p.label for p in two)


def test_the_sanity_parts_weaken_draws_and_steps_at_the_middle_budget_and_try_a_large_one():
    s = setup(budgets=(0.1, 0.2, 0.3), draws=8, steps=40)
    sanity = [p for p in robustness_plan.plan(s, 10) if p.group in ("sanity", "large budget")]
    assert [
        (p.budget, p.setup.attack_settings.get("draws", 1), p.run["steps"]) for p in sanity
    ] == [
        (0.2, 2, 40),
        (0.2, 8, 10),
        (0.5, 8, 40),
    ]


def row(label, group, budget, threat, hits, none=None):
    """A scored part as evaluate keeps it: per judged model, per key (N,) bits."""
    d = "reformer + mask-inpaint"
    per_key = {d: hits} if hits is not None else {}
    if none is not None:
        per_key["none"] = [none]
    accuracy = {
        m: {"mean": 100 * np.mean(h), "std": 0.0, "runs": len(h)} for m, h in per_key.items()
    }
    return dict(
        label=label, group=group, budget=budget, threat=threat, hits=per_key, accuracy=accuracy
    )


def test_an_image_is_robust_under_a_key_only_if_it_survives_every_attack():
    rows = [
        row("APGD-CE", "bare", 0.1, "oblivious", [[1, 1, 0], [1, 1, 1]], none=[1, 0, 1]),
        row("APGD-CE, EOT-20", "rand", 0.1, "eot", [[1, 0, 1], [1, 1, 1]], none=[0, 0, 0]),
        row("APGD-CE, EOT-5", "sanity", 0.1, "eot", [[0, 0, 0], [0, 0, 0]]),
    ]
    worst = robustness_eval.worst_case(rows, setup(budgets=(0.1,)))
    by_model = {w["model"]: w for w in worst}
    # key 0 keeps image 0 only, key 1 all three; sanity parts are not attacks to survive
    assert by_model["reformer + mask-inpaint"]["accuracy"]["mean"] == pytest.approx(
        100 * (1 / 3 + 1) / 2
    )
    # the bare classifier is judged by what was crafted on it (not by the EOT examples)
    assert by_model["none"]["accuracy"]["mean"] == pytest.approx(100 * 2 / 3)
    assert by_model["none"]["attacks"] == ["APGD-CE"]


def test_the_sanity_checks_fail_when_fewer_draws_attack_better_or_a_large_budget_leaves_much():
    s = setup(budgets=(0.1, 0.3), draws=8)
    rows = [
        row("APGD-CE", "bare", 0.3, "oblivious", [[1, 1, 1, 1]], none=[0, 0, 0, 0]),
        row("APGD-CE, EOT-8", "rand", 0.3, "eot", [[1, 1, 1, 0]]),
        row("APGD-CE, EOT-2, 100 steps", "sanity", 0.3, "eot", [[0, 0, 0, 0]]),
        row("APGD-CE, EOT-8, 25 steps", "sanity", 0.3, "eot", [[1, 1, 1, 1]]),
        row("APGD-CE, EOT-8, 100 steps", "large budget", 0.5, "eot", [[0, 0, 0, 1]]),
    ]
    result = {"rows": rows, "worst_case": robustness_eval.worst_case(rows, s)}
    verdicts = [c["passed"] for c in robustness_eval.sanity_checks(result, s)]
    assert verdicts == [True, False, True, False]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The protocol on 4 images, a linear classifier behind tiny random networks."""
    logits_fn = linear_classifier()
    x = np.asarray(images(*MNIST, batch=4))
    y = np.asarray(jnp.argmax(logits_fn(x), -1))
    s = setup(budgets=(0.5,), draws=2, steps=2, portfolio=("eot-warm",), portfolio_samples=2)
    s = dataclasses.replace(s, sanity=False)  # their rows' checks: test_the_sanity_checks_...
    s = dataclasses.replace(s, num_keys=2)
    cache = tmp_path_factory.mktemp("cache")
    run = robustness_eval.RobustnessEvaluation(
        s, logits_fn, tiny_params(*MNIST), x, y, [0, 1, 2, 3], str(cache), batch_size=2
    )
    parts = robustness_plan.plan(s, num_classes=10)
    with jax.threefry_partitionable(False):  # as conftest.fast_compiles: a module fixture
        return run, parts, robustness_eval.evaluate(run, parts, log=lambda _: None)


def test_a_tiny_protocol_runs_stays_in_its_balls_and_renders(tiny_run, tmp_path):
    run, parts, result = tiny_run
    assert len(result["rows"]) == len(parts)
    for r in result["rows"]:
        assert r["mean_linf"] <= r["budget"] + 1e-6
        assert all(0 <= a["mean"] <= 100 for a in r["accuracy"].values())
    worst = {(w["budget"], w["model"]): w["accuracy"]["mean"] for w in result["worst_case"]}
    assert worst[(0.5, "none")] == 0.0  # a linear model has no defense at 0.5
    clean = result["clean"]
    assert clean["none"]["mean"] == 100.0 and 0 <= clean["varies_between_keys"] <= 1
    out = str(tmp_path / "r")
    identity = dict(dataset="mnist", defense=run.setup.defense, num_keys=2, num_examples=3)
    rendered = {**result, **identity, "settings": {"norm": "linf"}, "command": "c", "machine": "m"}
    robustness_report.write_outputs(out, rendered)
    assert "## Sanity checks" in pathlib.Path(out + ".md").read_text()
    written = json.loads(pathlib.Path(out + ".json").read_text())
    assert written["worst_case"] == json.loads(json.dumps(result["worst_case"]))


def test_crafting_is_cached_per_batch_and_scoring_resumes(tiny_run, tmp_path, monkeypatch):
    run, parts, result = tiny_run
    files = list(pathlib.Path(run.cache_dir).glob("*.npz"))
    # 4 images in batches of 2: two files per attack (eot-warm starts from PGD's
    # transfer examples, crafted once)
    assert len(files) == 2 * len({run.name(p) for p in parts}) == 2 * len(parts)
    scoring = progress.ProgressFile(str(tmp_path / "p.json"), {"id": 1})
    again = robustness_eval.evaluate(run, parts[:2], log=lambda _: None, scoring=scoring)
    monkeypatch.setattr(run, "score", lambda part: pytest.fail("scored again"))
    resumed = progress.ProgressFile(str(tmp_path / "p.json"), {"id": 1})
    assert robustness_eval.evaluate(run, parts[:2], log=lambda _: None, scoring=resumed) == again
    assert again["rows"] == result["rows"][:2]  # loaded from the caches: the same examples


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--norm", "linf", "--budgets", "1.0"], "budgets must be < 1"),
        (["--draws", "0"], "--draws"),
        (["--defense", "magnet"], "--defense"),
        (["--portfolio", "fixed"], "--portfolio"),
        (["--budgets", "0.1", "0.3", "--sanity-budget", "0.2"], "--sanity-budget"),
    ],
)
def test_bad_flags_exit_with_one_line(bad, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse(bad)
    assert e.value.code != 0
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_flags_become_the_protocol_settings():
    s = cli.setup_from(cli.parse(["--defense", "mask-inpaint", "--norm", "l2", "--no-sanity"]))
    assert (s.defense, s.norm, s.sanity, s.draws) == ("mask-inpaint", "l2", False, 20)
    assert s.budgets == (1.0, 2.0, 3.0)  # MNIST's L2 budgets from the registry
    assert s.portfolio == ("eot", "eot-warm", "bpda")


@pytest.mark.slow
def test_a_purifier_without_its_checkpoint_exits_with_an_error(tmp_path, data_dir, monkeypatch):
    """--defense apegan with a --checkpoint-root that has REMIX but no APE-GAN: an
    error naming the missing checkpoint and the command that trains it, before any
    attack."""
    import os

    from remix_jax import runtime

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    monkeypatch.setattr(runtime, "use_full_precision", lambda: None)  # process-wide
    shipped = pathlib.Path(__file__).parent.parent / "checkpoints" / "mnist"
    (tmp_path / "mnist").mkdir()
    for component in ("classifier", "reformer", "inpainter"):
        os.symlink(shipped / component, tmp_path / "mnist" / component)
    with pytest.raises(SystemExit) as e:
        cli.main(["--defense", "apegan", "--num-examples", "2", "--data-dir", data_dir,
                  "--checkpoint-root", str(tmp_path), "--out", str(tmp_path / "out"),
                  "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    line = str(e.value.code)
    assert line.startswith("error: no checkpoint for mnist/apegan") and "train.apegan" in line
    assert not (tmp_path / "cache").exists()


ROBUSTNESS_RESULTS = sorted(
    pathlib.Path(__file__).parent.parent.glob("results/*/robustness-*.json")
)


def test_a_robustness_result_is_committed():
    assert ROBUSTNESS_RESULTS, "no results/<dataset>/robustness-*.json committed"


@pytest.mark.parametrize("path", ROBUSTNESS_RESULTS, ids=[p.name for p in ROBUSTNESS_RESULTS])
def test_committed_robustness_results_are_consistent_and_render_again(path):
    """Each worst case is no higher than any attack of it, the sanity verdicts follow
    from the rows, and the markdown renders again byte for byte from the JSON."""
    result = json.loads(path.read_text())
    names = {"dataset": result["dataset"], "defense": result["defense"]}
    setup = RobustnessSetup(**result["settings"], **names)
    assert result["num_keys"] >= 10  # the protocol judges over >= 10 fresh keys
    for worst in result["worst_case"]:
        here = [r for r in result["rows"] if r["budget"] == worst["budget"]]
        parts = [
            r["accuracy"][worst["model"]]["mean"]
            for r in here
            if r["label"] in worst["attacks"] and worst["model"] in r["accuracy"]
        ]
        assert parts and worst["accuracy"]["mean"] <= min(parts) + 1e-6
    again = robustness_eval.sanity_checks(result, setup)
    assert again == result["sanity"]
    assert robustness_report.markdown(result) == path.with_suffix(".md").read_text()


def tiny_purifiers():
    """A MagNet reformer and an APE-GAN purifier of random weights, tiny."""
    from test_magnet import tiny_magnet

    from remix_jax import adaptive_eval, apegan

    config = apegan.APEGANConfig(channels=1, width=4)
    shape = (*MNIST[0], MNIST[1])
    generator = apegan.init_params(jax.random.key(3), config, shape)["generator"]
    return adaptive_eval.purifiers(
        magnet=tiny_magnet(), apegan=apegan.APEGANParams(config, generator)
    )


@pytest.mark.parametrize("defense", ["MagNet reformer", "APE-GAN"])
def test_a_purifier_is_judged_by_standard_apgd_through_it(tmp_path, defense):
    s = setup(defense=defense, budgets=(0.1,), steps=2, num_keys=2)
    assert not s.randomized and s.judged == ["none", defense]
    parts = robustness_plan.plan(s, num_classes=10)
    assert [(p.label, p.group, p.run["threat"]) for p in parts] == [
        ("APGD-CE", "bare", "oblivious"),
        ("APGD-T", "bare", "oblivious"),
        ("APGD-CE", "standard", "eot"),  # the defense attacked with exact gradients
        ("APGD-T", "standard", "eot"),
        ("APGD-CE, 1 steps", "sanity", "eot"),  # no draws to weaken: steps only
        ("APGD-CE, 2 steps", "large budget", "eot"),
    ]
    assert all("draws" not in p.setup.attack_settings for p in parts)
    logits_fn = linear_classifier()
    x = np.asarray(images(*MNIST, batch=4))
    y = np.asarray(jnp.argmax(logits_fn(x), -1))
    purifiers = tiny_purifiers()
    run = robustness_eval.RobustnessEvaluation(
        s, logits_fn, tiny_params(*MNIST), x, y, [0, 1, 2, 3], str(tmp_path), 4, purifiers
    )
    result = robustness_eval.evaluate(run, parts, log=lambda _: None)
    rows = {(r["label"], r["group"]): r for r in result["rows"]}
    for label in ("APGD-CE", "APGD-T"):
        white_box = rows[(label, "standard")]
        # crafted on classifier(purify(x)) and judged there, one key: the attacker's own
        # verdict is the defense's accuracy (crafted on the bare classifier, it is not)
        accuracy = white_box["accuracy"][defense]
        assert accuracy["std"] == 0 and accuracy["mean"] == 100 - white_box["attacker_success"]
        assert white_box["mean_linf"] <= 0.1 + 1e-6
    transfer = rows[("APGD-CE", "bare")]
    assert transfer["accuracy"][defense]["mean"] != 100 - transfer["attacker_success"]
    assert {w["model"] for w in result["worst_case"]} == {"none", defense}
    assert defense in result["clean"] and "varies_between_keys" not in result["clean"]
    names = [c["check"] for c in result["sanity"]]
    assert names[0].startswith("bare classifier") and "a large budget leaves ~0%" in names
    # the other purifier's run of the same attack has a cache file of its own
    other = next(n for n in purifiers if n != defense)
    twin = robustness_plan.plan(dataclasses.replace(s, defense=other), num_classes=10)[2]
    assert (twin.label, twin.group) == (parts[2].label, parts[2].group)
    path = run._evaluation(parts[2]).identity(parts[2].run)[1]
    assert path != run._evaluation(twin).identity(twin.run)[1]
    # without its weights, a purifier's run is refused by name
    bare = robustness_eval.RobustnessEvaluation(
        s, logits_fn, tiny_params(*MNIST), x, y, [0, 1, 2, 3], str(tmp_path), 4
    )
    with pytest.raises(ValueError, match=f"the '{defense}' defense needs its weights"):
        bare.craft(parts[2])


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_runs_against_the_shipped_magnet_reformer_keep_their_committed_names(dataset):
    """MagNet's reformer as a Purifier is named by the fingerprint of all of MagNet's
    weights, as the runs against it were before: the shipped MagNet's is the legacy one,
    so its runs keep their cache names."""
    from remix_jax import adaptive_eval, adaptive_plan
    from remix_jax.pretrained import load_magnet

    magnet = load_magnet(dataset)
    weights = adaptive_eval.purifiers(magnet=magnet)["MagNet reformer"].weights
    assert weights == progress.fingerprint(magnet)
    assert weights == adaptive_plan.LEGACY_DEFENSE_WEIGHTS[(dataset, "MagNet reformer")]
