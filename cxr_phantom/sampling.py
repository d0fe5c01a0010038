"""Sampling one phantom: every random choice of an image (anatomy, devices, fractures, acquisition) in a
:class:`~cxr_phantom.spec.PhantomSpec`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cxr_phantom.anatomy import (
    sample_airways,
    sample_anatomy,
    sample_clavicle,
    sample_frame,
    sample_rib,
    sample_scapula_borders,
    sample_vessels,
)
from cxr_phantom.distractors import sample_devices, sample_electrodes, sample_markers
from cxr_phantom.fractures import sample_fractures
from cxr_phantom.spec import MAX_FRACTURES, Acquisition, PhantomSpec, check_size, check_unit, check_zoom


def sample_acquisition(rng: np.random.Generator, size: int) -> Acquisition:
    """Exposure, noise level, blur and display curve; the quantum count scales with the pixel area."""
    return Acquisition(
        photons=rng.uniform(4e3, 3e4) * (512.0 / size) ** 2,
        blur=rng.uniform(0.6, 1.1),
        exposure=rng.uniform(-0.08, 0.08),
        contrast=rng.uniform(0.9, 1.1),
        gamma=rng.uniform(0.8, 1.25),
        black=rng.uniform(0.02, 0.07),
        white=rng.uniform(0.9, 0.98),
        noise_seed=int(rng.integers(2**63)),
        texture_seed=int(rng.integers(2**63)),
    )


def sample_phantom(
    rng: np.random.Generator, size: int = 512, difficulty: float = 0.5, num_fractures: int = 0, zoom: float = 1.0
) -> PhantomSpec:
    """Draw every random choice of one phantom image.

    The generator is split into independent streams for anatomy, devices and fractures, so that the anatomy does
    not depend on ``num_fractures`` or ``difficulty``.

    Args:
        rng: random generator; it is advanced by a fixed number of draws.
        size: image height in pixels (>= MIN_SIZE); the width is ``size * U(0.85, 1.0)``.
        difficulty: global fracture difficulty in [0, 1] (0 = obvious, 1 = nearly invisible).
        num_fractures: number of fractures, 0 to MAX_FRACTURES.
        zoom: magnification (>= 1): 1 shows the whole chest, 2 about a quarter of it (a random part of the upper
            and mid chest) with every structure, fractures included, twice as large in pixels.

    Returns:
        the phantom spec; render it with :func:`render_spec`.
    """
    check_size(size)
    check_unit("difficulty", difficulty)
    check_zoom(zoom)
    if int(num_fractures) != num_fractures or not 0 <= num_fractures <= MAX_FRACTURES:
        raise ValueError(f"num_fractures must be in [0, {MAX_FRACTURES}], got {num_fractures}.")
    anat_rng, device_rng, fracture_rng = (np.random.default_rng(s) for s in rng.integers(2**63, size=3))
    frame = sample_frame(anat_rng, size, zoom)
    anat = sample_anatomy(anat_rng)
    bones = [sample_rib(anat, anat_rng, side, k) for k in range(anat.num_ribs) for side in (-1, 1)]
    bones += [sample_clavicle(anat, anat_rng, side) for side in (-1, 1)]
    others = sample_airways(anat, anat_rng) + sample_vessels(anat, anat_rng)
    others += [b for side in (-1, 1) for b in sample_scapula_borders(anat_rng, side)]
    electrodes, wires = sample_electrodes(device_rng)
    spec = PhantomSpec(
        frame=frame,
        anatomy=anat,
        acquisition=sample_acquisition(anat_rng, size),
        bands=tuple(bones + others + sample_devices(anat, device_rng) + wires),
        electrodes=electrodes,
        markers=sample_markers(device_rng, frame),
    )
    return replace(spec, fractures=sample_fractures(fracture_rng, spec, num_fractures, difficulty))
