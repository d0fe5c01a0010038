"""Procedural synthetic chest X-ray (CXR) phantom with rib and clavicle fractures.

The phantom stands in for real posterior-anterior (PA) chest radiographs in the demo, the tests and the ablation
benchmark. One image is made in three steps:

1. :func:`sample_phantom` draws every random choice of one image into a :class:`PhantomSpec` (patient size and pose,
   lungs, heart, diaphragm, spine, ribs, clavicles, vessels, tubes, ECG leads, markers, fractures, exposure).
2. :func:`render_spec` accumulates an attenuation map (line integrals, arbitrary units; soft tissue about 1) from
   implicit shapes (body, lungs, heart, spine) and from *bands*: tubular structures drawn along a centreline (ribs,
   clavicles, vessels, tubes, wires). Bands are rasterised by bilinear splatting of a dense grid of samples along
   and across the centreline, so that fractures (gaps, step-offs, lucent lines, callus) are local edits of that grid.
3. The acquisition adds signal-dependent quantum noise, detector blur and a tone curve, and returns a 12-bit
   radiograph in the MONOCHROME2 sense (bone and soft tissue bright, lungs and air dark).

:func:`generate_dataset` writes a whole data set (DICOM and/or PNG files plus a MONAI-style datalist JSON).

Coordinates
-----------
Anatomy is defined in *patient units* ``(u, v)``: ``u`` is horizontal, positive towards the image right (the
patient's left in a PA view), zero on the body midline; ``v`` points down, and the image height is about one unit.
A per-image similarity transform (:class:`Frame`) maps patient units to pixels, so the anatomy scales with the
image size. Pixel coordinates are continuous ``(x, y)`` with ``x`` = column and ``y`` = row; pixel column ``k``
spans ``[k, k + 1)``, so its centre is at ``k + 0.5``. Boxes are ``(x1, y1, x2, y2)`` in that convention, with
``x2``/``y2`` exclusive edges.

Everything is deterministic given the random generator passed in; :func:`generate_dataset` seeds image ``i`` with
``np.random.default_rng([seed, i])`` so that the output does not depend on the order or number of worker processes.

Modules (one job each): :mod:`~cxr_phantom.spec` (constants, dataclasses, parameter checks),
:mod:`~cxr_phantom.numerics` (blur, curves, splatting), :mod:`~cxr_phantom.anatomy` (implicit shapes, bones, vessels,
airways), :mod:`~cxr_phantom.bands` (band resampling), :mod:`~cxr_phantom.fractures` (fracture placement and drawing),
:mod:`~cxr_phantom.distractors` (devices, ECG leads, markers), :mod:`~cxr_phantom.sampling` (one image's spec),
:mod:`~cxr_phantom.rendering` (spec to radiograph), :mod:`~cxr_phantom.writers` (DICOM and PNG files) and
:mod:`~cxr_phantom.dataset` (a whole data set with its datalist).

The package is used by the demo, the tests, the benchmarks and ``scripts/generate_phantoms.py``; no bundle config
uses it, so it lives outside the bundle and the Model Zoo package does not ship it.
"""

from cxr_phantom.dataset import generate_dataset, plan_dataset
from cxr_phantom.fractures import fracture_magnitudes
from cxr_phantom.rendering import render_phantom, render_spec
from cxr_phantom.sampling import sample_phantom
from cxr_phantom.spec import (
    CLASSES,
    DATASET_NAME,
    FRACTURE_TYPES,
    GENERATOR_VERSION,
    IMAGE_FORMATS,
    MAX_FRACTURES,
    MAX_PIXEL_VALUE,
    MIN_SIZE,
    Acquisition,
    Anatomy,
    Band,
    Fracture,
    Frame,
    ImagePlan,
    Marker,
    PhantomImage,
    PhantomSpec,
)
from cxr_phantom.writers import write_dicom, write_png

__all__ = [
    "CLASSES",
    "DATASET_NAME",
    "FRACTURE_TYPES",
    "GENERATOR_VERSION",
    "IMAGE_FORMATS",
    "MAX_FRACTURES",
    "MAX_PIXEL_VALUE",
    "MIN_SIZE",
    "Acquisition",
    "Anatomy",
    "Band",
    "Fracture",
    "Frame",
    "ImagePlan",
    "Marker",
    "PhantomImage",
    "PhantomSpec",
    "fracture_magnitudes",
    "generate_dataset",
    "plan_dataset",
    "render_phantom",
    "render_spec",
    "sample_phantom",
    "write_dicom",
    "write_png",
]
