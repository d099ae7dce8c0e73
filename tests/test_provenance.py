"""provenance.git_commit: "-dirty" means the code changed, not results or docs."""

import json
import subprocess

import pytest

from remix_jax import provenance


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("REMIX_GIT_COMMIT", raising=False)
    for path in ("src/a.py", "results/r.json", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "x")
    return tmp_path


def test_results_and_docs_do_not_make_it_dirty(repo):
    (repo / "results" / "r.json").write_text("2\n")
    (repo / "README.md").write_text("2\n")
    commit = provenance.git_commit(str(repo / "src"))
    assert len(commit) == 40 and not commit.endswith("-dirty")


def test_a_code_change_makes_it_dirty(repo):
    (repo / "src" / "a.py").write_text("2\n")
    assert provenance.git_commit(str(repo / "results")).endswith("-dirty")


def test_environment_override(monkeypatch):
    monkeypatch.setenv("REMIX_GIT_COMMIT", "abc")
    assert provenance.git_commit() == "abc"


def test_machine_names_the_cpu_generation_where_linux_tells_it():
    try:
        with open("/proc/cpuinfo") as f:
            has_family = "cpu family" in f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    described = provenance.machine()
    assert "cores; jax" in described
    if has_family:
        assert "(family " in described and ", model " in described


def test_a_rerun_with_other_numbers_rewrites_and_says_what_moved_and_where_it_was_made(
    tmp_path, capsys
):
    old = {"machine": "Intel Xeon", "command": "a", "rows": [{"k": 0, "ok": 100.0, "l2": 1.3}]}
    with open(tmp_path / "r.json", "w") as f:
        json.dump(old, f)
    written = []
    new = {
        **old,
        "machine": "AMD EPYC",
        "rows": [{"k": 0, "ok": 99.9, "l2": 1.3 * (1 + 1e-6)}],
        "n": [],
    }
    assert provenance.write_unless_reproduced(
        str(tmp_path / "r"), new, lambda path, res: written.append(res)
    )
    printed = capsys.readouterr().out.splitlines()
    assert written == [new]
    assert "3 differ, 1 of them by less than 0.0001 relative" in printed[0]
    assert "made on Intel Xeon" in printed[0]
    # largest change first: what appeared, then the counted change, then the rounding
    assert printed[1:4] == [
        "  n: absent -> []",
        "  rows[0].ok: 100.0 -> 99.9",
        f"  rows[0].l2: 1.3 -> {1.3 * (1 + 1e-6)!r}",
    ]
    assert not provenance.write_unless_reproduced(str(tmp_path / "r"), old, written.append)
    assert "kept as committed" in capsys.readouterr().out and len(written) == 1


def test_differences_are_leaf_by_leaf_without_ambiguous_paths():
    assert provenance.differences({"a": [float("nan")]}, {"a": [float("nan")]}) == []
    assert provenance.differences({"a": 100, "b": True}, {"a": 100.0, "b": 1}) == []
    # keys with dots and brackets are never taken for nesting
    assert sorted(provenance.differences({"a.b": 1}, {"a": {"b": 1}})) == [
        "a.b: 1 -> absent",
        "a.b: absent -> 1",
    ]
    assert provenance.differences({"a": [1]}, {"a[0]": 1}) != []
    assert provenance.differences({"x": {}}, {"x": []}) == ["x: {} -> []"]
    assert provenance.differences({"x": "1"}, {"x": 1}) == ["x: '1' -> 1"]
    # a string or an infinity moves "infinitely": listed before any finite change
    moved = provenance.differences(
        {"f": 1.0, "i": float("inf"), "s": "a"}, {"f": 2.0, "i": 1.0, "s": "b"}
    )
    assert [m.split(":")[0] for m in moved] == ["i", "s", "f"]
    # the run's own fields are not numbers
    assert provenance.differences({"machine": "a", "date": "1"}, {"machine": "b"}) == []
