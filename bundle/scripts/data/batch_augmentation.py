"""Training augmentation applied to a whole batch as tensor operations, on the training device.

The per-sample MONAI chain this replaces (``RandAffined`` -> ``RandFlipd`` -> ``RandAdjustContrastd`` ->
``RandGaussianNoised`` -> ``DownsampleMaskd``) ran once per image in data-loader worker processes, which on a
2-core machine take their CPU time from the network's own threads, and on a GPU leave the device waiting for the
CPU. MONAI's random transforms draw one set of parameters per call and work on one image; it has no batched
random affine. So the parameters are drawn here, per image, from the *same distributions* as those transforms
(see :class:`BatchAugmentation` for the exact correspondence, checked by ``tests/test_batch_augmentation.py``),
and the resampling is that of MONAI's batched ``AffineTransform`` layer (MONAI's ``to_norm_affine``, then torch's
``affine_grid`` and ``grid_sample``), with one sampling grid shared by each image and its mask.

Draws use torch's global generator (CPU for the parameters, the batch's device for the noise), which
``scripts.utils.checkpoints.RandomStates`` saves with every checkpoint: a resumed run augments as the uninterrupted
run would have.

Geometry follows the bundle's convention: images ``(B, C, W, H)``, first spatial axis = x = column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from monai.networks.utils import to_norm_affine
from monai.transforms.utils import create_rotate, create_scale, create_translate

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BatchAugmentation", "BatchAugmentationHandler", "affine_matrices"]


def affine_matrices(
    rotate: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pull-direction affine matrices ``(B, 3, 3)``: output pixel (centred coordinates) -> input pixel.

    Composed as MONAI's ``AffineGrid`` composes them: ``rotate @ translate @ scale`` (no shear), with
    ``create_scale`` padding a single scale factor with 1 for the second axis, as ``RandAffine`` does for a
    scalar ``scale_range``.

    Args:
        rotate: ``(B,)`` angles in radians.
        translate: ``(B, 2)`` shifts in pixels along (x, y).
        scale: ``(B, S)`` scale factors, ``S`` = 1 (first axis only) or 2.
    """
    matrices = []
    for angle, shift, factors in zip(rotate.tolist(), translate.tolist(), scale.tolist(), strict=True):
        matrix = create_rotate(2, angle, backend="torch") @ create_translate(2, shift, backend="torch")
        matrices.append(matrix @ create_scale(2, factors, backend="torch"))
    return torch.stack(matrices).to(dtype)


