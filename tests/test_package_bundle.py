"""Packaging the bundle for the Model Zoo: deterministic, clean, large weights referenced not embedded."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import zipfile

from conftest import BUNDLE_ROOT, REPO_ROOT
from import_graph import import_graph, module_names

spec = importlib.util.spec_from_file_location("package_bundle", REPO_ROOT / "scripts" / "package_bundle.py")
package_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(package_bundle)


def _bundle_copy(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE_ROOT, copy, ignore=shutil.ignore_patterns("runs", "eval", "models"))
    (copy / "models").mkdir()
    (copy / "scripts" / "__pycache__").mkdir(exist_ok=True)
    (copy / "scripts" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    return copy


def test_archive_is_deterministic_and_clean(tmp_path):
    bundle = _bundle_copy(tmp_path)
    (bundle / "models" / "model.pt").write_bytes(b"small weights")
    first = package_bundle.package(bundle, tmp_path / "a")
    second = package_bundle.package(bundle, tmp_path / "b")
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert first.name == f"cxr_rib_fracture_aals_v{version}.zip"
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    root = "cxr_rib_fracture_aals/"
    for required in ["LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md",
                     "docs/data_license.txt", "models/model.pt", "scripts/model/network.py"]:  # fmt: skip
        assert root + required in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in zipfile.ZipFile(first).infolist())


def test_large_weights_are_listed_in_large_files_yml(tmp_path, monkeypatch):
    bundle = _bundle_copy(tmp_path)
    (bundle / "models" / "model.pt").write_bytes(b"\x01" * 2048)
    monkeypatch.setattr(package_bundle, "LARGE_FILE_BYTES", 1024)
    archive = package_bundle.package(bundle, tmp_path / "out")
    with zipfile.ZipFile(archive) as zf:
        assert "cxr_rib_fracture_aals/models/model.pt" not in zf.namelist()
        listing = zf.read("cxr_rib_fracture_aals/large_files.yml").decode()
    assert 'path: "models/model.pt"' in listing and "size_bytes: 2048" in listing and "sha256" in listing


def test_bundle_ships_only_modules_the_configs_use():
    """Every module in bundle/scripts is named by a config (``scripts.<stage>.<module>``) or imported by one that is;
    the phantom generator, which only the demo, tests and benchmarks use, lives outside (``cxr_phantom``)."""
    graph = import_graph(BUNDLE_ROOT / "scripts")
    configs = " ".join(path.read_text() for path in (BUNDLE_ROOT / "configs").glob("*.json"))
    named = {match for match in re.findall(r"\bscripts(?:\.\w+)+", configs)}
    used = {module for module in graph if any(n == module or n.startswith(module + ".") for n in named)}
    pending = sorted(used)
    while pending:
        for module in graph[pending.pop()] - used:
            used.add(module)
            pending.append(module)
    packages = {module for module, path in module_names(BUNDLE_ROOT / "scripts").items() if path.name == "__init__.py"}
    shipped = set(graph) - packages
    assert not shipped - used, f"not used by any config: {sorted(shipped - used)}"
    assert not (BUNDLE_ROOT / "scripts" / "synthetic.py").exists()
