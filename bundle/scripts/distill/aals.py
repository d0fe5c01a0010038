"""Adaptive Asymmetric Label Sharpening (AALS) and the ignite handler that distils teacher maps into targets.

Wang et al., "Knowledge Distillation with Adaptive Asymmetric Label Sharpening for Semi-supervised Fracture
Detection in Chest X-rays", IPMI 2021. For an image-level positive (subset P) the teacher's probability map
``y`` becomes the student's target after sharpening::

    S(y) = expit(a * logit(y) + (1 - a) * logit(t)),   a = a0 - (a0 - 1) * y_max,   target = max(S(y), y)

``t`` is the fixed point (below it S lowers, above it S raises the probability), ``a`` the strength: strongest
(``a0``) when the teacher is unsure (``y_max`` near 0) and none (``a = 1``) when it is certain. The outer
``max`` makes the sharpening asymmetric: it only ever raises probabilities, since a known positive image must
contain a fracture somewhere.

Class-agnostic positives (opt-in training subset ``A``, e.g. CheXpert's ``Fracture`` = 1) say that the image holds a
fracture of one of its candidate classes but not which. Their target follows :data:`AGNOSTIC_RULES`: by default
(``"top_class"``) only the candidate class whose teacher map has the highest maximum is sharpened like a P class; the
other candidates keep the teacher's map as it is (plain distillation: neither raised nor suppressed, since they may
be positive too); a class that is not a candidate gets zeros.

Nothing in MONAI or ignite does this; the teacher itself is ignite's ``EMAHandler``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "AGNOSTIC_RULES",
    "TARGET_VARIANTS",
    "AALSTargetHandler",
    "agnostic_masks",
    "load_weights",
    "make_target_fn",
    "sharpen",
]

logger = logging.getLogger(__name__)

#: Stage-2 target variants for the ablation: AALS, the baselines it is compared with, and ``"boxes"`` (the oracle
#: arm: P images keep targets made from their boxes, so nothing is rewritten).
TARGET_VARIANTS = ("aals", "plain", "pseudo_label", "symmetric", "asymmetric_fixed", "boxes")

#: Target rules for class-agnostic positives (subset ``A``): ``"top_class"`` sharpens the candidate class with the
#: highest teacher maximum and keeps the teacher's map for the other candidates.
AGNOSTIC_RULES = ("top_class",)


def _logit(prob: torch.Tensor) -> torch.Tensor:
    # Clamp away from 0 and 1 by a margin the dtype can represent, so logit stays finite.
    eps = 1e-6 if prob.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-12
    return torch.logit(prob, eps=eps)


def _sharpen_with_strength(prob: torch.Tensor, a: torch.Tensor | float, t: float) -> torch.Tensor:
    t_logit = float(np.log(t / (1.0 - t)))
    return torch.sigmoid(a * _logit(prob) + (1.0 - a) * t_logit)


def sharpen(prob: torch.Tensor, a0: float, t: float = 0.4) -> torch.Tensor:
    """AALS: adaptive asymmetric sharpening of a probability map.

    Args:
        prob: probabilities ``(B, C, H, W)`` in ``[0, 1]``; any float dtype and device.
        a0: sharpening strength for a map whose maximum is 0 (``a0 >= 1``; 1 means no sharpening).
        t: fixed point of the sharpening, in ``(0, 1)``.

    Returns:
        ``max(S(prob), prob)`` with ``a = a0 - (a0 - 1) * y_max`` per image and channel, same shape, dtype and
        device as ``prob``; finite at exactly 0 and 1.
    """
    if prob.ndim != 4:
        raise ValueError(f"prob must be (B, C, H, W), got shape {tuple(prob.shape)}.")
    if a0 < 1.0 or not 0.0 < t < 1.0:
        raise ValueError(f"need a0 >= 1 and 0 < t < 1, got a0={a0}, t={t}.")
    y_max = prob.amax(dim=(-2, -1), keepdim=True)
    a = a0 - (a0 - 1.0) * y_max
    return torch.maximum(_sharpen_with_strength(prob, a, t), prob)


def make_target_fn(
    variant: str = "aals", a0: float = 4.0, t: float = 0.4
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return the map from teacher probabilities ``(B, C, H, W)`` to student targets for an ablation variant.

    * ``"aals"``: :func:`sharpen` (adaptive strength, fixed point ``t``, never lowers);
    * ``"plain"``: the teacher map itself (plain knowledge distillation);
    * ``"pseudo_label"``: hard pseudo-labels, 1 where the teacher map exceeds ``t``, else 0 (the common prior
      semi-supervised method the paper compares with);
    * ``"symmetric"``: fixed strength ``a0`` around 0.5, lowering and raising (no ``max``);
    * ``"asymmetric_fixed"``: fixed strength ``a0`` around ``t``, never lowering;
    * ``"boxes"``: None, i.e. no rewriting: P images keep their box targets (the oracle arm, on a datalist whose
      P images carry boxes).
    """
    if variant == "aals":
        return lambda prob: sharpen(prob, a0, t)
    if variant == "plain":
        return lambda prob: prob
    if variant == "pseudo_label":
        return lambda prob: (prob > t).to(prob.dtype)
    if variant == "boxes":
        return None
    if variant == "symmetric":
        return lambda prob: _sharpen_with_strength(prob, a0, 0.5)
    if variant == "asymmetric_fixed":
        return lambda prob: torch.maximum(_sharpen_with_strength(prob, a0, t), prob)
    raise ValueError(f"unknown target variant {variant!r}, expected one of {TARGET_VARIANTS}.")