class BatchAugmentation:
    """Random affine, flip, gamma contrast and Gaussian noise for a batch of images and their box masks.

    Each image draws its own parameters, from the distributions of the MONAI transforms named below (the
    parameter names are theirs):

    * ``RandAffined(prob=affine_prob, rotate_range, scale_range, translate_range, padding_mode="zeros")``:
      angle ``U(-rotate_range, rotate_range)``; scale factor ``1 + U(-scale_range, scale_range)`` of the first
      spatial axis only (MONAI pads a scalar ``scale_range`` with factor 1); shift ``U(-t, t)`` pixels per axis;
      about the image centre. Image bilinear, masks nearest-neighbour;
    * ``RandFlipd(prob=flip_prob, spatial_axis=0)``;
    * ``RandAdjustContrastd(prob=contrast_prob, gamma=gamma)``: ``((x - min) / (range + 1e-7)) ** g * range + min``
      per image, ``g ~ U(gamma)``;
    * ``RandGaussianNoised(prob=noise_prob, std=noise_std)``: per image ``sigma ~ U(0, noise_std)``, then
      ``N(0, sigma)`` per pixel;
    * ``DownsampleMaskd(stride)``: masks max-pooled to the heatmap grid after the geometric transforms.

    Args:
        rotate_range: maximum rotation, radians.
        scale_range: maximum relative scale change of the first spatial axis.
        translate_range: maximum shift per axis ``(x, y)``, pixels (a number: both axes).
        affine_prob, flip_prob, contrast_prob, noise_prob: probabilities of each transform, per image.
        gamma: ``(low, high)`` range of the contrast exponent.
        noise_std: upper bound of the noise standard deviation, image intensity units.
        stride: heatmap stride: the masks come back ``stride`` times smaller.
    """

    def __init__(
        self,
        rotate_range: float = 0.12,
        scale_range: float = 0.1,
        translate_range: float | Sequence[float] = 12.8,
        affine_prob: float = 0.7,
        flip_prob: float = 0.5,
        contrast_prob: float = 0.3,
        gamma: Sequence[float] = (0.7, 1.5),
        noise_prob: float = 0.2,
        noise_std: float = 0.02,
        stride: int = 4,
    ) -> None:
        translate = [float(translate_range)] * 2 if isinstance(translate_range, (int, float)) else translate_range
        if len(translate) != 2 or len(gamma) != 2 or min(gamma) <= 0:
            raise ValueError(f"need translate_range of 2 values and 2 positive gamma values, got {translate}, {gamma}.")
        self.rotate_range, self.scale_range = float(rotate_range), float(scale_range)
        self.translate_range = torch.tensor([float(v) for v in translate], dtype=torch.float64)
        self.affine_prob, self.flip_prob = float(affine_prob), float(flip_prob)
        self.contrast_prob, self.noise_prob = float(contrast_prob), float(noise_prob)
        self.gamma = (float(min(gamma)), float(max(gamma)))
        self.noise_std, self.stride = float(noise_std), int(stride)

    @staticmethod
    def _uniform(shape: Sequence[int], low: float | torch.Tensor, high: float | torch.Tensor) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, dtype=torch.float64)

    @staticmethod
    def centred(matrices: torch.Tensor, spatial_size: Sequence[int]) -> torch.Tensor:
        """Matrices about the image centre ``(B, 3, 3)`` -> the same maps on pixel indices ``(B, 3, 3)``."""
        centre = [(size - 1) / 2.0 for size in spatial_size]
        to_index = create_translate(2, centre, backend="torch").to(matrices)
        from_index = create_translate(2, [-c for c in centre], backend="torch").to(matrices)
        return to_index @ matrices @ from_index

    @staticmethod
    def sampling_grid(matrices: torch.Tensor, spatial_size: Sequence[int]) -> torch.Tensor:
        """``grid_sample`` grids ``(B, *spatial_size, 2)`` of pixel-index matrices ``(B, 3, 3)`` (output -> input).

        What MONAI's ``AffineTransform`` layer does (``normalized=False``, ``align_corners=False``,
        ``reverse_indexing=True``) up to its grid, so that one grid serves both the image and its mask.
        """
        size = [int(v) for v in spatial_size]
        theta = to_norm_affine(matrices.float(), size, size, align_corners=False, zero_centered=False)
        theta = theta[:, [1, 0, 2]][:, :, [1, 0, 2]]  # (x, y) = tensor dims (2, 3) -> grid_sample's (dim 3, dim 2)
        return F.affine_grid(theta[:, :2], [theta.shape[0], 1, *size], align_corners=False)

    def draw_affine(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(applied (B,) bool, matrices (B, 3, 3))``; an image that is not transformed gets the identity."""
        applied = torch.rand(batch_size) < self.affine_prob
        rotate = self._uniform([batch_size], -self.rotate_range, self.rotate_range)
        translate = self._uniform([batch_size, 2], -self.translate_range, self.translate_range)
        scale = 1.0 + self._uniform([batch_size, 1], -self.scale_range, self.scale_range)
        matrices = affine_matrices(rotate, translate, scale)
        matrices[~applied] = torch.eye(3)
        return applied, matrices

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment ``image`` ``(B, C, W, H)`` and its box ``mask`` ``(B, K, W, H)`` (any dtype, 0/1).

        Returns float32 ``image`` ``(B, C, W, H)`` and float32 ``mask`` ``(B, K, W / stride, H / stride)`` (None
        when ``mask`` is None), on the input's device. Each transform computes only the images it was drawn for.
        """
        batch = image.shape[0]
        # Own copies in float32: the transforms below write into them in place.
        image = image.to(torch.float32, copy=True)
        mask = None if mask is None else mask.to(torch.float32, copy=True)
        applied, matrices = self.draw_affine(batch)
        # RandFlipd after RandAffined: the flip (x -> -x about the centre) joins the affine's pull matrix, so one
        # resampling does both; sampling at mirrored pixel centres is the flip itself.
        flip = torch.rand(batch) < self.flip_prob
        matrices[flip] = matrices[flip] @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=matrices.dtype))
        moved = applied | flip
        if moved.any():  # one sampling grid per moved image (in batch order), shared by the image and its mask
            rows = moved.nonzero()[:, 0]
            grid = self.sampling_grid(self.centred(matrices[rows], image.shape[2:]), image.shape[2:]).to(image.device)
            slot = torch.full((batch,), -1, dtype=torch.long, device=image.device)  # batch row -> its grid
            slot[rows.to(image.device)] = torch.arange(len(rows), device=image.device)
            image = _apply(moved, image, lambda chosen, rows: _resample(chosen, grid, "bilinear"))
            if mask is not None:  # an all-zero mask (N and P images) stays all zero: skip its resampling
                has_boxes = mask.flatten(1).amax(1).cpu() > 0
                mask = _apply(
                    moved & has_boxes, mask, lambda chosen, rows: _resample(chosen, grid[slot[rows]], "nearest")
                )
        contrast, gamma = torch.rand(batch) < self.contrast_prob, self._uniform([batch], *self.gamma).float()
        image = _apply(contrast, image, lambda chosen, rows: _adjust_contrast(chosen, gamma[rows.cpu()]))
        noisy, sigma = torch.rand(batch) < self.noise_prob, self._uniform([batch], 0.0, self.noise_std).float()
        image = _apply(noisy, image, lambda chosen, rows: chosen + torch.randn_like(chosen) * _per_image(
            sigma[rows.cpu()].to(chosen.device), chosen.ndim))  # fmt: skip
        if mask is not None:
            mask = F.max_pool2d(mask, kernel_size=self.stride, stride=self.stride)
        return image, mask


