"""The model card (bundle/docs/README.md) follows the Model Zoo layout, and the data licence file says what it must."""

from __future__ import annotations

import re

from conftest import BUNDLE_ROOT

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
