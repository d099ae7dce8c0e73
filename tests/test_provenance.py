"""provenance.git_commit: "-dirty" means the code changed, not results or docs."""

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
