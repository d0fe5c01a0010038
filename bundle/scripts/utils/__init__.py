"""Shared plumbing of every run: atomic files, checkpoints and resume (``checkpoints``), DDP buffers (``distributed``).

Imports no other subpackage of :mod:`scripts`.
"""
