"""Measuring a model: FROC and per-class AUROC/ECE (``froc``, ``class_metrics``), the validation metrics (``metrics``),
the operating point chosen on validation (``operating_point``), overlays (``overlays``, ``tb_overlays``) and the
evaluation report (``evaluation``, ``report`` and its ``report_*`` parts).

Imports :mod:`scripts.data` and :mod:`scripts.utils`.
"""
