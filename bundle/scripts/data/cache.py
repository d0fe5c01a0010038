"""Training and validation data that refuse unreadable images before training starts, all of them at once.

MONAI's ``CacheDataset`` stops at the first image whose loading fails, with that one file in a traceback: a user
fixes it, starts again, and meets the next one an hour later. And an image that is not cached (``cache_rate`` below
1) is first read during training, where a failure ends the run mid-epoch. :class:`CheckedCacheDataset` instead

* reads every cached image (the deterministic transforms, as ``CacheDataset``) and, if any cannot be read, refuses
  the data set with one :class:`scripts.data.loading.CXRInputError` listing every such file and its reason, before
  the first iteration (a corrupt DICOM whose decoder crashes is one of them: :mod:`scripts.data.decoding`);
* with ``replace_unreadable`` (the training data), replaces an image outside the cache that fails during training by
  the next readable one, with a warning naming the file, so the run goes on; without it (validation and
  evaluation, where each image counts once and a stand-in would count another twice) such a failure raises the
  file's :class:`scripts.data.loading.CXRInputError`;
* writes plain progress lines instead of a tqdm bar when the output is not a terminal
  (:mod:`scripts.utils.progress`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import CacheDataset

from scripts.data.loading import CXRInputError
from scripts.utils.progress import PeriodicProgress, is_terminal

__all__ = ["CheckedCacheDataset", "unreadable_cause"]

logger = logging.getLogger(__name__)

#: Files listed in full in the refusal; the rest are counted.
_LISTED = 50


def unreadable_cause(error: BaseException) -> CXRInputError | None:
    """The :class:`CXRInputError` behind a failed transform chain (MONAI wraps it in ``RuntimeError("applying
    transform ...")``), or None when the failure is something else (a bug is raised, not listed)."""
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    return error if isinstance(error, CXRInputError) else None


class CheckedCacheDataset(CacheDataset):
    """``monai.data.CacheDataset`` that refuses unreadable images up front (module notes).

    Takes ``CacheDataset``'s arguments (``data``, ``transform``, ``cache_rate``, ``num_workers``, ...) plus:

    Args:
        desc: what the data are, for the progress lines and the refusal (e.g. ``"training data"``).
        replace_unreadable: replace an uncached image that cannot be read by the next readable one (training).

    Raises:
        CXRInputError: at construction, when any cached image cannot be read; the message lists each file (the first
            50) with its reason, and the count.
    """

    def __init__(
        self,
        data: Sequence,
        transform: Callable | None = None,
        desc: str = "data",
        replace_unreadable: bool = False,
        **kwargs: Any,
    ) -> None:
        self.desc = desc
        self.replace_unreadable = replace_unreadable
        self._failures: dict[int, str] = {}
        if not is_terminal():
            kwargs["progress"] = False  # plain lines from _load_cache_item instead of a carriage-return bar
        self._lines: PeriodicProgress | None = None
        super().__init__(data=data, transform=transform, **kwargs)

    def _fill_cache(self, indices: Sequence[int] | None = None) -> list:
        self._failures = {}
        if not self.progress and self.cache_num > 0:
            total = len(indices) if indices is not None else self.cache_num
            self._lines = PeriodicProgress(total, f"reading {self.desc}")
        cache = super()._fill_cache(indices)
        self._lines = None
        if self._failures:
            raise CXRInputError(self._refusal())
        return cache

    def _refusal(self) -> str:
        rows = sorted(self._failures.items())
        listing = "\n".join(f"  {self._path(index)}: {reason}" for index, reason in rows[:_LISTED])
        more = f"\n  ... and {len(rows) - _LISTED} more" if len(rows) > _LISTED else ""
        return (
            f"{self.desc}: {len(rows)} of {len(self.data)} images cannot be read; nothing was trained. Remove them "
            f"from the datalist (or replace them) and start again:\n{listing}{more}"
        )

    def _path(self, index: int) -> str:
        item = self.data[index]
        return str(item.get("image", item)) if isinstance(item, dict) else str(item)

    def _load_cache_item(self, idx: int) -> Any:
        try:
            return super()._load_cache_item(idx)
        except Exception as error:
            cause = unreadable_cause(error)
            if cause is None:
                raise
            self._failures[idx] = str(cause)  # collected: every unreadable file is listed at once, before training
            return None
        finally:
            if self._lines is not None:
                self._lines.update()

    def _transform(self, index: int) -> Any:
        """As ``CacheDataset``; with ``replace_unreadable`` an uncached unreadable image gives the next readable one."""
        if not self.replace_unreadable:
            try:
                return super()._transform(index)
            except Exception as error:
                cause = unreadable_cause(error)
                if cause is None:
                    raise
                raise cause from error  # the file and its reason, not MONAI's "applying transform <object at 0x...>"
        for attempt in range(len(self.data)):
            position = (index + attempt) % len(self.data)
            try:
                return super()._transform(position)
            except Exception as error:
                cause = unreadable_cause(error)
                if cause is None or position < self.cache_num:  # cached items were read already: not a bad file
                    raise
                # an image outside the cache, first read during training: warn and take the next one
                logger.warning("%s: skipped %s, which cannot be read: %s", self.desc, self._path(position), cause)
        raise CXRInputError(f"{self.desc}: no image can be read.")
