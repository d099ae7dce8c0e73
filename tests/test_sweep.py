"""eval.sweep end to end on a tiny config, its resume, and the committed sweep results."""

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def in_process(monkeypatch, data_dir):
    """eval.sweep's main, run here (the JAX backend already runs in this process)."""
    from remix_jax import runtime

    if not os.path.isdir(os.path.join(REPO, "checkpoints", "mnist", "inpainter")):
        pytest.skip("no MNIST checkpoints committed")
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    monkeypatch.setattr(runtime, "use_full_precision", lambda: None)  # process-wide
    monkeypatch.setenv("REMIX_DATA_DIR", data_dir)


@pytest.mark.slow
def test_tiny_sweep_runs_end_to_end_and_resumes_from_its_cache(
    tmp_path, in_process, capsys, monkeypatch
):
    from eval import sweep

    cache, out = tmp_path / "cache", tmp_path / "out" / "cw"
    args = [
        "--attack",
        "cw",
        "--num-examples",
        "6",
        "--confidences",
        "0",
        "5",
        "--binary-search-steps",
        "2",
        "--max-iterations",
        "30",
        "--initial-const",
        "10",
        "--num-keys",
        "2",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
    ]
    sweep.main(args)
    files = sorted(os.listdir(cache))
    assert files == ["kappa_0.npz", "kappa_5.npz"]
    stamps = {f: os.stat(cache / f).st_mtime_ns for f in files}
    result = json.loads((tmp_path / "out" / "cw.json").read_text())
    assert [row["confidence"] for row in result["rows"]] == [0, 5]
    for row in result["rows"]:  # the crafting time of every batch is kept
        assert row["craft_seconds"] > 0 and row["craft_images_timed"] == 6
        assert row["craft_cpu_seconds"] > 0
        assert row["craft_machines"] == [result["machine"]]
    assert (tmp_path / "out" / "cw.png").stat().st_size > 0
    assert (tmp_path / "out" / "cw.csv").read_text().count("\n") == 3
    table = (tmp_path / "out" / "cw.md").read_text()
    assert "| clean |" in table and "\n| 0 | " in table and "\n| 5 | " in table
    written = {s: (tmp_path / "out" / f"cw{s}").read_bytes() for s in (".json", ".md", ".csv")}
    capsys.readouterr()
    sweep.main(args)  # must reuse both cached kappas
    assert {f: os.stat(cache / f).st_mtime_ns for f in files} == stamps
    # the same numbers again: the files stay byte-identical (provenance of the first run)
    assert "already holds these numbers" in capsys.readouterr().out
    assert {s: (tmp_path / "out" / f"cw{s}").read_bytes() for s in written} == written
    again = json.loads((tmp_path / "out" / "cw.json").read_text())
    assert again["rows"][0]["attack_success"] == result["rows"][0]["attack_success"]
    # the tables and plot can be rebuilt from the JSON alone
    table = (tmp_path / "out" / "cw.md").read_text()
    for suffix in (".md", ".csv", ".png"):
        os.remove(tmp_path / "out" / f"cw{suffix}")
    sweep.main(["--attack", "cw", "--render-only", "--out", str(out)])
    assert (tmp_path / "out" / "cw.md").read_text() == table
    with pytest.raises(SystemExit, match="needs"):
        sweep.main(["--attack", "cw", "--render-only", "--out", str(tmp_path / "no")])
    # other attack settings must not craft over the cache: one clear line instead
    before = (cache / "kappa_0.npz").read_bytes()
    other = [a if a != "30" else "31" for a in args]  # --max-iterations 31
    with pytest.raises(SystemExit, match=r"other settings \(max_iterations differ\)"):
        sweep.main(other)
    # nor a retrained classifier's: its weights are part of the cache's identity
    from remix_jax import eval_inputs

    monkeypatch.setattr(eval_inputs.EvalInputs, "classifier_weights", lambda self: "f" * 16)
    with pytest.raises(SystemExit, match=r"other settings \(classifier_weights differ\)"):
        sweep.main(args)
    assert (cache / "kappa_0.npz").read_bytes() == before


def test_bad_arguments_exit_with_a_message(capsys):
    from eval import sweep

    with pytest.raises(SystemExit) as exit_info:
        sweep.parse(["--attack", "cw", "--num-examples", "0"])
    assert exit_info.value.code != 0
    assert "argument --num-examples: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        ["--iterations", "0"],
        ["--confidences", "nan"],
        ["--binary-search-steps", "0"],
        ["--beta", "-1"],
        ["--craft-only", "--render-only"],
    ],
)
def test_settings_that_would_fail_after_hours_of_crafting_are_refused_at_once(bad, capsys):
    from eval import sweep

    with pytest.raises(SystemExit) as exit_info:
        sweep.parse(["--attack", "cw", *bad])
    assert exit_info.value.code != 0 and "error" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_rerun_that_reproduces_a_committed_sweep_keeps_its_file(dataset, tmp_path):
    from remix_jax import provenance

    path = os.path.join(REPO, "results", dataset, "cw.json")
    with open(path) as f:
        result = json.load(f)
    rerun = {
        **result,
        "command": "python -m eval.sweep --attack cw",
        "git_commit": "x",
        "machine": "elsewhere",
        "date": "2030-01-01T00:00:00Z",
        "wall_seconds": 1.0,
    }
    assert provenance.reproduces(path, rerun)
    moved = json.loads(json.dumps(result))
    moved["rows"][0]["attack_success"] -= 0.1
    assert not provenance.reproduces(path, moved)
    assert not provenance.reproduces(str(tmp_path / "absent.json"), result)


