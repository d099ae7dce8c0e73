"""The documents' links lead somewhere: every relative link in README / RESULTS exists."""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "RESULTS.md", "bench/NOTES.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_exist(doc):
    with open(os.path.join(REPO, doc)) as f:
        text = f.read()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links, f"{doc} links nothing"
    folder = os.path.dirname(os.path.join(REPO, doc))
    missing = [
        link
        for link in links
        if not re.match(r"[a-z]+:", link)
        and not link.startswith("#")
        and not os.path.exists(os.path.join(folder, link.split("#")[0]))
    ]
    assert not missing, f"{doc} links missing files: {missing}"
