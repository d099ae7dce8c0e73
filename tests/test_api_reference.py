"""The API reference (mkdocs.yml, docs/) builds without a warning and covers the public API.

``mkdocs build --strict`` fails on any warning: a docstring griffe cannot parse (an
``Args:`` entry naming no parameter), a Sphinx role (``:func:`defend```) or Markdown
cross-reference naming nothing, a broken link between the pages. The build reads the
sources statically (griffe), so it imports neither remix_jax nor JAX: a few seconds.
"""

import ast
import os
import re
import subprocess
import sys

import pytest

import remix_jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the modules users call, each rendered on its own page (or a section of one)
MODULES = [
    "remix_jax.defense",
    "remix_jax.masking",
    "remix_jax.pretrained",
    "remix_jax.data",
    "remix_jax.datasets",
    "remix_jax.sources",
    "remix_jax.training",
    "remix_jax.objectives",
    "remix_jax.attacks.cw",
    "remix_jax.attacks.ead",
    "remix_jax.attacks.pgd",
    "remix_jax.attacks.apgd",
    "remix_jax.attacks.common",
    "remix_jax.attack_registry",
    "remix_jax.evaluation",
    "remix_jax.validation",
    "remix_jax.runtime",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site's API pages as one string of HTML."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean"]
        + ["--config-file", os.path.join(REPO, "mkdocs.yml"), "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stderr + proc.stdout  # mkdocs logs to stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-5000:]}"
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)
    pages = []
    for parent, _, names in os.walk(out / "api"):
        for name in names:
            if name.endswith(".html"):
                with open(os.path.join(parent, name)) as f:
                    pages.append(f.read())
    assert pages, "the build wrote no API pages"
    return "\n".join(pages)


def documented(html: str, path: str) -> bool:
    """Whether ``path`` got its own heading (mkdocstrings anchors it by its full path)."""
    return f'id="{path}"' in html


def attacks_exports() -> dict[str, str]:
    """``remix_jax.attacks``' re-exports as ``{name: defining module}``, read without JAX."""
    with open(os.path.join(REPO, "src", "remix_jax", "attacks", "__init__.py")) as f:
        tree = ast.parse(f.read())
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_builds_without_warnings(site):
    assert documented(site, "remix_jax.defense.defend")


def test_every_export_is_documented(site):
    assert set(remix_jax.__all__) == set(remix_jax._EXPORTS)
    missing = [
        f"{module}.{name}"
        for name, module in remix_jax._EXPORTS.items()
        if not documented(site, f"{module}.{name}")
    ]
    assert not missing, f"exported but not in the API reference (no docstring?): {missing}"


def test_the_overview_lists_every_export():
    with open(os.path.join(REPO, "docs", "api", "index.md")) as f:
        overview = f.read()
    listed = set(re.findall(r"\[`(\w+)`\]\[remix_jax\.[\w.]+\]", overview))
    assert listed >= set(remix_jax.__all__), set(remix_jax.__all__) - listed


def test_every_attack_export_is_documented(site):
    exports = attacks_exports()
    assert {"cw_l2", "ead", "pgd", "apgd", "AttackResult"} <= set(exports)
    missing = [f"{m}.{n}" for n, m in exports.items() if not documented(site, f"{m}.{n}")]
    assert not missing, f"remix_jax.attacks exports these without documenting them: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_user_facing_module_is_documented(site, module):
    assert documented(site, module), f"{module} has no section in docs/api/"