def unwrap(network: nn.Module) -> nn.Module:
    """The bare network inside ``DistributedDataParallel``/``DataParallel``, else ``network`` itself."""
    if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return network.module
    return network


def load_weights(network: nn.Module, path: str, key: str = "model") -> nn.Module:
    """Load a state dict saved by ``CheckpointSaver`` (bare, or under ``key``) into ``network``; returns it.

    Uses ``torch.load(weights_only=True)``: a checkpoint can hold tensors only, never code. A network wrapped in
    ``DistributedDataParallel`` (multi-GPU configs) gets the weights in its inner module, since checkpoints hold
    the bare network's keys.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
        state = state[key]
    unwrap(network).load_state_dict(state)
    logger.info("loaded weights from %s", path)
    return network


def agnostic_masks(
    prob: torch.Tensor, candidates: torch.Tensor, rule: str = "top_class"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which classes of class-agnostic positives get a sharpened target and which keep the teacher's map.

    Args:
        prob: teacher probabilities ``(B, C, H, W)``.
        candidates: ``(B, C)``, 1 for a class the image's fracture may belong to.
        rule: one of :data:`AGNOSTIC_RULES`.

    Returns:
        ``(sharpen, keep)``, each ``(B, C, 1, 1)`` in ``{0, 1}`` with the dtype of ``prob``: ``"top_class"`` marks
        the candidate with the highest map maximum in ``sharpen`` and the other candidates in ``keep``.
    """
    if rule not in AGNOSTIC_RULES:
        raise ValueError(f"unknown class-agnostic rule {rule!r}, expected one of {AGNOSTIC_RULES}.")
    candidates = (candidates > 0).to(prob.dtype)
    maxima = prob.amax(dim=(-2, -1)).masked_fill(candidates == 0, -1.0)
    top = torch.nn.functional.one_hot(maxima.argmax(dim=1), prob.shape[1]).to(prob.dtype) * candidates
    return top[..., None, None], (candidates - top)[..., None, None]


