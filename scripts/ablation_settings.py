"""Settings of the method benchmark's protocols: everything that defines a run, recorded in its JSON output.

* ``v1`` (``bundle/docs/ablation_protocol.md``): one teacher level, R fixed across seeds, a0 and EMA decay tuned
  on seed 0, stage 2 of 128 iterations. Kept so that its recorded results (``ablation.json``) can be rerun.
* ``v2`` (``bundle/docs/ablation_protocol_v2.md``): a stage 1 in the paper's band, a teacher-quality sweep
  (three stage-1 checkpoints of rising validation AUROC), stage 2 of at least 8 passes over P, a P-dose series,
  R drawn anew per seed and hierarchical (seeds, then test images) intervals.
* ``v2-tiny``: v2's code path at a size that runs in about a minute (the quick test tier); its numbers mean nothing.
* ``v2-pilot``: the pilot that chose v2's levers, on its own generator seed, validation split only.

The values must match the protocol documents; a test checks the headline numbers.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ARM_LABELS", "ARM_VARIANT", "CLASSES", "METRICS", "PROTOCOLS", "settings_for"]

CLASSES = ("rib", "clavicle")
METRICS = ("auroc", "froc")

#: Stage-2 target variant of each arm (``control`` trains without P, so its variant never acts).
ARM_VARIANT = {
    "control": "aals",
    "plain": "plain",
    "pseudo_label": "pseudo_label",
    "symmetric": "symmetric",
    "asymmetric_fixed": "asymmetric_fixed",
    "aals": "aals",
    "oracle": "boxes",
}
ARM_LABELS = {
    "stage1": "stage 1 (R + N), calibrated",
    "control": "control: stage 2 on R + N only",
    "plain": "plain distillation",
    "pseudo_label": "hard pseudo-labels (> t)",
    "symmetric": "symmetric sharpening (t = 0.5)",
    "asymmetric_fixed": "asymmetric, fixed a = a0",
    "aals": "AALS",
    "oracle": "oracle: P with boxes",
}

_V1: dict[str, Any] = {
    "protocol": "v1",
    "document": "bundle/docs/ablation_protocol.md",
    "output": "ablation.json",
    "pool": {
        "seed": 4242,
        "num_images": 3000,
        "size": 256,
        "zoom": 2.0,
        "difficulty": 0.1,
        "prevalence": 0.3,
        "val_fraction": 0.1,
        "test_fraction": 0.3667,
        "format": "png",
    },
    "num_r": 48,
    "r_draw": "fixed",  # one derivation (seed below) shared by every training seed
    "derivation_seed": 0,
    "network": "configs/demo.json (ResNet 1-1-1-1, widths 16-128, FPN 32), 256 px input, batch 16",
    "training_seeds": [0, 1, 2],
    "stage1": {
        "epochs": 24,
        "samples_per_epoch": 512,
        "learning_rate": 0.002,
        "pos_weight": 10.0,
        "val_interval": 4,
        "lr_cosine": False,
    },
    "levels": [{"name": "final", "epoch": 24, "seeds": [0, 1, 2]}],
    "stage2": {
        "epochs": 4,
        "samples_per_epoch": 512,
        "learning_rate": 0.0005,
        "pos_weight": 1.0,
        "val_interval": 4,
        "mix": {"R": 0.25, "N": 0.5, "P": 0.25},
        "control_mix": {"R": 0.25, "N": 0.5},
        "t": 0.4,
        "a0": None,  # tuned
        "ema_decay": None,  # tuned
    },
    "tuning": {"seed": 0, "a0": [2.0, 4.0, 8.0], "ema_decay": [0.99, 0.999], "first_decay": 0.99},
    "arms": {
        "final": ["stage1", "control", "plain", "pseudo_label", "symmetric", "asymmetric_fixed", "aals", "oracle"]
    },
    "p_dose": [],
    "comparisons": {
        "final": [
            ["aals", "plain"],
            ["aals", "control"],
            ["aals", "stage1"],
            ["aals", "pseudo_label"],
            ["aals", "symmetric"],
            ["aals", "asymmetric_fixed"],
            ["oracle", "aals"],
            ["plain", "stage1"],
        ]
    },  # fmt: skip
    "froc_fp_rates": [0.1, 0.2, 0.3, 0.4],
    "bootstrap": {"resamples": 2000, "seed": 0, "level": 0.95},
    "min_test_images": 1000,
    "min_test_rib_positive": 250,
    "selection": "validation selection score (mean over classes of AUROC and FROC): stage 1 best epoch; stage 2 "
    "student or EMA teacher at the end; a0 and EMA decay on seed 0",
}

_V2: dict[str, Any] = {
    "protocol": "v2",
    "document": "bundle/docs/ablation_protocol_v2.md",
    "output": "ablation_v2.json",
    "pool": {
        "seed": 4343,  # v1's pool was 4242, v2's pilot 778, the demo 2026
        "num_images": 4282,
        "size": 256,
        "zoom": 2.0,
        "difficulty": 0.1,  # pilot
        "prevalence": 0.3,
        "val_fraction": 0.09341,  # 400 images
        "test_fraction": 0.234,  # 1,002 images (301 positive); training 2,880 (864 positive)
        "format": "png",
    },
    "num_r": 96,  # pilot; P = 864 - 96 = 768 = 8 x R
    "min_p_per_r": 8,
    "r_draw": "per_seed",  # each training seed draws its own R (derivation seed = training seed)
    "network": "configs/demo.json (ResNet 1-1-1-1, widths 16-128, FPN 32), 256 px input, batch 16",
    "training_seeds": [0, 1, 2, 3, 4],
    "stage1": {
        "epochs": 48,
        "samples_per_epoch": 512,
        "learning_rate": 0.002,
        "pos_weight": 10.0,
        "val_interval": 2,
        "lr_cosine": True,
        "lr_final_factor": 0.01,
    },
    # Teacher levels (amendment 1 of the protocol): ``val_rib_auroc`` = the first validated stage-1 checkpoint whose
    # validation rib AUROC reaches that value; ``epoch`` = the full run's best checkpoint by the validation selection
    # score. The last level is the top.
    "levels": [
        {"name": "low", "val_rib_auroc": 0.70, "seeds": [0, 1, 2]},
        {"name": "mid", "val_rib_auroc": 0.78, "seeds": [0, 1, 2]},
        {"name": "top", "epoch": 48, "seeds": [0, 1, 2, 3, 4]},
    ],
    "stage2": {
        "passes_over_p": 8,
        "samples_per_epoch": 512,
        "learning_rate": 0.0005,
        "pos_weight": 1.0,
        "mix": {"R": 0.25, "N": 0.25, "P": 0.5},
        "control_mix": {"R": 0.5, "N": 0.5},
        "t": 0.4,
        "a0": 4.0,
        "ema_decay": 0.99,
    },
    "tuning": None,
    "arms": {
        "low": ["stage1", "control", "plain", "aals"],
        "mid": ["stage1", "control", "plain", "aals"],
        "top": ["stage1", "control", "plain", "pseudo_label", "asymmetric_fixed", "aals", "oracle"],
    },
    "p_dose": [0.25, 0.5],  # AALS with this fraction of P at the top level (0 = control, 1 = aals)
    # Run order (amendments 3 and 4 of the protocol): the full plan needs about 5-6 hours of this CPU, so the steps
    # that answer the two questions come first; a budget cut trims the end of this list, then the steps it does not
    # name (seeds 3 and 4 of pseudo_label, asymmetric_fixed and the P dose).
    "priority": [
        [0, "top", "control"],
        [0, "top", "aals"],
        [0, "top", "plain"],
        [0, "top", "oracle"],
        [1, "top", "control"],
        [1, "top", "aals"],
        [1, "top", "plain"],
        [0, "mid", "control"],
        [0, "mid", "aals"],
        [0, "low", "control"],
        [0, "low", "aals"],
        [2, "top", "control"],
        [2, "top", "aals"],
        [2, "top", "plain"],
        [1, "top", "oracle"],
        [2, "top", "oracle"],
        [1, "mid", "control"],
        [1, "mid", "aals"],
        [1, "low", "control"],
        [1, "low", "aals"],
        [3, "top", "control"],
        [3, "top", "aals"],
        [3, "top", "plain"],
        [4, "top", "control"],
        [4, "top", "aals"],
        [4, "top", "plain"],
        [2, "mid", "control"],
        [2, "mid", "aals"],
        [2, "low", "control"],
        [2, "low", "aals"],
        # amendment 4: the remaining arms seed by seed, so that a budget cut leaves every arm with as many seeds as
        # the time allowed instead of some arms with five and others with none
        [0, "top", "aals_p0.25"],
        [0, "top", "aals_p0.5"],
        [0, "top", "pseudo_label"],
        [0, "top", "asymmetric_fixed"],
        [0, "mid", "plain"],
        [0, "low", "plain"],
        [1, "top", "aals_p0.25"],
        [1, "top", "aals_p0.5"],
        [1, "top", "pseudo_label"],
        [1, "top", "asymmetric_fixed"],
        [1, "mid", "plain"],
        [1, "low", "plain"],
        [3, "top", "oracle"],
        [2, "top", "aals_p0.25"],
        [2, "top", "aals_p0.5"],
        [2, "top", "pseudo_label"],
        [2, "top", "asymmetric_fixed"],
        [2, "mid", "plain"],
        [2, "low", "plain"],
        [4, "top", "oracle"],
    ],  # fmt: skip
    "comparisons": {
        "low": [["aals", "control"], ["plain", "control"], ["aals", "plain"], ["control", "stage1"]],
        "mid": [["aals", "control"], ["plain", "control"], ["aals", "plain"], ["control", "stage1"]],
        "top": [
            ["aals", "control"],
            ["plain", "control"],
            ["aals", "plain"],
            ["control", "stage1"],
            ["aals", "stage1"],
            ["aals", "pseudo_label"],
            ["aals", "asymmetric_fixed"],
            ["oracle", "aals"],
            ["oracle", "control"],
            ["aals_p0.25", "control"],
            ["aals_p0.5", "control"],
        ],
    },  # fmt: skip
    "froc_fp_rates": [0.1, 0.2, 0.3, 0.4],
    "bootstrap": {"resamples": 2000, "seed": 0, "level": 0.95},
    "min_test_images": 1000,
    "min_test_rib_positive": 250,
    "band": {"lower": 0.80, "upper": 0.90, "floor": 0.78},
    "selection": "validation selection score (mean over classes of AUROC and FROC): stage 1 best checkpoint up to "
    "each level's epoch; stage 2 student or EMA teacher at the end. Levers and stage-2 length chosen in the pilot.",
}


def _tiny(base: dict[str, Any]) -> dict[str, Any]:
    """v2's code path at test size: 96 px phantoms, 64 px input, a tiny network, two seeds, 1-2 epochs."""
    tiny = copy.deepcopy(base)
    tiny.update(
        protocol="v2-tiny",
        output="ablation_v2_tiny.json",
        num_r=2,
        training_seeds=[0, 1],
        network="tiny test network (64 px, widths 8-64)",
        min_test_images=0,
        min_test_rib_positive=0,
        p_dose=[0.5],
    )
    tiny["pool"].update(seed=3, num_images=72, size=96, difficulty=0.0, prevalence=0.5, val_fraction=0.25,
                        test_fraction=0.25)  # fmt: skip
    tiny["stage1"].update(epochs=2, samples_per_epoch=8, val_interval=1)
    tiny["levels"] = [{"name": "low", "val_rib_auroc": 0.0, "seeds": [0]}, {"name": "top", "epoch": 2, "seeds": [0, 1]}]
    tiny["arms"] = {"low": ["stage1", "control", "aals"], "top": ["stage1", "control", "plain", "aals", "oracle"]}
    tiny["comparisons"] = {
        "low": [["aals", "control"], ["control", "stage1"]],
        "top": [["aals", "control"], ["plain", "control"], ["oracle", "aals"], ["aals_p0.5", "control"]],
    }
    tiny["priority"] = [[0, "top", "aals"], [0, "low", "control"], [1, "top", "control"]]
    tiny["stage2"].update(passes_over_p=1, samples_per_epoch=8)
    tiny["bootstrap"]["resamples"] = 50
    #: bundle overrides that shrink the input, and with the light network the network too (as tests/bundle_runs.py's
    #: LIGHT); with ``--network default`` the bundle's ResNet-50 + FPN runs at this input size
    tiny["bundle_overrides"] = {"image_size": 64, "batch_size": 4, "num_workers": 0}
    tiny["light_network_overrides"] = {
        "network_def#block": "basic", "network_def#layers": [1, 1, 1, 1], "network_def#widths": [8, 16, 32, 64],
        "network_def#fpn_channels": 16,
    }  # fmt: skip
    return tiny


PROTOCOLS: dict[str, dict[str, Any]] = {"v1": _V1, "v2": _V2, "v2-tiny": _tiny(_V2)}


def settings_for(protocol: str) -> dict[str, Any]:
    """A deep copy of a protocol's settings (callers may adjust seeds without touching the table)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}.")
    return copy.deepcopy(PROTOCOLS[protocol])