def check_rows(result):
    """A sweep result's provenance and every row's internal consistency."""
    for key in ("settings", "command", "git_commit", "machine", "data_source", "clean"):
        assert key in result
    for row in result["rows"]:
        assert 0 <= row["attack_success"] <= 100
        assert row["fooled"] == round(row["attack_success"] * row["images"] / 100)
        for name, value in row.items():
            if " | " in name and value is not None:
                assert 0 <= value["min"] <= value["mean"] <= value["max"] <= 100, name


def check_against_cache(result: dict) -> None:
    """The scored examples are the committed cache's (mean L1 / L2 over its successes)."""
    import numpy as np

    preset = result["settings"]["binary_search_steps"], result["settings"]["max_iterations"]
    cache = os.path.join(
        REPO,
        "results",
        result["dataset"],
        "cache",
        result["attack"] + ("-cpu" if preset == (9, 1000) else ""),
    )
    n = result["num_examples"]
    for row in result["rows"]:
        with np.load(os.path.join(cache, f"kappa_{row['confidence']:g}.npz")) as f:
            # a cache grown past the sweep (--num-examples raised, not yet rescored) holds
            # the scored images first, as eval.sweep reads them
            assert len(f["l2"]) >= row["images"] == n
            # the scored examples are the cached ones (mean L2 over the attack's successes
            # that the re-check on the scoring machine confirmed)
            ok = f["success"][:n].copy()
            ok[row.get("failed_recheck", [])] = False
            for norm in ("l1", "l2"):
                if f"mean_{norm}" not in row:
                    continue
                if not ok.any():  # nothing to average (EAD at the top of the CIFAR grid)
                    assert row[f"mean_{norm}"] is None
                else:
                    assert abs(float(f[norm][:n][ok].mean()) - row[f"mean_{norm}"]) < 1e-4 * max(
                        1.0, row[f"mean_{norm}"]
                    )


@pytest.mark.parametrize(
    "dataset,grid,min_images",
    [("mnist", range(0, 41, 5), 200), ("cifar10", range(0, 101, 10), 100)],
)
@pytest.mark.parametrize("attack", ["cw", "ead"])
def test_committed_sweep_results_are_complete_and_consistent(dataset, grid, min_images, attack):
    path = os.path.join(REPO, "results", dataset, f"{attack}.json")
    with open(path) as f:
        result = json.load(f)
    assert result["dataset"] == dataset
    assert [row["confidence"] for row in result["rows"]] == list(grid)
    assert result["num_examples"] >= min_images
    check_rows(result)
    check_against_cache(result)
    # the attack works: at kappa 0 the bare classifier is fooled on (almost) every image
    first = result["rows"][0]
    assert first["attack_success"] >= 99 and first["none | all"]["mean"] <= 1


