"""Stage 2 and the step before it: AALS targets from the EMA teacher (``aals``) and the Platt calibration of stage 1
(``calibration``).

Imports :mod:`scripts.evaluate` and :mod:`scripts.utils`.
"""
