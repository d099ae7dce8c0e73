"""eval.adaptive end to end on a tiny config, its resume, its run plan, and its bad input."""

import glob
import json
import os

import numpy as np
import pytest

from eval import adaptive
from remix_jax import adaptive_plan
from remix_jax.adaptive_plan import AdaptiveSetup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan(args):
    return adaptive_plan.plan(AdaptiveSetup.from_args(args))


@pytest.fixture
def in_process(monkeypatch, data_dir):
    """eval.adaptive's main, run here (the JAX backend already runs in this process)."""
    from remix_jax import runtime

    if not os.path.isdir(os.path.join(REPO, "checkpoints", "mnist", "inpainter")):
        pytest.skip("no MNIST checkpoints committed")
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    # a process-wide JAX setting: keep it out of the other tests (CPUs compute float32
    # in full precision anyway)
    monkeypatch.setattr(runtime, "use_full_precision", lambda: None)
    monkeypatch.setenv("REMIX_DATA_DIR", data_dir)


@pytest.mark.slow
def test_tiny_adaptive_evaluation_runs_end_to_end_and_resumes(tmp_path, in_process, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out" / "pgd"
    args = [
        "--attack",
        "pgd",
        "--num-examples",
        "4",
        "--steps",
        "2",
        "--samples",
        "2",
        "--budgets",
        "0.1",
        "--threats",
        "oblivious",
        "eot",
        "fixed",
        "eot-warm",
        "--num-keys",
        "2",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
    ]
    adaptive.main(args)
    result = json.loads((tmp_path / "out" / "pgd.json").read_text())
    assert [(r["threat"], r["samples"]) for r in result["rows"]] == [
        ("oblivious", 1),
        ("eot", 2),
        ("fixed", 1),
        ("eot-warm", 2),
    ]
    for row in result["rows"]:
        for acc in row["accuracy"].values():
            assert 0 <= acc["mean"] <= 100
        assert row["mean_linf"] <= 0.1 + 1e-6
    assert set(result["rows"][0]["accuracy"]) == {"none", "reformer + mask-inpaint"}
    assert result["rows"][1]["accuracy"]["reformer + mask-inpaint"]["runs"] == 2
    assert "accuracy_attacker_key" in result["rows"][2]
    [worst] = result["worst_case"]  # one budget, one defense, four attacks
    assert (worst["budget"], worst["defense"], worst["attacks"]) == (
        0.1,
        "reformer + mask-inpaint",
        4,
    )
    assert (
        worst["accuracy"]["mean"]
        <= min(r["accuracy"]["reformer + mask-inpaint"]["mean"] for r in result["rows"]) + 1e-9
    )
    assert "Worst case over every attack" in (tmp_path / "out" / "pgd.md").read_text()
    assert (tmp_path / "out" / "pgd.png").stat().st_size > 0
    assert (
        "| curve | reformer + mask-inpaint | eot | 0.1 | 2 | 2 |"
        in (tmp_path / "out" / "pgd.md").read_text()
    )
    files = sorted(os.listdir(cache))
    assert len(files) == 4  # the warm start reused the oblivious run's examples
    stamps = {f: os.stat(cache / f).st_mtime_ns for f in files}
    written = (tmp_path / "out" / "pgd.json").read_bytes()
    capsys.readouterr()
    adaptive.main(args)  # every run comes from the cache
    assert {f: os.stat(cache / f).st_mtime_ns for f in sorted(os.listdir(cache))} == stamps
    again = json.loads((tmp_path / "out" / "pgd.json").read_text())
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in result["rows"]]
    # the same numbers: the file keeps the first run's bytes (and provenance)
    assert "already holds these numbers" in capsys.readouterr().out
    assert (tmp_path / "out" / "pgd.json").read_bytes() == written


