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


def test_code_layout_names_every_module_and_tool():
    """The guide's code layout page lists every Python module of the bundle and of the phantom package, and every
    command-line tool, so that the tree and its description stay in step."""
    layout = (REPO_ROOT / "docs" / "code-layout.md").read_text().split("## Repository layout", 1)[1]
    files = [
        *(BUNDLE_ROOT / "scripts").rglob("*.py"),
        *(REPO_ROOT / "cxr_phantom").glob("*.py"),
        *(REPO_ROOT / "scripts").glob("*.py"),
        *(REPO_ROOT / "scripts").glob("*.sh"),
        *(REPO_ROOT / "fl").rglob("*.py"),
        *(REPO_ROOT / "fl").glob("*.sh"),
    ]
    missing = sorted(str(f.relative_to(REPO_ROOT)) for f in files if f.name != "__init__.py" and f.name not in layout)
    assert not missing, f"docs/code-layout.md does not mention {missing}"
    folders = {path.parent.name for path in (BUNDLE_ROOT / "scripts").rglob("*.py")} - {"scripts"}
    assert all(f"{folder}/" in layout for folder in folders)


PATENT = ["us", "11,823,381 b2", "ping an technology (shenzhen)", "2023-11-21", "apache-2.0",
          "no rights under third-party patents", "research use", "commercial use", "not legal advice"]  # fmt: skip


def _flat(text: str) -> str:
    """Lower case, block quotes and line breaks removed."""
    return " ".join(text.replace(">", " ").split()).lower()


def test_readme_is_a_front_page_with_the_notices():
    """README: about 200 lines; research-use and patent notices near the top and again under Known limitations;
    the architecture diagram names the bundle's stage folders."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    top = _flat(readme.split("\n## ", 1)[0])
    limitations = _flat(readme.split("## Known limitations", 1)[1].split("\n## ", 1)[0])
    for section in (top, limitations):
        assert all(word in section for word in PATENT), [w for w in PATENT if w not in section]
    assert "research software" in top and "not a medical device" in top
    diagram = readme.split("## How it works", 1)[1].split("```", 2)[1]
    folders = sorted(p.name for p in (BUNDLE_ROOT / "scripts").iterdir() if (p / "__init__.py").is_file())
    assert all(f"bundle/scripts/{folder}/" in diagram for folder in folders), folders


def test_model_card_has_the_patent_notice():
    overview = _flat((BUNDLE_ROOT / "docs" / "README.md").read_text().split("## Overview", 1)[1].split("\n## ", 1)[0])
    assert all(word in overview for word in PATENT), [w for w in PATENT if w not in overview]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_and_guide_links_resolve():
    """Every relative link of README.md and docs/*.md names an existing file, and its #anchor a heading there."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 6
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.MULTILINE)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target}")
    assert not broken, broken
    guide = (REPO_ROOT / "README.md").read_text()
    assert all(f"docs/{page.name}" in guide for page in pages[1:] if page.name != "README.md")
