"""Fractures: how strongly each type shows at a difficulty, where fractures go, and how they are drawn into a
bone band (displaced gap and step-off, non-displaced lucent line, healing callus) with their boxes."""

from __future__ import annotations

import numpy as np

from cxr_phantom.anatomy import dome, lung_medial
from cxr_phantom.bands import SAMPLE_STEP, Grid, Trace, tube_profile
from cxr_phantom.numerics import ramp
from cxr_phantom.spec import CLASSES, FRACTURE_TYPES, Anatomy, Band, Fracture, Frame, PhantomSpec

_RIB_FRACTURE_SHARE = 0.8  # probability that a fracture is on a rib rather than a clavicle
_FRACTURE_TYPE_PROBS = (0.35, 0.35, 0.30)  # displaced, nondisplaced, healing
_SUBTLETY_JITTER = 0.12  # standard deviation of a fracture's own difficulty around the global one
_MAX_CLASS_DRAWS = 30  # bone-class draws (each with up to 50 site draws) before giving up on placing fractures


def fracture_magnitudes(subtlety: float) -> dict[str, float]:
    """How strongly a fracture shows at a given difficulty.

    Args:
        subtlety: the fracture's difficulty in [0, 1]; 0 = obvious, 1 = nearly invisible.

    Returns:
        ``gap`` (displaced: width of the fracture gap) and ``step`` (displaced: step-off of the bone ends), both in
        units of the local bone width; ``line`` (nondisplaced and healing: fraction of bone density removed on the
        lucent fracture line); ``callus`` (healing: relative thickening of the bone) and ``callus_density``
        (healing: added callus density relative to the bone's).
    """
    salience = 1.0 - float(np.clip(subtlety, 0.0, 1.0))
    strong = salience**1.5
    # The salient end is deliberately strong (a gap and step-off of a whole bone width, a callus doubling the bone)
    # so that difficulty 0 is learnable by a small network trained from scratch in minutes on a CPU.
    return {
        "gap": 0.03 + 1.0 * strong,
        "step": 0.9 * strong,
        "line": 0.15 + 0.85 * salience,
        "callus": 0.08 + 1.4 * salience,
        "callus_density": 0.05 + 1.0 * salience,
    }


def _callus_bump(tr: Trace, site: int, width: float) -> np.ndarray:
    """Fusiform envelope (N,) of a healing callus centred on sample ``site``; ``width`` = bone width in pixels."""
    return np.exp(-(((tr.s - tr.s[site]) / (1.2 * width)) ** 2))


def _draw_displaced(grid: Grid, tr: Trace, site: int, frac: Fracture, width: float, along: np.ndarray) -> float:
    """Cut a gap across the bone and shift the two ends apart (step-off) in place; returns the gap width."""
    mag = fracture_magnitudes(frac.subtlety)
    step = frac.direction * mag["step"] * width
    shift = np.where(along >= 0, 0.5, -0.5) * step * np.exp(-np.abs(along) / (1.5 * width))
    grid.x = grid.x + shift * tr.nx[site]
    grid.y = grid.y + shift * tr.ny[site]
    gap = mag["gap"] * width
    grid.weight = grid.weight * np.clip((np.abs(along) - 0.5 * gap) / SAMPLE_STEP + 0.5, 0.0, 1.0)
    return gap


def _draw_callus(grid: Grid, tr: Trace, site: int, frac: Fracture, width: float, line: np.ndarray) -> None:
    """Fill a healing callus (solid bone around the already thickened band) with a faint lucent line, in place."""
    mag = fracture_magnitudes(frac.subtlety)
    bump = _callus_bump(tr, site, width)[:, None]
    callus = tr.density[:, None] * mag["callus_density"] * bump * tube_profile(grid.r, 0.0, 1.0) * grid.area
    grid.weight = (grid.weight + callus) * (1.0 - 0.5 * mag["line"] * line)


def _fracture_box(grid: Grid, tr: Trace, site: int, reach: float, width: float, frame: Frame) -> np.ndarray:
    """Box (x1, y1, x2, y2) around the bone within ``reach`` pixels (along the band) of the site, plus a margin of
    about a tenth of the bone width, clipped to the image."""
    near = np.abs(tr.s - tr.s[site]) <= reach
    xs, ys = grid.x[near], grid.y[near]
    margin = 1.0 + 0.12 * width
    box = np.array([xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin])
    return np.clip(box, 0.0, [frame.cols, frame.rows, frame.cols, frame.rows])


def thicken_calluses(tr: Trace, fractures: list[Fracture], sites: list[int], base_half_width: np.ndarray) -> None:
    """Widen ``tr.half_width`` around every healing fracture (callus), before the band's splat grid is built."""
    for frac, site in zip(fractures, sites, strict=True):
        if frac.kind == "healing":
            thickening = fracture_magnitudes(frac.subtlety)["callus"]
            tr.half_width = tr.half_width * (1.0 + thickening * _callus_bump(tr, site, 2.0 * base_half_width[site]))


