"""Batched training augmentation: same geometry as MONAI's transforms, targets follow the image, same statistics."""

from __future__ import annotations

from repo_paths import BUNDLE_ROOT

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import (
    Affine,
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
)

from scripts.data.batch_augmentation import BatchAugmentation, BatchAugmentationHandler, affine_matrices
from scripts.data.transforms import DownsampleMaskd


def _box_batch(batch: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that are 1 inside random boxes and 0 elsewhere, and the boxes' 2-class masks (uint8)."""
    rng = np.random.default_rng(seed)
    mask = torch.zeros((batch, 2, size, size), dtype=torch.uint8)
    for index in range(batch):
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.integers(8, size - 24, size=2)
            w, h = rng.integers(6, 16, size=2)
            mask[index, int(rng.integers(0, 2)), x : x + w, y : y + h] = 1
    image = mask.amax(1, keepdim=True).to(torch.float16)
    return image, mask


@pytest.mark.parametrize(
    ("rotate", "translate", "scale"),
    [(0.1, (5.0, -3.0), 1.08), (-0.12, (0.0, 7.5), 0.93), (0.0, (-12.8, 12.8), 1.1)],
)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_warp_equals_monai_affine(rotate, translate, scale, mode):
    """Same matrix, same output as MONAI's ``Affine`` (what ``RandAffined`` applies), on a non-square image."""
    image = torch.rand(2, 64, 48, generator=torch.Generator().manual_seed(0))
    reference = Affine(
        rotate_params=rotate, translate_params=translate, scale_params=[scale], padding_mode="zeros", mode=mode,
        image_only=True,
    )(image)  # fmt: skip
    augmentation = BatchAugmentation()
    matrix = affine_matrices(torch.tensor([rotate]), torch.tensor([translate]), torch.tensor([[scale]]))
    grid = augmentation.sampling_grid(augmentation.centred(matrix, image.shape[1:]), image.shape[1:])
    warped = torch.nn.functional.grid_sample(image[None], grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    assert torch.allclose(warped, torch.as_tensor(reference), atol=1e-4)


def test_nothing_drawn_leaves_the_image_and_pools_the_mask():
    image, mask = _box_batch(6, 64, seed=1)
    augmentation = BatchAugmentation(affine_prob=0, flip_prob=0, contrast_prob=0, noise_prob=0, stride=4)
    out_image, out_mask = augmentation(image, mask)
    assert out_image.dtype == out_mask.dtype == torch.float32
    assert torch.equal(out_image, image.float())
    assert torch.equal(out_mask, torch.nn.functional.max_pool2d(mask.float(), 4, 4))
    assert out_mask.shape == (6, 2, 16, 16)
    assert image.dtype == torch.float16  # the input (a cached item in training) is not modified


def test_boxes_and_targets_follow_the_image():
    """Every geometric transform moves image and mask together: positive target cells are where the image is."""
    torch.manual_seed(3)
    image, mask = _box_batch(64, 96, seed=2)
    augmentation = BatchAugmentation(affine_prob=1.0, flip_prob=0.5, noise_prob=0.0, rotate_range=0.3,
                                     translate_range=10.0, scale_range=0.2, stride=4)  # fmt: skip
    out_image, target = augmentation(image, mask)
    assert (target.sum(dim=(1, 2, 3)) > 0).sum() > 40  # most images keep boxes inside the field of view
    # The image is 1 in the boxes: where it is (after bilinear resampling and gamma, which keeps 0 and 1),
    # the pooled target must be too, and the other way round, up to the interpolated edges.
    from_image = torch.nn.functional.max_pool2d((out_image > 0.5).float(), 4, 4)[:, 0]
    from_target = target.amax(1)
    overlap = (from_image * from_target).sum() / torch.maximum(from_image, from_target).sum()
    assert overlap > 0.85
    # Per class, a positive cell never appears where the image is empty around it.
    dilated = torch.nn.functional.max_pool2d(from_image[:, None], 3, 1, padding=1)[:, 0]
    assert torch.all(from_target <= dilated)


def _monai_chain(augmentation: BatchAugmentation, size: int) -> Compose:
    """The per-sample MONAI transforms that ``augmentation`` stands for, with its parameter ranges."""
    translate = augmentation.translate_range.tolist()
    return Compose(
        [
            RandAffined(
                keys=["image", "label"], prob=augmentation.affine_prob, rotate_range=augmentation.rotate_range,
                scale_range=augmentation.scale_range, translate_range=translate, mode=["bilinear", "nearest"],
                padding_mode="zeros",
            ),
            RandFlipd(keys=["image", "label"], prob=augmentation.flip_prob, spatial_axis=0),
            RandAdjustContrastd(keys="image", prob=augmentation.contrast_prob, gamma=augmentation.gamma),
            RandGaussianNoised(keys="image", prob=augmentation.noise_prob, std=augmentation.noise_std),
            DownsampleMaskd(keys="label", stride=augmentation.stride),
        ]
    ).set_random_state(seed=5)  # fmt: skip


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs)."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def _summaries(image: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image statistics that the augmentations move: intensity, padding, noise, target size and position."""
    flat = image.flatten(1)
    cells = target.amax(1)
    coords = torch.arange(cells.shape[1], dtype=torch.float32)
    mass = cells.sum(dim=(1, 2)).clamp_min(1)
    summaries = {
        "mean": flat.mean(1).numpy(),
        "std": flat.std(1).numpy(),
        "zero_fraction": (flat.abs() < 1e-6).float().mean(1).numpy(),
        "target_cells": cells.sum(dim=(1, 2)).numpy(),
        "target_x": ((cells.sum(2) * coords).sum(1) / mass).numpy(),
        "left_half_mean": image[:, :, : image.shape[2] // 2].flatten(1).mean(1).numpy(),
        "roughness": (image[:, :, 1:] - image[:, :, :-1]).abs().flatten(1).median(1).values.numpy(),  # noise
    }
    # Rounded: an untouched image gives one exact value, which float noise (1e-7) of a resampled flip would
    # split into near-ties that the KS statistic counts as a difference.
    return {name: np.round(values, 5) for name, values in summaries.items()}


@pytest.mark.slow
def test_statistics_match_the_per_sample_monai_chain():
    """Same input, many draws: the batched and the per-sample MONAI augmentation give the same distributions.

    Two-sample Kolmogorov-Smirnov on per-image summaries; with 1500 draws a side the critical value at
    alpha = 0.001 is 1.95 * sqrt(2 / 1500) = 0.071. A wrong range, probability or axis moves these far past it.
    """
    draws, size = 1500, 64
    augmentation = BatchAugmentation(translate_range=0.05 * size, stride=4)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = (0.2 + 0.6 * yy * (1 - 0.5 * xx))[None]  # asymmetric, so flips and shifts change the summaries
    mask = torch.zeros(2, size, size)
    mask[0, 6:20, 10:22] = 1
    chain = _monai_chain(augmentation, size)
    reference = [chain({"image": base.clone(), "label": mask.clone()}) for _ in range(draws)]
    ref_image = torch.stack([torch.as_tensor(item["image"]) for item in reference])
    ref_target = torch.stack([torch.as_tensor(item["label"]) for item in reference])
    torch.manual_seed(5)
    batched = [augmentation(base.expand(16, -1, -1, -1), mask.expand(16, -1, -1, -1)) for _ in range(draws // 16 + 1)]
    new_image = torch.cat([image for image, _ in batched])[:draws]
    new_target = torch.cat([target for _, target in batched])[:draws]
    reference_summary, batched_summary = _summaries(ref_image, ref_target), _summaries(new_image, new_target)
    gaps = {name: _ks_statistic(reference_summary[name], batched_summary[name]) for name in reference_summary}
    assert max(gaps.values()) < 1.95 * np.sqrt(2 / draws), gaps


def test_train_config_augments_first_on_the_training_device():
    """The handler is the first training handler, so the AALS handler sees augmented images; ranges as before."""
    config = ConfigParser()
    config.read_config(BUNDLE_ROOT / "configs" / "train.json")
    handlers = config.get("train#handlers")
    assert handlers[0]["_target_"] == "scripts.data.batch_augmentation.BatchAugmentationHandler"
    config.update({"image_size": 256})
    augmentation = config.get_parsed_content("train#augmentation")
    assert augmentation.translate_range.tolist() == [12.8, 12.8]
    assert (augmentation.rotate_range, augmentation.scale_range, augmentation.affine_prob) == (0.12, 0.1, 0.7)


def test_handler_replaces_image_and_label_in_the_engine_batch():
    image, mask = _box_batch(4, 48, seed=4)
    state = type("State", (), {"batch": {"image": image, "label": mask, "subset": ["R", "N", "P", "R"]}})()
    engine = type("Engine", (), {"state": state})()
    BatchAugmentationHandler(BatchAugmentation(stride=4), device="cpu")(engine)
    assert engine.state.batch["image"].shape == (4, 1, 48, 48)
    assert engine.state.batch["label"].shape == (4, 2, 12, 12)
    assert engine.state.batch["label"].dtype == torch.float32
    assert engine.state.batch["subset"] == ["R", "N", "P", "R"]
