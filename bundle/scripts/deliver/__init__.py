"""Inference for users: input listing and fail-safe loading (``inference``), the per-image JSON record (``records``),
result files and overlays (``writers``), MONAI Label's label map and result (``labelmap``), DICOM SR and GSPS
(``dicom_sr``).

Imports :mod:`scripts.data`, :mod:`scripts.model`, :mod:`scripts.evaluate` and :mod:`scripts.utils`.
"""
