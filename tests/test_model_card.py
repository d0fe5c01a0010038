"""The model card (bundle/docs/README.md) follows the Model Zoo layout, and the data licence file says what it must."""

from __future__ import annotations

import re

from conftest import BUNDLE_ROOT, REPO_ROOT

#: Sections of a Model Zoo model card, in order.
SECTIONS = [
    "Overview",
    "Data",
    "Preprocessing",
    "Training configuration",
    "Input and output",
    "Performance",
    "Commands",
    "References",
    "License",
]


def test_model_card_has_the_zoo_sections_in_order_and_a_workflow_figure():
    text = (BUNDLE_ROOT / "docs" / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert [h for h in headings if h in SECTIONS] == SECTIONS
    overview = text.split("## Overview", 1)[1].split("\n## ", 1)[0]
    assert "```" in overview and "stage 1" in overview and "stage 2" in overview  # the workflow figure


def test_model_card_performance_numbers_come_from_the_benchmark_files():
    text = (BUNDLE_ROOT / "docs" / "README.md").read_text()
    performance = text.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "scripts/benchmark_ablation.py" in performance and "ablation.json" in performance


def test_data_license_covers_synthetic_and_real_data():
    text = (BUNDLE_ROOT / "docs" / "data_license.txt").read_text().lower()
    assert "synthetic" in text and "real" in text


def test_readme_layout_names_every_module_and_tool():
    """The README's layout section lists every Python module of the bundle and of the phantom package, and every
    command-line tool, so that the tree and its description stay in step."""
    readme = (REPO_ROOT / "README.md").read_text()
    layout = readme.split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    files = [
        *(BUNDLE_ROOT / "scripts").rglob("*.py"),
        *(REPO_ROOT / "cxr_phantom").glob("*.py"),
        *(REPO_ROOT / "scripts").glob("*.py"),
        *(REPO_ROOT / "scripts").glob("*.sh"),
    ]
    missing = sorted(str(f.relative_to(REPO_ROOT)) for f in files if f.name != "__init__.py" and f.name not in layout)
    assert not missing, f"README's layout section does not mention {missing}"
