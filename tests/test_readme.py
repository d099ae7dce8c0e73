"""The README's Python example runs as written."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_readme_quick_start_runs(data_dir):
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert blocks, "README.md has no python example"
    env = {**os.environ, "REMIX_DATA_DIR": data_dir}
    proc = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = {}
    for line in proc.stdout.strip().splitlines()[-3:]:
        name, value = line.rsplit(" ", 1)
        accuracy[name] = float(value)
    # what the example claims: the attack works, and REMIX undoes most of it
    assert accuracy["clean"] >= 0.95
    assert accuracy["attacked"] <= 0.05
    assert accuracy["attacked + REMIX"] >= 0.5


def test_the_readme_commands_are_those_their_committed_results_record():
    """A row of the README's command table that names a committed JSON result
    (`results/<name>.{json,...}`) shows the command that JSON records, so running the
    row on a fresh clone reproduces the file (and leaves `git status` clean) instead
    of writing another table over it."""
    import json

    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    checked = 0
    for row in re.finditer(r"^\| `(python -m [^`]+)` \| (.*?)\|\s*$", readme, re.M):
        command, description = row.groups()
        for stem, suffixes in re.findall(r"`(results/[^`<>]+)\.\{([a-z,]+)\}`", description):
            path = os.path.join(REPO, stem + ".json")
            if "json" in suffixes.split(",") and os.path.isfile(path):
                with open(path) as f:
                    assert json.load(f)["command"] == command, stem
                checked += 1
    assert checked >= 5, "eval.clean, logit_gaps, robustness, adaptive, detector"