class AALSTargetHandler:
    """Replace the targets of image-level positives (subsets P and A) with sharpened teacher maps, every iteration.

    Runs at ``ITERATION_STARTED``, before ``prepare_batch``: the trainer's loss then sees the new targets. For
    each P image the teacher (eval mode, no gradient) predicts on the same augmented image as the student; a class
    labelled positive gets the sharpened map, a class labelled negative gets zeros. Class-agnostic positives
    (subset ``A``, opt-in) follow ``agnostic_rule`` (:func:`agnostic_masks`). R and N images keep their box or
    all-zero maps.

    Args:
        teacher: the teacher network, e.g. ``EMAHandler(...).ema_model``.
        target_fn: teacher probabilities -> targets, from :func:`make_target_fn`; None (the default, and what a
            config gets for ``make_target_fn("boxes")``: MONAI passes no argument whose value is None) leaves every
            target as it is (the oracle arm); a batch with class-agnostic positives is then refused, since they
            have no boxes.
        device: device the teacher runs on.
        image_key, label_key, image_label_key, subset_key: batch keys (image ``(B, 1, S, S)``, target map
            ``(B, C, S/4, S/4)``, image-level labels ``(B, C)`` (candidate classes for ``A``), subsets
            ``list[str]``).
        stats_file: optional JSON-lines file; every epoch appends one record of the statistics below.
        agnostic_rule: target rule for subset ``A``, one of :data:`AGNOSTIC_RULES`.

    Every epoch it logs the quartiles of the teacher's map maxima for the positive classes of P images (and the
    sharpened class of A images): when most
    stay below ``t``, AALS cannot change anything (values below ``t`` are kept by the ``max``). ``stats_file``
    also gets the quartiles of the target maxima (after sharpening) and the share of maps whose maximum the target
    raised by more than 0.01: how much the variant changed what the student is taught.
    """

    def __init__(
        self,
        teacher: nn.Module,
        target_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
        image_key: str = "image",
        label_key: str = "label",
        image_label_key: str = "image_label",
        subset_key: str = "subset",
        stats_file: str | None = None,
        agnostic_rule: str = "top_class",
    ) -> None:
        if agnostic_rule not in AGNOSTIC_RULES:
            raise ValueError(f"unknown class-agnostic rule {agnostic_rule!r}, expected one of {AGNOSTIC_RULES}.")
        self.agnostic_rule = agnostic_rule
        self.teacher = teacher
        self.target_fn = target_fn
        self.device = torch.device(device)
        self.image_key, self.label_key = image_key, label_key
        self.image_label_key, self.subset_key = image_label_key, subset_key
        self.stats_file = Path(stats_file) if stats_file else None
        self.teacher_maxima: list[float] = []
        self.target_maxima: list[float] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log_teacher_maxima)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        subsets = _as_list(batch[self.subset_key])
        is_p = torch.tensor([subset == "P" for subset in subsets], dtype=torch.bool)
        is_a = torch.tensor([subset == "A" for subset in subsets], dtype=torch.bool)
        if self.target_fn is None:
            if is_a.any():
                raise ValueError(
                    "class-agnostic positives (subset A) need teacher targets; target variant 'boxes' gives none: "
                    "train the oracle arm without subset A."
                )
            return
        rewrite = is_p | is_a
        if not rewrite.any():
            return
        images = batch[self.image_key][rewrite].to(self.device)
        self.teacher.eval()
        with torch.no_grad():
            prob = torch.sigmoid(self.teacher(images).float())
        labels_01 = batch[self.image_label_key][rewrite].to(prob.device, prob.dtype)
        sharpened, kept = labels_01[..., None, None], torch.zeros_like(labels_01)[..., None, None]
        agnostic = is_a[rewrite].to(prob.device)
        if agnostic.any():  # P rows: sharpen the labelled classes; A rows: by the rule
            top, rest = agnostic_masks(prob[agnostic], labels_01[agnostic], self.agnostic_rule)
            sharpened, kept = sharpened.clone(), kept.clone()
            sharpened[agnostic], kept[agnostic] = top, rest
        targets = self.target_fn(prob) * sharpened + prob * kept
        is_positive = sharpened[..., 0, 0] > 0
        self.teacher_maxima.extend(prob.amax(dim=(-2, -1))[is_positive].tolist())
        self.target_maxima.extend(targets.float().amax(dim=(-2, -1))[is_positive].tolist())
        labels = batch[self.label_key].clone()
        labels[rewrite] = targets.to(labels.device, labels.dtype)
        batch[self.label_key] = labels

    def _log_teacher_maxima(self, engine: Engine) -> None:
        if not self.teacher_maxima:
            return
        maxima = np.asarray(self.teacher_maxima)
        quartiles = np.percentile(maxima, [25, 50, 75])
        logger.info(
            "AALS epoch %d: teacher map maxima, positive classes of P images (n=%d): quartiles %.3f / %.3f / %.3f",
            engine.state.epoch,
            maxima.size,
            *quartiles,
        )
        engine.state.metrics["teacher_p_max_median"] = float(quartiles[1])
        if self.stats_file is not None:
            targets = np.asarray(self.target_maxima)
            record = {
                "epoch": engine.state.epoch,
                "num_maps": int(maxima.size),
                "teacher_max_quartiles": quartiles.tolist(),
                "target_max_quartiles": np.percentile(targets, [25, 50, 75]).tolist(),
                "share_raised": float(np.mean(targets > maxima + 0.01)),
            }
            self.stats_file.parent.mkdir(parents=True, exist_ok=True)
            with self.stats_file.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
        self.teacher_maxima, self.target_maxima = [], []


def _as_list(values: Sequence[str] | str) -> list[str]:
    return [values] if isinstance(values, str) else list(values)
