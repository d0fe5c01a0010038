"""Shared pytest setup: import paths, and the phantom set and stage-1 model that several test modules use.

``pyproject.toml`` puts ``scripts/`` on ``sys.path`` (pytest's ``pythonpath``); importing ``repo_paths`` adds
``bundle/`` (the bundle's ``scripts`` package) and the repository root (``cxr_phantom``), as for the command-line
tools. The fixtures below are made once per test session, on first use.
"""

from __future__ import annotations

from pathlib import Path

from repo_paths import BUNDLE_ROOT, REPO_ROOT

import pytest

__all__ = ["BUNDLE_ROOT", "REPO_ROOT"]


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared phantom set: 32 images of 96 px at difficulty 0 (boxes easy to learn), half positive, training
    R/P/N (R half of the positives), 8 validation and 8 test images; returns the folder holding ``datalist.json``."""
    from cxr_phantom import generate_dataset

    root = tmp_path_factory.mktemp("phantoms")
    generate_dataset(
        root, num_images=32, size=96, seed=3, prevalence=0.5, r_fraction=0.5, val_fraction=0.25,
        test_fraction=0.25, difficulty=0.0, progress=False,
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def stage1(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stage-1 model trained on :func:`phantoms` (one epoch of 8 samples, light network, ``training`` run id);
    returns its checkpoint folder (``model.pt``, ``checkpoint_epoch=1.pt``, ``runs/``)."""
    from bundle_runs import run_bundle

    models = tmp_path_factory.mktemp("stage1")
    run_bundle(
        "training", ["train.json"], "--dataset_dir", str(phantoms), "--ckpt_dir", str(models),
        "--output_dir", str(models / "runs"), "--train#trainer#max_epochs", "1", "--train#samples_per_epoch", "8",
    )  # fmt: skip
    return models
