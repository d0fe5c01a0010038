"""Calibration of image scores: Platt scaling, and folding it into the network's head.

AALS compares teacher probabilities with a fixed point ``t = 0.4`` and adapts its strength to the image maximum
``y_max``: both assume that a probability means what it says. A network trained with a positive-pixel weight
``w`` does not: its odds are about ``w`` times too high, so ``t = 0.4`` would correspond to a calibrated
probability near ``0.4 / (0.4 + 0.6 w)``. Stage 1 is therefore calibrated on the validation split before stage 2:
a per-class Platt scaling of the image score's logit, ``logit(p') = a * logit(y_max) + b``, fitted by maximum
likelihood on the validation images' image-level labels. Because the map is calibrated pixel-wise with the same
monotone map, the calibrated image score is still the maximum of the calibrated map, and the transform can be
folded into the last 1x1 convolution of the head (:func:`fold_platt_into_head`): the calibrated network is an
ordinary checkpoint.

The handler logs the expected calibration error before and after
(:func:`scripts.evaluate.class_metrics.reliability`, which the evaluation report uses too). Nothing in MONAI or
ignite fits Platt scaling, hence this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from scripts.evaluate.class_metrics import class_auroc, reliability
from scripts.evaluate.operating_point import operating_point_path
from scripts.utils.checkpoints import save_atomic, write_json_atomic

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["PlattCalibrationHandler", "fit_platt", "fit_platt_logits", "fold_platt_into_head"]

logger = logging.getLogger(__name__)

_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before taking logits


def _logit(prob: np.ndarray) -> np.ndarray:
    prob = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(prob) - np.log1p(-prob)


def fit_platt(scores: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling of probabilities: :func:`fit_platt_logits` on ``logit(scores)``."""
    return fit_platt_logits(_logit(scores), labels, max_iter)


