"""From files to training batches: loading and input checks (``loading``, ``colour``, ``input_checks``), datalists
(``datalist``, ``labelled_images``), deterministic transforms (``transforms``), R/P/N sampling (``sampling``) and the
random augmentation of whole batches (``batch_augmentation``).

Imports no other subpackage of :mod:`scripts`.
"""