def test_a_scoring_killed_at_any_point_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    """score_sweep keeps each finished stage (clean, then each kappa) in the progress
    file: killed at any defense of any stage, the same call scores only the unfinished
    stages and returns the rows of an uninterrupted run. (eval.sweep scores through
    score_sweep; its crafting's resume runs end to end in
    test_tiny_sweep_runs_end_to_end_and_resumes_from_its_cache.)"""
    import jax
    import numpy as np

    from remix_jax import evaluation, progress, sweep_eval

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 4, 4, 1)).astype(np.float32)
    y = np.arange(6) % 3

    def crafted(kappa):
        adversarial = np.clip(x + 0.1 * (kappa + 1) * rng.standard_normal(x.shape), 0, 1)
        success = np.arange(6) % 2 == kappa % 2
        distances = {n: rng.uniform(size=6).astype(np.float32) for n in ("l1", "l2", "linf")}
        return {"adversarial": adversarial, "success": success, "success_crafted": success,
                **distances}  # fmt: skip

    def random_labels(key, images):  # a randomized defense: its labels follow the key
        seed = int(jax.random.randint(key, (), 0, 2**16))
        return (np.round(images.mean((1, 2, 3)) * 100).astype(int) + seed) % 3

    defenses = {
        "none": evaluation.Defense(False, lambda key, images: np.zeros(len(images), int)),
        "remix": evaluation.Defense(True, random_labels),
    }
    sets = {0.0: crafted(0), 5.0: crafted(5), 10.0: crafted(10)}
    identity = {"run": 1}
    reference = sweep_eval.score_sweep(
        defenses, x, y, sets, 3, progress.ProgressFile(str(tmp_path / "ref.json"), identity)
    )
    stages = ["clean"] + [f"kappa {k:g}" for k in sets]
    original, calls = evaluation.Defense.correct_over_keys, []

    class Killed(Exception):
        pass

    def counting(die_at):
        def correct_over_keys(self, *a, **k):
            if len(calls) == die_at:
                raise Killed
            calls.append(1)
            return original(self, *a, **k)

        return correct_over_keys

    total = len(stages) * len(defenses)
    for die_at in range(total):  # every point at which scoring can be killed
        path = str(tmp_path / f"killed-at-{die_at}.json")
        calls.clear()
        with pytest.MonkeyPatch.context() as m:
            m.setattr(evaluation.Defense, "correct_over_keys", counting(die_at))
            with pytest.raises(Killed):
                sweep_eval.score_sweep(
                    defenses, x, y, sets, 3, progress.ProgressFile(path, identity)
                )
        finished = die_at // len(defenses)  # stages whose every defense was scored
        stored = progress.ProgressFile(path, identity)
        assert [stored.get(s) is not None for s in stages] == [i < finished for i in range(4)]
        calls.clear()
        with pytest.MonkeyPatch.context() as m:
            m.setattr(evaluation.Defense, "correct_over_keys", counting(None))
            resumed = sweep_eval.score_sweep(defenses, x, y, sets, 3, stored)
        assert len(calls) == total - finished * len(defenses)  # no finished stage again
        assert json.loads(json.dumps(resumed)) == json.loads(json.dumps(reference))
    # another identity (other weights, keys or images) resumes nothing
    assert progress.ProgressFile(path, {"run": 2}).get("kappa 0") is None


def test_progress_is_reused_only_under_the_same_identity(tmp_path):
    import numpy as np

    from remix_jax import progress

    path = str(tmp_path / "run.progress.json")
    first = progress.ProgressFile(path, {"weights": progress.fingerprint({"w": np.ones(3)})})
    first.put("kappa 0", {"accuracy": 0.5})
    same = progress.ProgressFile(path, {"weights": progress.fingerprint({"w": np.ones(3)})})
    assert same.get("kappa 0") == {"accuracy": 0.5}
    other = progress.ProgressFile(path, {"weights": progress.fingerprint({"w": np.zeros(3)})})
    assert other.get("kappa 0") is None
    same.finish()
    assert not os.path.exists(path)


@pytest.mark.slow
@pytest.mark.default_draws
def test_rerunning_a_committed_sweep_leaves_its_files_byte_identical(tmp_path, in_process, capsys):
    """The committed 20-image sweep, scored again from the committed cache, reproduces
    its numbers, so every file keeps its bytes (provenance of the run that made them)."""
    import shutil

    from eval import sweep

    committed = os.path.join(REPO, "results", "mnist", "rerun-check", "cw-20")
    with open(committed + ".json") as f:
        recorded = json.load(f)
    assert "--num-examples 20" in recorded["command"]
    for suffix in (".json", ".md", ".csv", ".png"):
        shutil.copy(committed + suffix, tmp_path / f"cw-20{suffix}")
    sweep.main(
        ["--attack", "cw", "--num-examples", "20", "--num-keys", "2", "--no-magnet"]
        + ["--out", str(tmp_path / "cw-20")]
    )
    assert "already holds these numbers" in capsys.readouterr().out
    for suffix in (".json", ".md", ".csv", ".png"):
        with open(committed + suffix, "rb") as f:
            assert (tmp_path / f"cw-20{suffix}").read_bytes() == f.read(), suffix
    assert not (tmp_path / "cw-20.progress.json").exists()


def test_a_success_the_recheck_fails_is_named_and_left_out_of_the_distortions():
    """An example the attack counted as a success but whose margin misses kappa on the
    scoring machine (a float32 tie) is no success there: its index is recorded and its
    distortion leaves the mean; a row without such examples has no such field."""
    import numpy as np

    from remix_jax import sweep_eval

    crafted = {
        "success_crafted": np.array([True, True, True, False]),
        "success": np.array([True, False, True, False]),  # re-checked
        **{n: np.array([1.0, 10.0, 3.0, 5.0], np.float32) for n in ("l1", "l2", "linf")},
    }
    row = sweep_eval.attack_row(0.0, crafted)
    assert row["failed_recheck"] == [1] and row["fooled"] == 2
    assert row["mean_l2"] == 2.0 and row["attack_success_where_crafted"] == 75.0
    confirmed = sweep_eval.attack_row(0.0, {**crafted, "success_crafted": crafted["success"]})
    assert "failed_recheck" not in confirmed