def fit_platt_logits(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` maximising the likelihood of ``sigmoid(a * logit + b)`` for ``labels``.

    Newton's method on the two parameters (the negative log-likelihood is convex) with step halving, so a step never
    increases it, and a small ridge on ``a`` and ``b`` that keeps the fit finite when the classes are separable.
    Fit on logits, not probabilities: an over-confident network's image scores round to 1.0 in float32 and would
    lose their order.

    Args:
        logits: shape ``(N,)``, the image scores' logits (e.g. the maximum of the logit map).
        labels: shape ``(N,)``, 0/1; both values must occur.

    Returns:
        ``(a, b)``; ``a > 0`` keeps the ranking (AUROC) unchanged.
    """
    x, y = np.asarray(logits, np.float64).reshape(-1), np.asarray(labels, np.float64).reshape(-1)
    if x.shape != y.shape or x.size == 0 or y.min() == y.max():
        raise ValueError("Platt scaling needs scores and labels of the same length with both labels present.")
    design = np.stack([x, np.ones_like(x)], axis=1)  # (N, 2)
    ridge = 1e-3

    def objective(theta: np.ndarray) -> float:
        z = design @ theta
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * theta @ theta)

    theta = np.array([1.0, 0.0])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (p - y) + ridge * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        current, scale = objective(theta), 1.0
        while objective(theta - scale * step) > current and scale > 1e-6:
            scale /= 2
        theta = theta - scale * step
        if np.abs(scale * step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def fold_platt_into_head(conv: nn.Conv2d, a: Sequence[float], b: Sequence[float]) -> None:
    """Make ``conv``'s output logits ``a[c] * z_c + b[c]`` per output channel ``c``, in place.

    Args:
        conv: the network's last layer (a convolution with a bias; output channel ``c`` = class ``c``).
        a, b: Platt parameters per class, length ``conv.out_channels``.
    """
    if conv.bias is None or len(a) != conv.out_channels or len(b) != conv.out_channels:
        raise ValueError(f"need a biased convolution with {len(a)} output channels, got {conv}.")
    scale = torch.as_tensor(a, dtype=conv.weight.dtype, device=conv.weight.device)
    shift = torch.as_tensor(b, dtype=conv.bias.dtype, device=conv.bias.device)
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.ndim - 1))))
        conv.bias.mul_(scale).add_(shift)


class PlattCalibrationHandler:
    """Fit Platt scaling per class on one evaluation pass and save the calibrated network.

    Attach to a ``SupervisedEvaluator`` whose output items hold ``image_logit`` ``(C,)`` (the maxima of the logit
    maps; ``configs/calibrate.json`` adds it before the sigmoid), or else ``image_score`` (probabilities), and
    ``image_target`` ``(C,)`` (0/1 labels). At ``EPOCH_COMPLETED`` it fits ``(a_c, b_c)`` for
    every class, folds them into ``head`` (the network's last convolution), saves ``{"model": state_dict}`` to
    ``output_path`` and writes the parameters with reliability statistics before and after to
    ``<output_path stem>_calibration.json``. When the source checkpoint has an operating point (chosen on
    validation during training, :mod:`scripts.evaluate.operating_point`), the calibrated checkpoint gets the same
    operating point with every threshold mapped through the same Platt transform: the map changes monotonically per
    class, so the same peaks are findings and the validation sensitivity and FP rate stay what they were.

    Args:
        network: the network to calibrate (its weights are changed in place).
        head: the last convolution of ``network`` (``network.head[-1]`` for ``FractureHeatmapNet``).
        output_path: checkpoint file of the calibrated network.
        class_names: class names, in channel order.
        source_checkpoint: the checkpoint being calibrated, whose operating-point file (if any) is carried over.
    """

    def __init__(
        self,
        network: nn.Module,
        head: nn.Conv2d,
        output_path: str,
        class_names: Sequence[str],
        source_checkpoint: str | None = None,
    ) -> None:
        self.network, self.head = network, head
        self.output_path = Path(output_path)
        self.class_names = list(class_names)
        self.source_checkpoint = source_checkpoint
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._calibrate)

    def _reset(self, engine: Engine) -> None:
        self._scores, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        for item in engine.state.output:
            logit = item["image_logit"] if "image_logit" in item else torch.logit(item["image_score"], eps=_EPS)
            self._scores.append(torch.as_tensor(logit).detach().cpu().double().numpy().reshape(-1))
            self._labels.append(torch.as_tensor(item["image_target"]).detach().cpu().numpy().reshape(-1))

    def _calibrate(self, engine: Engine) -> None:
        logits, labels = np.stack(self._scores), np.stack(self._labels)
        params = []
        for c, name in enumerate(self.class_names):
            if labels[:, c].min() == labels[:, c].max():  # nothing to fit: keep the class's scores as they are
                logger.warning(
                    "Platt calibration %s: the %d images hold only %s for this class; left uncalibrated (a=1, b=0)",
                    name, labels.shape[0], "positives" if labels[:, c].min() > 0 else "negatives",
                )  # fmt: skip
                params.append((1.0, 0.0))
            else:
                params.append(fit_platt_logits(logits[:, c], labels[:, c]))
        a, b = [p[0] for p in params], [p[1] for p in params]
        scores = 1.0 / (1.0 + np.exp(-logits))
        calibrated = 1.0 / (1.0 + np.exp(-(np.asarray(a) * logits + np.asarray(b))))
        fold_platt_into_head(self.head, a, b)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"model": self.network.state_dict()}, self.output_path)
        record = {
            "images": int(scores.shape[0]),
            "classes": {
                name: {
                    "a": a[c],
                    "b": b[c],
                    "validation_auroc": class_auroc(logits[:, c], labels[:, c]),
                    "before": reliability(scores[:, c], labels[:, c]),
                    "after": reliability(calibrated[:, c], labels[:, c]),
                }
                for c, name in enumerate(self.class_names)
            },
        }
        report = self.output_path.with_name(self.output_path.stem + "_calibration.json")
        write_json_atomic(record, report, indent=2)
        for name, entry in record["classes"].items():
            logger.info(
                "Platt calibration %s: a=%.3f b=%.3f, validation ECE %.3f -> %.3f",
                name,
                entry["a"],
                entry["b"],
                entry["before"]["ece"],
                entry["after"]["ece"],
            )
        logger.info("saved the calibrated network to %s (parameters in %s)", self.output_path, report)
        if self.source_checkpoint:
            self._carry_operating_point(a, b)

    def _carry_operating_point(self, a: Sequence[float], b: Sequence[float]) -> None:
        source = Path(operating_point_path(self.source_checkpoint))
        if not source.is_file():
            return
        content = json.loads(source.read_text())
        for c, name in enumerate(self.class_names):
            entry = content["classes"][name]
            if entry.get("threshold") is not None:
                mapped = 1.0 / (1.0 + np.exp(-(a[c] * _logit(entry["threshold"]) + b[c])))
                entry["threshold"] = round(float(mapped), 6)
        content["checkpoint"] = self.output_path.name
        content["calibrated_from"] = source.name
        target = Path(operating_point_path(self.output_path))
        write_json_atomic(content, target, indent=2)
        logger.info("operating point of %s mapped through the calibration -> %s", source.name, target)
