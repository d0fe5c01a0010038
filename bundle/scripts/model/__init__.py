"""The network (``network``), its pretrained backbone weights (``pretrained``), its training loss (``losses``) and
its heatmaps read as detections (``detection``).

Imports :mod:`scripts.data` only.
"""