def test_sanity_plan_adds_samples_steps_fixed_and_large_budget_without_repeats():
    args = adaptive.parse(
        [
            "--attack",
            "pgd",
            "--budgets",
            "0.1",
            "0.2",
            "--sanity",
            "--samples",
            "4",
            "--steps",
            "100",
        ]
    )
    runs = plan(args)
    groups = [r["group"] for r in runs]
    assert groups.count("curve") == 4  # oblivious + eot, two budgets
    eot_02 = [r for r in runs if r["threat"] == "eot" and r["budget"] == 0.2]
    # the curve's R=4 / 100-step run at 0.2 serves both sanity series: kept once
    assert sorted((r["samples"], r["steps"]) for r in eot_02) == [
        (1, 100),
        (4, 25),
        (4, 50),
        (4, 100),
        (4, 200),
        (8, 100),
    ]
    assert [r["budget"] for r in runs if r["group"] == "large budget"] == [0.5]
    assert [r["threat"] for r in runs if r["group"] == "fixed masks"] == ["fixed"]


@pytest.mark.parametrize(
    "dataset,norm,budgets",
    [
        ("mnist", "linf", [0.05, 0.1, 0.2, 0.3]),
        ("mnist", "l2", [1.0, 2.0, 3.0]),
        ("cifar10", "linf", [2 / 255, 4 / 255, 8 / 255]),
        ("cifar10", "l2", [0.25, 0.5, 1.0]),
    ],
)
def test_pgd_budgets_default_to_each_datasets_usual_ones(dataset, norm, budgets):
    args = adaptive.parse(["--attack", "pgd", "--dataset", dataset, "--norm", norm])
    assert args.budgets == budgets
    assert adaptive.parse(["--attack", "cw", "--dataset", dataset]).budgets == [0.0]


@pytest.mark.parametrize(
    "bad",
    [
        ["--num-examples", "0"],
        ["--budgets", "0"],
        ["--iterations", "0"],
        ["--threats", "magic"],
        ["--budgets", "nan"],
        ["--budgets", "5"],
        ["--validation-size", "0"],
    ],
)
def test_bad_arguments_exit_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        adaptive.parse(["--attack", "pgd", *bad])
    assert exit_info.value.code != 0
    assert "error" in capsys.readouterr().err


def test_detector_plan_adds_detector_aware_runs_and_knows_every_score():
    from remix_jax.detector import SCORES

    assert SCORES == adaptive_plan.DETECTOR_SCORES
    args = adaptive.parse(
        [
            "--attack",
            "pgd",
            "--budgets",
            "0.3",
            "--detector",
            "copies-JSD",
            "--detector-weights",
            "1",
            "10",
        ]
    )
    aware = [r for r in plan(args) if r["group"] == "detector-aware"]
    assert [(r["threat"], r["detector_weight"], r["detector"]) for r in aware] == [
        ("eot", 1.0, "copies-JSD"),
        ("eot", 10.0, "copies-JSD"),
    ]
    assert all(r["detector_penalty"] == adaptive_plan.PENALTY for r in aware)
    # the other runs keep their settings (and cache entries) without detector fields
    assert all("detector" not in r for r in plan(args) if r not in aware)


