"""The network (``network``), its training loss (``losses``) and its heatmaps read as detections (``detection``).

Imports :mod:`scripts.data` only.
"""
