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