@pytest.mark.slow
@pytest.mark.parametrize(
    "attack, budget",
    [
        # PGD at the tiny evaluation's settings (above): its programs come compiled
        ("pgd --steps 2 --budgets 0.1 --num-examples 4 --samples 2 --num-keys 2", {}),
        # CW: the adaptive minimum-distortion attack, search steps begun warm
        (
            "cw --binary-search-steps 1 --max-iterations 2 --num-examples 2 --samples 1 "
            "--num-keys 1",
            {"warm_start": True},
        ),
    ],
)
def test_eot_warm_starts_from_the_oblivious_example(
    attack, budget, tmp_path, in_process, monkeypatch
):
    import numpy as np

    from remix_jax import attack_registry

    calls, real = [], attack_registry.get(attack.split()[0]).resolve()

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs, np.asarray(result.adversarial)))
        return result

    monkeypatch.setattr(attack_registry.AttackSpec, "resolve", lambda self: recording)
    adaptive.main(
        ["--attack", *attack.split(), "--threats", "oblivious", "eot-warm",
         "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    (first, transfer), (warm, _) = calls
    assert "start" not in first and "warm_start" not in first
    np.testing.assert_array_equal(np.asarray(warm["start"]), transfer)
    assert {k: warm[k] for k in budget} == budget
    result = json.loads((tmp_path / "out.json").read_text())
    for row in result["rows"]:  # the distortion of what the attacker broke, if anything
        q = row["l2_successful"]
        assert q is None or q["q25"] <= q["median"] <= q["q75"]


def test_detector_aware_runs_are_cached_per_threshold_and_default_to_magnets_rate():
    def settings(*extra):
        args = adaptive.parse(
            [
                "--attack",
                "pgd",
                "--budgets",
                "1",
                "--norm",
                "l2",
                "--detector",
                "copies-JSD",
                "--detector-weights",
                "1",
                *extra,
            ]
        )
        setup = AdaptiveSetup.from_args(args)
        return args, {r["group"]: adaptive_plan.run_settings(setup, [0, 1], r) for r in plan(args)}

    args, mnist = settings()
    assert args.detector_drop_rate == 0.001  # MagNet's MNIST rate, as eval.detector
    assert adaptive.parse(["--attack", "pgd", "--dataset", "cifar10"]).detector_drop_rate == 0.005
    _, other_rate = settings("--detector-drop-rate", "0.01")
    _, other_calibration = settings("--validation-size", "1000")
    # the threshold shapes only the detector-aware attack, so only its identity changes
    assert other_rate["curve"] == mnist["curve"]
    assert other_rate["detector-aware"] != mnist["detector-aware"]
    assert other_calibration["detector-aware"] not in (
        mnist["detector-aware"],
        other_rate["detector-aware"],
    )
    # the default drop rate and set stay out of the identity, the calibration draw is in it
    assert "detector_drop_rate" not in mnist["detector-aware"]
    assert mnist["detector-aware"]["calibration_key"] == adaptive_plan.CALIBRATION_KEY
    assert "calibration_key" not in mnist["curve"]


ADAPTIVE_RESULTS = sorted(glob.glob(os.path.join(REPO, "results", "*", "adaptive-*.json")))
RESULT_IDS = [os.path.relpath(p, os.path.join(REPO, "results")) for p in ADAPTIVE_RESULTS]
# crafted before a part of their identity existed, to be crafted again (and then dropped
# from here: strict, so a result crafted again fails this mark)
STALE_CACHES: set[str] = set()  # none since CIFAR-10's L2 runs were crafted again


@pytest.mark.parametrize(
    "path", ADAPTIVE_RESULTS, ids=[os.path.basename(p) for p in ADAPTIVE_RESULTS]
)
def test_committed_adaptive_results_are_consistent(path):
    """Accuracies are percentages, and each worst case counts every attack run at its
    budget and is no higher than any of them (an image survives only if it survives all)."""
    with open(path) as f:
        result = json.load(f)
    assert result["rows"] and result["num_keys"] >= 1
    for row in result["rows"]:
        assert 0 <= row["attacker_success"] <= 100
        for value in row["accuracy"].values():
            assert 0 <= value["min"] <= value["mean"] <= value["max"] <= 100
    for worst in result["worst_case"]:
        runs = [
            row["accuracy"][worst["defense"]]["mean"]
            for row in result["rows"]
            if row["budget"] == worst["budget"] and worst["defense"] in row["accuracy"]
        ]
        assert len(runs) == worst["attacks"]
        assert worst["accuracy"]["mean"] <= min(runs) + 1e-6


@pytest.mark.parametrize("path", ADAPTIVE_RESULTS, ids=RESULT_IDS)
def test_committed_adaptive_results_record_the_command_that_makes_them(path):
    """The recorded command, run again, writes this file with these settings (a default
    that changed since, or a renamed file, would leave a command that makes another)."""
    import shlex

    with open(path) as f:
        result = json.load(f)
    argv = shlex.split(result["command"])
    assert argv[:3] == ["python", "-m", "eval.adaptive"]
    args = adaptive.parse(argv[3:])
    assert os.path.join(REPO, adaptive.default_out(args) + ".json") == path
    setup = AdaptiveSetup.from_args(args)
    attack = {k: v for k, v in result["settings"].items() if k in setup.attack_settings}
    assert attack == setup.attack_settings
    assert (args.samples, args.iterations, args.seed) == tuple(
        result["settings"][k] for k in ("samples", "iterations", "seed")
    )


class FakeEvaluation:
    """Scores each run without JAX: image i survives iff budget < 0.15 or i is even."""

    def __init__(self, setup, fail_at=None):
        self.setup, self.indices, self.fail_at, self.scored = setup, [7, 8, 9], fail_at, []

    def craft(self, run):
        return {}

    def identity(self, run):
        return adaptive_plan.run_settings(self.setup, self.indices, run), None, None

    def score(self, run, crafted):
        if len(self.scored) == self.fail_at:
            raise KeyboardInterrupt  # killed while scoring this run
        self.scored.append((run["threat"], run["budget"]))
        right = np.array([True, run["budget"] < 0.15, True])
        hits = {"reformer + mask-inpaint": [right] * self.setup.num_keys}
        return {**run, "accuracy": {"none": {"mean": float(right.mean())}}}, hits

    def clean(self):
        return {"none": {"mean": 100.0}}

    def detector_summary(self):
        return None


def test_an_adaptive_scoring_killed_at_any_run_resumes_from_its_finished_runs(tmp_path):
    from remix_jax import adaptive_eval, progress

    args = adaptive.parse(["--attack", "pgd", "--budgets", "0.1", "0.2", "--num-keys", "2"])
    setup = AdaptiveSetup.from_args(args)
    runs = adaptive_plan.plan(setup)
    straight = adaptive_eval.evaluate(FakeEvaluation(setup), runs, log=lambda s: None)
    identity = adaptive_eval.scoring_identity(FakeEvaluation(setup), "weights")
    assert len(runs) > 3
    for fail_at in range(len(runs)):  # killed while scoring each run in turn
        path = str(tmp_path / f"killed-at-{fail_at}.progress.json")
        killed = FakeEvaluation(setup, fail_at=fail_at)
        with pytest.raises(KeyboardInterrupt):
            adaptive_eval.evaluate(
                killed, runs, log=lambda s: None, scoring=progress.ProgressFile(path, identity)
            )
        resumed = FakeEvaluation(setup)
        again = adaptive_eval.evaluate(
            resumed, runs, log=lambda s: None, scoring=progress.ProgressFile(path, identity)
        )
        # only the unfinished runs are scored again
        assert resumed.scored == [(r["threat"], r["budget"]) for r in runs[fail_at:]]
        assert again == straight  # the worst case counts the reloaded runs too
    # another setup (here more keys) never reuses these runs
    other = AdaptiveSetup.from_args(adaptive.parse(["--attack", "pgd", "--num-keys", "3"]))
    assert adaptive_eval.scoring_identity(FakeEvaluation(other), "weights") != identity


def test_another_classifier_never_reuses_the_shipped_classifiers_runs():
    def identities(*extra):
        setup = AdaptiveSetup.from_args(adaptive.parse(["--attack", "pgd", *extra]))
        return [adaptive_plan.run_settings(setup, [0, 1], r) for r in adaptive_plan.plan(setup)]

    shipped = identities()
    own = identities("--classifier", "my_pkg.model:logits_fn", "--out", "x", "--cache-dir", "y")
    assert all("classifier" not in s for s in shipped)  # the committed caches keep their names
    assert [s["classifier"] for s in own] == ["my_pkg.model:logits_fn"] * len(own)


def test_start_from_begins_eot_warm_at_a_cached_runs_examples(tmp_path, in_process, monkeypatch):
    """CW eot-warm from a cached run's examples (e.g. PGD's: the minimum-distortion attack
    started where PGD broke the defense): the start is that file's, its digest names
    the run, and a file of other images is refused."""
    from remix_jax import attack_registry, data

    common = ["--num-examples", "2", "--samples", "1", "--num-keys", "1",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    # a cached run as AdaptiveEvaluation.craft writes it, on the 2 images chosen below
    # (the first two test images, which the shipped classifier gets right)
    images = data.to_float(data.load("mnist", "test")[0][:2])
    noise = np.random.default_rng(0).uniform(-0.2, 0.2, images.shape)
    settings = {"dataset": "mnist", "attack": "pgd", "indices": [0, 1], "budget": 0.3}
    pgd_file = str(tmp_path / "pgd-run.npz")
    np.savez_compressed(
        pgd_file, settings=json.dumps(settings), adversarial=np.clip(images + noise, 0, 1),
        success=np.ones(2, bool), seconds=np.float64(1.0),
    )  # fmt: skip
    other = str(tmp_path / "other.npz")
    np.savez_compressed(other, settings=json.dumps({**settings, "indices": [5, 6]}))
    calls, real = [], attack_registry.get("cw").resolve()
    monkeypatch.setattr(
        attack_registry.AttackSpec,
        "resolve",
        lambda self: lambda *a, **k: calls.append(k) or real(*a, **k),
    )
    cw = ["--attack", "cw", "--binary-search-steps", "1", "--max-iterations", "2", *common]
    adaptive.main(
        [*cw, "--threats", "eot-warm", "--start-from", pgd_file, "--out", str(tmp_path / "o1")]
    )
    (warm,) = calls  # no oblivious run was needed
    np.testing.assert_array_equal(np.asarray(warm["start"]), np.load(pgd_file)["adversarial"])
    assert warm["warm_start"] is True
    # the start's digest names the run: started from the oblivious run, another cache
    args = adaptive.parse([*cw, "--threats", "eot-warm", "--start-from", pgd_file])
    (run,) = plan(args)
    started = adaptive_plan.run_settings(AdaptiveSetup.from_args(args), [0, 1], run)
    args.start_from = None
    oblivious = adaptive_plan.run_settings(AdaptiveSetup.from_args(args), [0, 1], run)
    assert {k: v for k, v in started.items() if k != "start_from"} == oblivious
    assert started["start_from"] == adaptive_plan.settings_digest(settings)
    with pytest.raises(SystemExit, match="other images"):
        adaptive.main(
            [*cw, "--threats", "eot-warm", "--start-from", other, "--out", str(tmp_path / "o3")]
        )


def test_start_from_needs_eot_warm_and_an_existing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        adaptive.parse(["--attack", "cw", "--start-from", str(tmp_path / "none.npz")])
    (tmp_path / "run.npz").write_bytes(b"")
    with pytest.raises(SystemExit):
        adaptive.parse(["--attack", "cw", "--start-from", str(tmp_path / "run.npz")])
    assert "add eot-warm to --threats" in capsys.readouterr().err


@pytest.fixture(scope="module")
def committed_inputs():
    """eval_inputs.load by (dataset, num_examples), loaded once for the tests below."""
    from remix_jax import eval_inputs

    loaded = {}

    def load(dataset, num_examples):
        if (dataset, num_examples) not in loaded:
            loaded[dataset, num_examples] = eval_inputs.load(dataset, num_examples)
        return loaded[dataset, num_examples]

    return load


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="stale cache"))
        if name in STALE_CACHES
        else p
        for p, name in zip(ADAPTIVE_RESULTS, RESULT_IDS, strict=True)
    ],
    ids=RESULT_IDS,
)
def test_every_run_of_a_committed_adaptive_result_is_in_its_committed_cache(
    path, committed_inputs, data_dir, monkeypatch
):
    """Its recorded command, run again on the shipped weights, finds every run crafted
    (the identity, the attacked weights' fingerprint included, names the same file):
    a stale cache, crafted against other weights, would be found by no run."""
    import shlex

    from remix_jax.adaptive_eval import AdaptiveEvaluation

    monkeypatch.setenv("REMIX_DATA_DIR", data_dir)
    monkeypatch.chdir(REPO)  # the recorded command's relative cache folder
    with open(path) as f:
        args = adaptive.parse(shlex.split(json.load(f)["command"])[3:])
    setup = AdaptiveSetup.from_args(args)
    inputs = committed_inputs(args.dataset, args.num_examples)
    purifiers = {}
    if adaptive_plan.MAGNET_REFORMER in setup.defenses:
        from remix_jax.adaptive_eval import purifiers as load_purifiers
        from remix_jax.pretrained import load_magnet

        purifiers = load_purifiers(magnet=load_magnet(args.dataset))
    run = AdaptiveEvaluation(
        setup, *inputs.attacked(), args.cache_dir or adaptive_plan.default_cache_dir(args.dataset),
        validation=lambda: None, purifiers=purifiers,
        classifier_weights=inputs.classifier_weights(),
    )  # fmt: skip
    missing = [r for r in adaptive_plan.plan(setup) if not os.path.isfile(run.identity(r)[1])]
    assert not missing, f"{len(missing)} runs not in the cache, e.g. {missing[0]}"


