"""The bundle's package has no import cycles, between modules or between its pipeline-stage subpackages.

The graph is read from the source (``tests/import_graph.py``): lazy imports inside functions and imports under
``if TYPE_CHECKING:`` count, so a cycle cannot hide behind either.
"""

from __future__ import annotations

import ast

from conftest import BUNDLE_ROOT, REPO_ROOT
from import_graph import find_cycle, import_graph, subpackage_graph

PACKAGE_DIR = BUNDLE_ROOT / "scripts"
#: The pipeline-stage subpackages of ``bundle/scripts`` (README "How it works", ``scripts/__init__.py``).
SUBPACKAGES = {"utils", "data", "model", "evaluate", "distill", "deliver"}


def test_modules_have_no_import_cycle():
    cycle = find_cycle(import_graph(PACKAGE_DIR))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_subpackages_form_a_dag():
    graph = subpackage_graph(import_graph(PACKAGE_DIR))
    cycle = find_cycle(graph)
    assert cycle is None, "subpackage cycle: " + " -> ".join(cycle)
    assert "scripts" not in {t for targets in graph.values() for t in targets}, "a module imports the top package"


def test_every_module_lives_in_a_stage_subpackage():
    folders = {path.parent.name for path in PACKAGE_DIR.rglob("*.py") if path.parent != PACKAGE_DIR}
    assert folders == SUBPACKAGES
    assert [path.name for path in PACKAGE_DIR.glob("*.py")] == ["__init__.py"]
    assert all((PACKAGE_DIR / name / "__init__.py").is_file() for name in SUBPACKAGES)


def test_the_graph_sees_lazy_and_type_checking_imports():
    """The reader is not vacuous: it finds a module-level, a function-level and a ``TYPE_CHECKING`` import."""
    graph = import_graph(PACKAGE_DIR)
    assert "scripts.evaluate.overlays" in graph["scripts.deliver.writers"]  # module level
    assert "scripts.evaluate.report_metrics" in graph["scripts.evaluate.operating_point"]  # under TYPE_CHECKING
    assert "scripts.data.loading" in graph["scripts.evaluate.report_crops"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_relative_and_package_imports_resolve(tmp_path):
    package = tmp_path / "scripts"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("from .loading import load\n")
    (package / "data" / "loading.py").write_text("def f():\n    from ..data import transforms\n")
    (package / "data" / "transforms.py").write_text("from scripts.data import loading\nimport scripts.data\n")
    graph = import_graph(package)
    assert graph["scripts.data"] == {"scripts.data.loading"}
    assert graph["scripts.data.loading"] == {"scripts.data.transforms"}
    assert graph["scripts.data.transforms"] == {"scripts.data.loading", "scripts.data"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and {"scripts.data.loading", "scripts.data.transforms"} <= set(cycle)


def test_only_repo_paths_puts_the_bundle_on_the_import_path():
    """Command-line tools reach the bundle package through ``scripts/repo_paths.py``; the only other ``sys.path``
    edit is the MONAI Label check loading the sample app's folder (``scripts/monailabel_checks.py``)."""
    allowed = {"repo_paths.py", "monailabel_checks.py"}
    editing = set()
    for path in sorted((REPO_ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if isinstance(node, ast.Assign | ast.AugAssign):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Attribute) and target.attr == "path" and getattr(target.value, "id", "") == "sys":
                editing.add(path.name)
    assert editing <= allowed, f"sys.path edited by {sorted(editing - allowed)}"
    assert "repo_paths.py" in editing  # the check sees an edit where there is one
