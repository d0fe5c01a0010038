"""Shared pytest setup: the import paths and the repository's folders come from ``scripts/repo_paths.py``.

``pyproject.toml`` puts ``scripts/`` on ``sys.path`` (pytest's ``pythonpath``); importing ``repo_paths`` adds
``bundle/`` (the bundle's ``scripts`` package) and the repository root (``cxr_phantom``), as for the command-line
tools.
"""

from repo_paths import BUNDLE_ROOT, REPO_ROOT

__all__ = ["BUNDLE_ROOT", "REPO_ROOT"]