def test_a_run_against_other_weights_has_its_own_identity():
    """The attacked weights join a run's identity unless they are those the committed
    runs were crafted against; the bare classifier's runs never carry them."""
    setup = AdaptiveSetup("mnist", "pgd", True, (0.1,), {"norm": "linf", "loss": "margin"},
                          threats=("oblivious", "eot"))  # fmt: skip
    oblivious, eot = adaptive_plan.plan(setup)
    legacy = adaptive_plan.LEGACY_DEFENSE_WEIGHTS[("mnist", eot["defense"])]
    shipped = adaptive_plan.run_settings(setup, [0], eot, legacy)
    assert shipped == adaptive_plan.run_settings(setup, [0], eot)  # the committed names
    other = adaptive_plan.run_settings(setup, [0], eot, "0123456789abcdef")
    assert other == {**shipped, "defense_weights": "0123456789abcdef"}
    assert adaptive_plan.settings_digest(other) != adaptive_plan.settings_digest(shipped)
    assert "defense_weights" not in adaptive_plan.run_settings(setup, [0], oblivious, "x")


@pytest.mark.slow
def test_runs_against_other_weights_are_crafted_apart(committed_inputs, data_dir, monkeypatch):
    """Through AdaptiveEvaluation, as eval.adaptive and eval.robustness name their runs:
    a retrained inpainter renames the runs against REMIX, another classifier every run;
    the shipped weights keep the committed names."""
    import jax

    from remix_jax.adaptive_eval import AdaptiveEvaluation

    monkeypatch.setenv("REMIX_DATA_DIR", data_dir)
    setup = AdaptiveSetup("mnist", "pgd", True, (0.1,), {"norm": "linf", "loss": "margin"},
                          threats=("oblivious", "eot"))  # fmt: skip
    runs = adaptive_plan.plan(setup)
    assert [r["defense"] for r in runs] == ["none", "reformer + mask-inpaint"]
    inputs = committed_inputs("mnist", 100)
    logits_fn, remix, x, y, indices = inputs.attacked()

    classifier = inputs.classifier_weights()

    def paths(remix=remix, classifier_weights=classifier):
        run = AdaptiveEvaluation(setup, logits_fn, remix, x, y, indices, "cache",
                                 lambda: None, classifier_weights=classifier_weights)  # fmt: skip
        return [run.identity(r)[1] for r in runs]

    shipped = paths()
    assert shipped == paths(classifier_weights=None)  # the committed names
    retrained = remix.replace(inpainter=jax.tree.map(lambda w: w * 1.001, remix.inpainter))
    transfer, against_remix = paths(remix=retrained)
    assert transfer == shipped[0] and against_remix != shipped[1]
    assert all(a != b for a, b in zip(paths(classifier_weights="0" * 16), shipped, strict=True))
