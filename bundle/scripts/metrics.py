"""Output transforms that pick what the ignite metrics need from the evaluator's decollated output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["class_column"]


def class_column(keys: Sequence[str], index: int) -> Callable[[Sequence[dict[str, Any]]], tuple[list, ...]]:
    """Output transform selecting one class from per-image ``(C,)`` vectors, for per-class ``ROCAUC``.

    Like ``monai.handlers.from_engine(keys)``, but each item's vector is reduced to ``[vector[index]]``.
    """

    def _select(output: Sequence[dict[str, Any]]) -> tuple[list, ...]:
        return tuple([torch.as_tensor(item[key]).reshape(-1)[index : index + 1] for item in output] for key in keys)

    return _select
