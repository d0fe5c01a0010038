"""Python package of the CXR fracture AALS bundle, one subpackage per pipeline stage.

Configs name classes by their module, e.g. ``scripts.data.transforms.LetterboxResized``. The subpackages import
each other one way only (``tests/test_import_graph.py`` checks it), lowest first:

* :mod:`scripts.utils`: atomic files, checkpoints and resume, distributed buffers; imports no other subpackage;
* :mod:`scripts.data`: loading and checking images, datalists, transforms, R/P/N sampling, batch augmentation;
* :mod:`scripts.model`: the network, the loss, heatmap peaks as detections (uses ``data``);
* :mod:`scripts.evaluate`: FROC, AUROC and calibration error, validation metrics, the operating point, overlays and
  the evaluation report (uses ``data``, ``utils``);
* :mod:`scripts.distill`: stage 2's AALS targets and the Platt calibration before it (uses ``evaluate``, ``utils``);
* :mod:`scripts.deliver`: inference inputs and outputs: per-image JSON, overlays, MONAI Label's label map, DICOM SR
  (uses all but ``distill``).
"""
