"""What AALS needs in order to act, measured with a teacher (a calibrated stage-1 model) before stage 2 starts.

AALS changes a target only where the teacher's map rises above ``t`` somewhere (values below ``t`` are kept by the
``max``), and it raises most in ``(t, 0.8)``. So, per teacher, on the seed's P images (positive classes) and the
validation split:

* ``p_in_band`` / ``p_above_t``: share of (P image, positive class) maps whose maximum lies in ``(t, 0.8)`` / above
  ``t``; ``p_max_quartiles`` and ``p_target_max_quartiles``: quartiles of those maxima before and after AALS
  sharpening (with the protocol's ``a0``);
* ``val_negative_above_t_<class>``: share of validation images negative for a class whose maximum exceeds ``t``
  (what sharpening would raise if P held such images);
* ``val_<class>_auroc``: the teacher's validation AUROC, the level's measure of teacher quality.

The network, weights and validation preprocessing come from the bundle's own config (the same files and overrides
as the benchmark's runs), so nothing here re-implements them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import repo_paths  # noqa: F401  (puts the bundle's scripts package on the import path)

import numpy as np
import torch
from bundle_command import CONFIGS
from monai.bundle import ConfigParser

from scripts.data.datalist import load_datalist
from scripts.distill.aals import load_weights, sharpen
from scripts.evaluate.class_metrics import class_auroc

__all__ = ["preconditions"]


def preconditions(
    configs: list[str],
    overrides: dict[str, Any],
    data: Path,
    datalist: Path,
    checkpoint: Path,
    t: float,
    a0: float,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Measure the shares and quartiles above for the teacher ``checkpoint`` (see the module docstring).

    Args:
        configs: bundle config file names (in ``bundle/configs``) that define the network and preprocessing.
        overrides: bundle overrides applied on top (e.g. a smaller test network); ``device`` is honoured.
        data: the pool folder (``dataset_dir``); ``datalist``: the seed's semi-supervised datalist.
        checkpoint: the calibrated teacher; ``t``, ``a0``: AALS's fixed point and strength.
    """
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in configs])
    for key, value in overrides.items():
        parser[key] = value
    parser["dataset_dir"] = str(data)
    parser["datalist"] = str(datalist)
    device = torch.device(parser.get_parsed_content("device"))
    network = load_weights(parser.get_parsed_content("network_def"), str(checkpoint)).to(device).eval()
    transform = parser.get_parsed_content("validate#preprocessing")
    classes = list(parser.get_parsed_content("classes"))

    def maps_maxima(items: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        raw, sharpened = [], []
        for start in range(0, len(items), batch_size):
            batch = torch.stack([transform(dict(item))["image"] for item in items[start : start + batch_size]])
            with torch.no_grad():
                prob = torch.sigmoid(network(batch.to(device)).float())
            raw.append(prob.amax(dim=(-2, -1)).cpu().numpy())
            sharpened.append(sharpen(prob, a0, t).amax(dim=(-2, -1)).cpu().numpy())
        return np.concatenate(raw), np.concatenate(sharpened)

    p_items = load_datalist(datalist, "training", subsets=["P"], classes=classes)
    p_max, p_target = maps_maxima(p_items)
    p_labels = np.stack([item["image_label"] for item in p_items]) > 0
    v_items = load_datalist(datalist, "validation", classes=classes)
    v_max, _ = maps_maxima(v_items)
    v_labels = np.stack([item["image_label"] for item in v_items]) > 0
    positive, target = p_max[p_labels], p_target[p_labels]
    record: dict[str, Any] = {
        "t": t,
        "a0": a0,
        "num_p_pairs": int(positive.size),
        "p_in_band": float(((positive > t) & (positive < 0.8)).mean()),
        "p_above_t": float((positive > t).mean()),
        "p_max_quartiles": np.percentile(positive, [25, 50, 75]).tolist(),
        "p_target_max_quartiles": np.percentile(target, [25, 50, 75]).tolist(),
    }
    for index, name in enumerate(classes):
        negatives = v_max[~v_labels[:, index], index]
        record[f"val_negative_above_t_{name}"] = float((negatives > t).mean()) if negatives.size else float("nan")
        record[f"val_{name}_auroc"] = class_auroc(v_max[:, index], v_labels[:, index].astype(np.float32))
    return record
