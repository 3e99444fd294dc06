"""The docs: generated parts are current, and every link and picture they point at exists."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_generated_docs_are_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_docs.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_exists(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not links: fenced blocks,
    text = re.sub(r"^(    |\t).*$", "", text, flags=re.M)  # indented blocks
    text = re.sub(r"`[^`]*`", "", text)  # and inline code
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not (page.parent / t).exists()]
    assert not missing, f"{page.name} points at missing files: {missing}"


def test_index_lists_every_page_and_every_demo():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
    for demo in sorted((ROOT / "demos").glob("[0-9][0-9]_*.py")):
        assert demo.stem in index, f"docs/index.md does not list the demo {demo.stem}"