def _resample(batch: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """``batch`` ``(B, C, W, H)`` sampled at ``grid`` (:meth:`BatchAugmentation.sampling_grid`), zeros outside."""
    return F.grid_sample(batch, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _per_image(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, ...)`` for broadcasting over a ``ndim``-dimensional batch."""
    return values.view((-1,) + (1,) * (ndim - 1))


def _adjust_contrast(image: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """MONAI's ``AdjustContrast`` per image: ``((x - min) / (range + 1e-7)) ** gamma * range + min``."""
    flat = image.flatten(1)
    low, high = _per_image(flat.amin(1), image.ndim), _per_image(flat.amax(1), image.ndim)
    span = high - low
    return ((image - low) / (span + 1e-7)) ** _per_image(gamma.to(image.device), image.ndim) * span + low


def _apply(
    chosen: torch.Tensor, batch: torch.Tensor, transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Replace, in place, the rows of ``batch`` where ``chosen`` ``(B,)`` is True by ``transform(rows, indices)``."""
    if chosen.any():
        rows = chosen.nonzero()[:, 0].to(batch.device)
        batch[rows] = transform(batch[rows], rows)
    return batch


class BatchAugmentationHandler:
    """Ignite handler: augments ``engine.state.batch`` on the training device at ``ITERATION_STARTED``.

    Attach it before any handler that reads the batch at the same event (the AALS target handler must see the
    augmented image): listed first in ``train#handlers``, it is registered when the trainer is built, before
    the stage handlers. It moves the image and mask to ``device`` (the trainer's ``prepare_batch`` then finds
    them there) and replaces them with the augmented image ``(B, C, W, H)`` float32 and the heatmap target
    ``(B, K, W / stride, H / stride)`` float32.

    Args:
        augmentation: the :class:`BatchAugmentation` to apply.
        device: training device.
        image_key, label_key: batch keys of the image and of the full-resolution box mask.
    """

    def __init__(
        self,
        augmentation: BatchAugmentation,
        device: str | torch.device = "cpu",
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        self.augmentation = augmentation
        self.device = torch.device(device)
        self.image_key, self.label_key = image_key, label_key

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        non_blocking = self.device.type == "cuda"
        image = batch[self.image_key].to(self.device, non_blocking=non_blocking)
        mask = batch[self.label_key].to(self.device, non_blocking=non_blocking)
        batch[self.image_key], batch[self.label_key] = self.augmentation(image, mask)
