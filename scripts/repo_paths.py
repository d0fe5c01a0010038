"""Where the repository's parts are, and the one place that puts its packages on the import path.

The command-line tools run as ``python scripts/<tool>.py``, so Python puts only ``scripts/`` on ``sys.path``.
Importing this module (``from repo_paths import BUNDLE_ROOT, REPO_ROOT``) adds the other import roots:

* ``bundle/``: the bundle's ``scripts`` package, imported as the bundle configs import it (``scripts.evaluate.froc``);
* the repository root: the phantom package ``cxr_phantom``;
* ``fl/``: the federated-training package ``cxr_fl`` (NVIDIA FLARE jobs; its FLARE parts need requirements-fl.txt).

``scripts/`` itself has no ``__init__.py``: a regular package wins over a namespace directory whatever the order of
``sys.path``, so the name ``scripts`` always imports the bundle's package. The tests use the same module
(``tests/conftest.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_ROOT = REPO_ROOT / "bundle"
FL_ROOT = REPO_ROOT / "fl"

for _root in (BUNDLE_ROOT, REPO_ROOT, FL_ROOT):
    if str(_root) not in sys.path:
        sys.path.insert(0, str(_root))