def draw_fracture(grid: Grid, tr: Trace, site: int, frac: Fracture, width: float, frame: Frame) -> np.ndarray:
    """Draw one fracture into a band's splat grid in place; returns its box (x1, y1, x2, y2) in pixels.

    Args:
        grid: the band's splat grid (see :func:`cxr_phantom.bands.band_grid`).
        tr: the band's resampled centreline.
        site: index of the fracture site in ``tr``.
        frac: the fracture.
        width: bone width at the site before any callus, pixels.
        frame: the image frame (the box is clipped to it).
    """
    along = tr.s[:, None] - tr.s[site] - grid.t * np.tan(frac.obliquity)  # signed distance to the fracture line
    line_width = max(0.9, 0.12 * width) * (1.0 + 1.5 * (1.0 - frac.subtlety))
    line = np.exp(-((along / line_width) ** 2))
    reach = 0.6 * width
    if frac.kind == "displaced":
        reach += 0.5 * _draw_displaced(grid, tr, site, frac, width, along)
    elif frac.kind == "nondisplaced":
        crossed = ramp(frac.direction * grid.r - (1.0 - 2.0 * frac.extent), 0.2)
        grid.weight = grid.weight * (1.0 - fracture_magnitudes(frac.subtlety)["line"] * line * crossed)
    else:
        _draw_callus(grid, tr, site, frac, width, line)
        reach = 1.56 * width
    return _fracture_box(grid, tr, site, reach, width, frame)


def _site_ok(anat: Anatomy, frame: Frame, band: Band, position: float) -> bool:
    """Whether a fracture at ``position`` (arc fraction) of ``band`` is well inside the image, above the diaphragm
    and lateral to the mediastinum, so that its box is not clipped and the fracture not hidden in dense tissue."""
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(band.points, axis=0).T))])
    u = np.interp(position * arc[-1], arc, band.points[:, 0])
    v = np.interp(position * arc[-1], arc, band.points[:, 1])
    x, y = frame.to_pixels(np.array([u, v]))
    margin = 0.06 * frame.rows
    inside = margin <= x <= frame.cols - margin and margin <= y <= frame.rows - margin
    side = 1 if u >= 0 else -1
    above_diaphragm = v < dome(anat, side, abs(u)) - 0.01
    clear_of_mediastinum = abs(u) > lung_medial(anat, side, np.asarray(v)) + 0.02
    return bool(inside and above_diaphragm and clear_of_mediastinum)


def sample_fractures(
    rng: np.random.Generator, spec: PhantomSpec, num_fractures: int, difficulty: float
) -> tuple[Fracture, ...]:
    """Place ``num_fractures`` fractures on distinct bones (rib 80 %, clavicle 20 %) at visible sites.

    The random draws do not depend on ``difficulty``, so the same generator state gives the same sites and types at
    every difficulty; only the per-fracture subtlety ``clip(difficulty + jitter, 0, 1)`` changes.
    """
    candidates = {bone: [i for i, b in enumerate(spec.bands) if b.bone == bone] for bone in CLASSES}
    fractures: list[Fracture] = []
    used: set[int] = set()
    for _ in range(_MAX_CLASS_DRAWS):
        if len(fractures) == num_fractures:
            return tuple(fractures)
        bone = "rib" if rng.random() < _RIB_FRACTURE_SHARE else "clavicle"
        span = (0.08, 0.65) if bone == "rib" else (0.25, 0.75)
        kind = str(rng.choice(FRACTURE_TYPES, p=_FRACTURE_TYPE_PROBS))
        jitter = rng.normal(0.0, _SUBTLETY_JITTER)
        obliquity, direction = rng.uniform(-0.5, 0.5), float(rng.choice([-1.0, 1.0]))
        extent = rng.uniform(0.6, 1.0) if rng.random() < 0.3 else 1.0
        for _ in range(50):
            index = int(rng.choice(candidates[bone]))
            position = float(rng.uniform(*span))
            if index not in used and _site_ok(spec.anatomy, spec.frame, spec.bands[index], position):
                break
        else:
            continue  # no visible free site on this bone class: draw the class again
        used.add(index)
        subtlety = float(np.clip(difficulty + jitter, 0.0, 1.0))
        fractures.append(Fracture(index, position, kind, bone, subtlety, float(obliquity), direction, float(extent)))
    if len(fractures) == num_fractures:
        return tuple(fractures)
    raise RuntimeError(f"found visible sites for only {len(fractures)} of {num_fractures} fractures.")
