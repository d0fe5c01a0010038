"""Ignite metrics for validation: image-level AUROC and FROC per fracture class, and the checkpoint selection score.

MONAI has the computations (``monai.metrics.compute_roc_auc``; FROC in :mod:`scripts.evaluate.froc` on top of
``monai.metrics.compute_froc_score``) but no ignite metric that

* reports each class under its own name *and* a mean that skips classes without positives (MONAI's
  ``ROCAUC(average="macro")`` turns into NaN as soon as one class has no positive image in the split, and a
  NaN key metric never selects a checkpoint), or
* computes FROC at all (detections and boxes vary in number per image, so they cannot be concatenated
  like scores).

Both metrics keep per-image results and gather them across processes in ``compute`` so that distributed
validation gives the same numbers as a single process. The per-class values come from
:mod:`scripts.evaluate.class_metrics`, which the test report (``metrics.json``) uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric, MetricsLambda

from scripts.data.transforms import is_boxed, unpack_boxes
from scripts.evaluate.class_metrics import class_auroc, class_froc, nanmean
from scripts.evaluate.froc import DEFAULT_FP_RATES, match_detections

__all__ = ["FROCMetric", "ImageAUROC", "selection_metric"]


def _gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate tensors of different lengths (along dim 0) from all ranks; identity in a single process."""
    if idist.get_world_size() == 1:
        return tensor
    # all_gather needs equal shapes: pad to the longest rank, gather, then drop the padding.
    length = torch.tensor([tensor.shape[0]])
    lengths = idist.all_gather(length).tolist()
    padded = torch.zeros((max(lengths), *tensor.shape[1:]), dtype=tensor.dtype)
    padded[: tensor.shape[0]] = tensor
    gathered = idist.all_gather(padded).reshape(len(lengths), max(lengths), *tensor.shape[1:])
    return torch.cat([gathered[rank, :n] for rank, n in enumerate(lengths)])


class _PerClassMetric(Metric):
    """Base for metrics whose ``compute`` returns ``{class_name: value}``.

    ``completed`` stores the nan-mean over classes under the metric's own name (a float, usable as a key
    metric) and each class under ``<name>_<class>``.
    """

    def __init__(self, class_names: Sequence[str], output_transform: Callable, device: str | torch.device = "cpu"):
        self.class_names = list(class_names)
        super().__init__(output_transform=output_transform, device=device)

    def completed(self, engine: Engine, name: str) -> None:
        per_class = self.compute()
        engine.state.metrics[name] = nanmean(list(per_class.values()))
        for class_name, value in per_class.items():
            engine.state.metrics[f"{name}_{class_name}"] = value


class ImageAUROC(_PerClassMetric):
    """Image-level AUROC per class from ``(image_score, image_label)`` pairs.

    Args:
        class_names: one name per class, in channel order.
        output_transform: maps the engine output to ``(scores, labels)``, each a list of ``(C,)`` tensors,
            e.g. ``monai.handlers.from_engine(["image_score", "image_target"])``.

    A class without both positive and negative images gets NaN and is left out of the mean.
    """

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, output: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]) -> None:
        scores, labels = output
        self._scores.extend(torch.as_tensor(s).detach().float().cpu().reshape(-1) for s in scores)
        self._labels.extend(torch.as_tensor(y).detach().float().cpu().reshape(-1) for y in labels)

    def compute(self) -> dict[str, float]:
        num_classes = len(self.class_names)
        scores = _gather_cat(torch.stack(self._scores) if self._scores else torch.zeros((0, num_classes)))
        labels = _gather_cat(torch.stack(self._labels) if self._labels else torch.zeros((0, num_classes)))
        return {name: class_auroc(scores[:, index], labels[:, index]) for index, name in enumerate(self.class_names)}


class FROCMetric(_PerClassMetric):
    """FROC score per class (mean sensitivity at ``fp_rates`` false positives per image).

    Args:
        class_names: one name per class, in channel order.
        output_transform: maps the engine output to ``(detections, box_tables)``: per image a ``(K, 4)`` tensor
            of ``(x, y, score, class_index)`` (:class:`scripts.model.detection.HeatmapToDetectionsd`) and a
            ``(max_boxes, 5)`` table (:class:`scripts.data.transforms.PackBoxesd`), both in file pixels.
        fp_rates: false positives per image at which sensitivity is averaged (the paper's 0.1 to 0.4).

    Images with image-level labels only (:func:`scripts.data.transforms.is_boxed` False) are left out: their
    fractures have no boxes to hit. Per image only the matching result is kept (false-positive scores and each
    box's hit score), which is
    what :func:`scripts.evaluate.froc.froc_curve_from_scores` needs, so memory stays small on large validation sets.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable,
        fp_rates: Sequence[float] = DEFAULT_FP_RATES,
        device: str | torch.device = "cpu",
    ) -> None:
        self.fp_rates = tuple(float(r) for r in fp_rates)
        super().__init__(class_names, output_transform, device)

    def reset(self) -> None:
        self._fp_scores: list[list[np.ndarray]] = [[] for _ in self.class_names]
        self._tp_scores: list[list[np.ndarray]] = [[] for _ in self.class_names]
        self._num_images = 0

    def update(self, output: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]) -> None:
        detections, box_tables = output
        for image_detections, table in zip(detections, box_tables, strict=True):
            if not is_boxed(table):
                continue
            rows = torch.as_tensor(image_detections).detach().cpu().double().reshape(-1, 4).numpy()
            for index in range(len(self.class_names)):
                points = rows[rows[:, 3] == index, :3]
                fp, tp = match_detections(points, unpack_boxes(table, index))
                self._fp_scores[index].append(fp)
                self._tp_scores[index].append(tp)
            self._num_images += 1

    def class_matches(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Per class the pooled ``(fp_scores, tp_scores)`` of all ranks, and the number of boxed images.

        A collective call under ``torch.distributed``: every rank must make it.
        """
        num_images = int(idist.all_reduce(torch.tensor(self._num_images)).item())
        matches = []
        for index in range(len(self.class_names)):
            fp = _gather_cat(torch.as_tensor(np.concatenate([np.zeros(0), *self._fp_scores[index]])))
            tp = _gather_cat(torch.as_tensor(np.concatenate([np.zeros(0), *self._tp_scores[index]])))
            matches.append((fp.numpy(), tp.numpy()))
        return matches, num_images

    def compute(self) -> dict[str, float]:
        matches, num_images = self.class_matches()
        return {
            name: class_froc(fp, tp, num_images).score(self.fp_rates)
            for name, (fp, tp) in zip(self.class_names, matches, strict=True)
        }


def selection_metric(auroc: Metric, froc: Metric, mode: str = "mean") -> Metric:
    """The validation score that chooses the checkpoint: ``"auroc"``, ``"froc"`` or their ``"mean"``.

    Returns one of the two metrics, or an ignite ``MetricsLambda`` averaging their class-means.
    """

    def _class_mean(metric: Metric) -> MetricsLambda:
        return MetricsLambda(lambda per_class: nanmean(list(per_class.values())), metric)

    if mode == "auroc":
        return _class_mean(auroc)
    if mode == "froc":
        return _class_mean(froc)
    if mode == "mean":
        return MetricsLambda(lambda a, f: nanmean([a, f]), _class_mean(auroc), _class_mean(froc))
    raise ValueError(f"selection mode must be 'auroc', 'froc' or 'mean', got {mode!r}.")
