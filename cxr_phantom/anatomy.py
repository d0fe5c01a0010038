"""Anatomy of the phantom: implicit shapes (body, lungs, heart, spine, humeral heads) and their attenuation, and the
random draws of pose, anatomy and the bands of bones, vessels and airways."""

from __future__ import annotations

import numpy as np

from cxr_phantom.bands import tube_profile
from cxr_phantom.numerics import bezier, polyline, ramp
from cxr_phantom.spec import Anatomy, Band, Frame


def lung_lateral(anat: Anatomy, v: np.ndarray | float) -> np.ndarray:
    """|u| of the lateral lung border at height ``v`` (elliptic towards the apex, straight below ``lung_mid``)."""
    dv = np.clip((np.asarray(v) - anat.lung_mid) / (anat.lung_mid - anat.lung_apex), -1.0, 0.0)
    return anat.lung_apex_u + (anat.lung_width - anat.lung_apex_u) * np.sqrt(1.0 - dv * dv)


def lung_medial(anat: Anatomy, side: int, v: np.ndarray) -> np.ndarray:
    """|u| of the medial lung border at height ``v`` on one side (-1 = image left, +1 = image right).

    Near the apex it curves into the mediastinum; lower down it follows the cardiomediastinal silhouette: the aortic
    knob and the left ventricle on the image right, the right atrium on the image left.
    """
    apex = np.clip((v - anat.lung_apex) / 0.12, 0.0, 1.0)
    medial = anat.mediastinum + (anat.lung_apex_u - anat.mediastinum) * (1.0 - np.sqrt(1.0 - (1.0 - apex) ** 2))
    dome = anat.domes[0 if side < 0 else 1]
    h = np.clip((v - anat.heart_top) / (dome - anat.heart_top), 0.0, 1.0)
    if side < 0:
        return medial + (anat.heart_right - anat.mediastinum) * np.sqrt(1.0 - (1.0 - h) ** 2)
    ventricle = np.sin(0.5 * np.pi * np.minimum(h / 0.8, 1.0)) - 0.6 * np.maximum(h - 0.8, 0.0)
    knob = anat.aortic_knob * np.exp(-(((v - anat.heart_top + 0.13) / 0.035) ** 2))
    return medial + (anat.heart_left - anat.mediastinum) * ventricle + knob


def dome(anat: Anatomy, side: int, uu: np.ndarray) -> np.ndarray:
    """v of the diaphragm under one lung at lateral distance ``uu`` = |u|; side -1 = image left, +1 = image right."""
    top = anat.domes[0 if side < 0 else 1]
    lateral = np.maximum(uu - anat.dome_peak, 0.0)
    medial = np.maximum(anat.dome_peak - uu, 0.0)
    return top + 2.4 * lateral**2 + 2.0 * medial**2


def lung_depth(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Relative antero-posterior depth of aerated lung in [0, 1] at patient points ``(u, v)`` (both lungs)."""
    depth = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    lateral = lung_lateral(anat, v)
    for side in (-1, 1):
        uu = side * u
        edge = 0.008
        mask = ramp(lateral - uu, edge) * ramp(uu - lung_medial(anat, side, v), edge)
        mask = mask * ramp(dome(anat, side, uu) - v, edge) * ramp(v - anat.lung_apex, 0.02)
        periphery = np.sqrt(np.clip((lateral - uu) / 0.07, 0.0, 1.0))
        height = 0.6 + 0.4 * np.clip((v - anat.lung_apex) / 0.3, 0.0, 1.0)
        depth += mask * periphery * height
    return depth


def _heart(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft mask in [0, 1] of the cardiac shadow between the heart borders, from heart_top to just below the dome."""
    right = -lung_medial(anat, -1, v)
    left = lung_medial(anat, 1, v)
    vertical = ramp(v - anat.heart_top - 0.03, 0.06) * ramp(anat.domes[1] + 0.05 - v, 0.06)
    return vertical * ramp(u - right, 0.02) * ramp(left - u, 0.02)


def torso(anat: Anatomy, frame: Frame, texture: np.ndarray) -> np.ndarray:
    """Soft tissue, lungs, heart and stomach bubble: float32 attenuation of shape (rows, cols).

    ``texture`` is a smooth random field of the same shape that mottles the lungs (lung markings).
    """
    u, v = frame.patient_grid((slice(0, frame.rows), slice(0, frame.cols)))
    shoulders = 0.14 * np.clip((0.24 - v) / 0.16, 0.0, 1.0) ** 2
    half_width = anat.body_half_width + shoulders
    body = np.sqrt(np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0))
    attenuation = anat.tissue * body
    lungs = lung_depth(anat, u, v)
    attenuation -= anat.lung_air * lungs * (1.0 + texture)
    attenuation += anat.heart_density * _heart(anat, u, v)
    if anat.breast > 0:
        for side in (-1, 1):
            r2 = ((side * u - 0.2) / 0.17) ** 2 + ((v - anat.domes[0] + 0.02) / 0.13) ** 2
            attenuation += anat.breast * ramp(1.0 - r2, 0.05) * (v < anat.domes[0] + 0.11)
    if anat.gastric_bubble > 0:
        r2 = ((u - 0.13) / 0.05) ** 2 + ((v - anat.domes[1] - 0.055) / 0.03) ** 2
        attenuation -= anat.gastric_bubble * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    return attenuation.astype(np.float32)


def spine(anat: Anatomy, frame: Frame, out: np.ndarray) -> None:
    """Add the vertebral column (bodies with cortical end plates, pedicles, spinous processes) to ``out`` in place."""
    window = frame.window((-0.075, -0.1), (0.075, 1.2))
    if window is None:
        return
    u, v = frame.patient_grid(window)
    sp = anat.rib_spacing
    level = np.round((v - anat.rib_top) / sp)
    dv = v - (anat.rib_top + level * sp) + 0.1 * sp
    half_w = 0.027 + 0.0014 * np.clip(level, 0, 13)
    half_h, corner = 0.36 * sp, 0.006
    qx, qy = np.abs(u) - (half_w - corner), np.abs(dv) - (half_h - corner)
    dist = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - corner
    body = ramp(-dist, 0.004) * 0.09 + 0.06 * np.exp(-((dist / 0.004) ** 2))
    pedicle_r = np.hypot((np.abs(u) - half_w + 0.009) / 0.0065, (dv + 0.12 * sp) / 0.011)
    pedicles = 0.09 * np.exp(-(((pedicle_r - 1.0) / 0.3) ** 2))
    spinous_r2 = (u / 0.006) ** 2 + ((dv - 0.3 * sp) / 0.014) ** 2
    spinous = 0.07 * np.sqrt(np.clip(1.0 - spinous_r2, 0.0, 1.0))
    out[window] += body + pedicles + spinous


def humeral_heads(frame: Frame, out: np.ndarray) -> None:
    """Add the humeral heads, partly outside the field at the upper corners, to ``out`` in place."""
    for side in (-1, 1):
        cu, cv, radius = side * 0.49, 0.15, 0.065
        window = frame.window((cu - radius, cv - radius), (cu + radius, cv + radius))
        if window is None:
            continue
        u, v = frame.patient_grid(window)
        r = np.hypot(u - cu, v - cv) / radius
        out[window] += 0.55 * tube_profile(np.minimum(r, 1.0), 0.8, 0.3) * (r < 1.0)


ZOOM_VIEW_U = (-0.22, 0.22)  # zoom > 1: range of the patient point (u, v) put at the image centre
ZOOM_VIEW_V = (0.30, 0.55)


def sample_frame(rng: np.random.Generator, size: int, zoom: float = 1.0) -> Frame:
    """Image shape (rows = size, cols = size * U(0.85, 1)) and patient size, position and rotation.

    ``zoom > 1`` magnifies the patient by that factor (a smaller field of view: fractures span more pixels) and
    centres the view on a random point of the upper and mid chest, drawn from a stream spawned off ``rng`` so that
    every other draw, and so the whole image at ``zoom == 1``, is the same as without the option.
    """
    rows = size
    cols = int(round(size * rng.uniform(0.85, 1.0)))
    scale = size * rng.uniform(0.86, 1.02)
    angle = np.deg2rad(rng.uniform(-3.5, 3.5))
    centre = (cols / 2 + rng.uniform(-0.03, 0.03) * size, rows / 2 + rng.uniform(-0.01, 0.05) * size)
    if zoom != 1.0:
        view_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
        u0, v0 = view_rng.uniform(*ZOOM_VIEW_U), view_rng.uniform(*ZOOM_VIEW_V)
        scale *= zoom
        centre = (cols / 2 - scale * u0, rows / 2 - scale * (v0 - 0.5))
    return Frame(rows=rows, cols=cols, scale=float(scale), angle=float(angle), centre=centre)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Patient anatomy: body habitus, lungs, inspiration depth (diaphragm level), heart and rib layout."""
    rib_top = rng.uniform(0.085, 0.115)
    rib_spacing = rng.uniform(0.058, 0.066)
    inspiration = rng.uniform(8.3, 10.6)  # posterior rib number at the dome
    dome_right = rib_top + (inspiration - 0.5) * rib_spacing
    dome_left = dome_right + rng.uniform(0.01, 0.035)
    heart_size = rng.uniform(0.85, 1.15)
    tissue = rng.uniform(1.0, 1.3)
    return Anatomy(
        tissue=tissue,
        body_half_width=rng.uniform(0.39, 0.44),
        lung_apex=rib_top - rng.uniform(0.01, 0.03),
        lung_mid=rib_top + rng.uniform(0.28, 0.36),
        lung_apex_u=rng.uniform(0.13, 0.16),
        lung_width=rng.uniform(0.33, 0.36),
        lung_air=tissue * rng.uniform(0.62, 0.72),
        domes=(dome_right, dome_left),
        dome_peak=rng.uniform(0.14, 0.18),
        mediastinum=rng.uniform(0.045, 0.06),
        heart_top=dome_left - rng.uniform(0.22, 0.27),
        heart_right=rng.uniform(0.075, 0.095) * heart_size,
        heart_left=rng.uniform(0.15, 0.18) * heart_size,
        aortic_knob=rng.uniform(0.015, 0.035),
        heart_density=rng.uniform(0.02, 0.06),
        rib_top=rib_top,
        rib_spacing=rib_spacing,
        num_ribs=int(rng.integers(10, 13)),
        gastric_bubble=rng.uniform(0.15, 0.3) if rng.random() < 0.6 else 0.0,
        breast=rng.uniform(0.06, 0.12) if rng.random() < 0.35 else 0.0,
    )


def sample_rib(anat: Anatomy, rng: np.random.Generator, side: int, k: int) -> Band:
    """Rib ``k`` (0 = first) on one side: posterior arc from the spine to the lateral wall, then the fainter
    anterior segment running down and medially; floating ribs (k >= 10) have no anterior segment."""
    sp = anat.rib_spacing
    v0 = anat.rib_top + k * sp + rng.normal(0.0, 0.04 * sp)
    u_med = 0.03 + 0.0015 * k
    v_lat = v0 + sp * (1.2 + 0.06 * k)
    u_lat = float(lung_lateral(anat, v_lat)) + 0.016 + rng.normal(0.0, 0.003)
    if k == 0:
        u_lat -= 0.03
    floating = k >= 10
    if floating:
        u_lat = u_med + (u_lat - u_med) * (0.75 if k == 10 else 0.55)
    posterior = bezier(
        np.array(
            [
                (u_med, v0),
                (u_med + 0.4 * (u_lat - u_med), v0 - 0.3 * sp),
                (u_lat + 0.004, v_lat - 0.6 * sp),
                (u_lat, v_lat),
            ]
        )
    )
    half_med, half_lat = 0.0085 + 0.0003 * k, 0.0105 + 0.0003 * k
    hw = [np.linspace(half_med, half_lat, len(posterior))]
    density = [np.linspace(0.9, 1.0, len(posterior))]
    pieces = [posterior]
    if not floating:
        u_end = 0.075 + 0.005 * k + rng.normal(0.0, 0.006)
        run = u_lat - u_end
        v_end = v_lat + 0.55 * sp + run * rng.uniform(0.45, 0.7)
        anterior = bezier(
            np.array(
                [
                    (u_lat, v_lat),
                    (u_lat - 0.004, v_lat + 0.35 * sp),
                    (u_lat - 0.45 * run, v_end - 0.3 * run),
                    (u_end, v_end),
                ]
            )
        )
        tail = np.linspace(0.0, 1.0, len(anterior))
        pieces.append(anterior)
        hw.append(half_lat + 0.002 * tail)
        density.append((0.45 + 0.55 * (1.0 - tail) ** 3) * np.clip((1.0 - tail) / 0.25, 0.0, 1.0))
    points = polyline(*pieces)
    points[:, 0] *= side
    half_width = np.concatenate([hw[0]] + [h[1:] for h in hw[1:]])
    scale = rng.uniform(0.22, 0.28)
    dens = np.concatenate([density[0]] + [d[1:] for d in density[1:]]) * scale
    return Band(points, half_width, dens, shell=0.72, medulla=0.35, bone="rib")


def sample_clavicle(anat: Anatomy, rng: np.random.Generator, side: int) -> Band:
    """S-shaped clavicle from the sternal end (medial, lower) to the acromial end (lateral, higher): the medial
    two thirds arch upwards, the lateral third sags before rising to the acromion."""
    v_med = anat.rib_top + rng.uniform(1.7, 2.5) * anat.rib_spacing
    u_med, u_lat = 0.035, rng.uniform(0.34, 0.4)
    v_lat = v_med - rng.uniform(0.06, 0.1)
    t = np.linspace(0.0, 1.0, 64)
    u = u_med + (u_lat - u_med) * t
    v = v_med + (v_lat - v_med) * t**1.4 - rng.uniform(0.012, 0.022) * np.sin(2.0 * np.pi * t)
    points = np.stack([side * u, v], axis=1)
    half_width = 0.0115 + 0.004 * (1.0 - t) ** 6 + 0.004 * t**6
    density = np.full(len(points), rng.uniform(0.4, 0.5))
    return Band(points, half_width, density, shell=0.62, medulla=0.4, bone="clavicle")


def sample_scapula_borders(rng: np.random.Generator, side: int) -> list[Band]:
    """Medial and lateral borders of the scapula: faint edges overlapping the upper lateral lung."""
    glenoid = (0.38 + rng.uniform(-0.02, 0.02), 0.17)
    angle = (0.3 + rng.uniform(-0.03, 0.04), 0.43 + rng.uniform(-0.03, 0.03))
    superior = (0.21 + rng.uniform(-0.03, 0.03), 0.1)
    bands = []
    for start in (glenoid, superior):
        ctrl = np.array([start, np.add(start, angle) / 2 + (0.012, 0), np.add(start, angle) / 2, angle])
        points = bezier(ctrl, 24) * (side, 1)
        bands.append(Band(points, np.full(24, 0.005), np.full(24, rng.uniform(0.08, 0.14)), shell=0.5, medulla=0.3))
    return bands


def sample_vessels(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Pulmonary vessels branching from both hila, cut where they leave the lungs."""
    bands = []
    for side in (-1, 1):
        for _ in range(int(rng.integers(6, 10))):
            hilum = np.array(
                [
                    side * (anat.mediastinum + rng.uniform(0.02, 0.04)),
                    anat.rib_top + rng.uniform(4.0, 5.5) * anat.rib_spacing,
                ]
            )
            angle = np.deg2rad(rng.uniform(-95, 105))  # 0 = lateral, negative = upwards
            direction = np.array([side * np.cos(angle), np.sin(angle)])
            bands.extend(_vessel_tree(anat, rng, hilum, direction, rng.uniform(0.12, 0.24), 0.008, depth=2))
    return bands


def _vessel_tree(
    anat: Anatomy,
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    width: float,
    depth: int,
) -> list[Band]:
    """One tapering vessel and, if ``depth`` > 0, two side branches (recursively)."""
    bend = rng.normal(0.0, 0.25)
    normal = np.array([-direction[1], direction[0]])
    t = np.linspace(0.0, 1.0, 16)[:, None]
    points = start + length * t * direction + length * bend * t**2 * normal
    inside = lung_depth(anat, points[:, 0], points[:, 1]) > 0.15
    inside[:3] = True  # the hilum itself sits in the mediastinum
    stop = int(np.argmin(inside)) if not inside.all() else len(points)
    if stop < 4:
        return []
    points = points[:stop]
    taper = np.linspace(1.0, 0.35, 16)[:stop]
    bands = [Band(points, width * taper, 0.09 * np.sqrt(taper), shell=0.0)]
    if depth > 0:
        for _ in range(2):
            i = int(rng.integers(stop // 3, stop))
            turn = np.deg2rad(rng.uniform(20, 45)) * rng.choice([-1, 1])
            rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            bands.extend(
                _vessel_tree(anat, rng, points[i], rot @ direction, 0.5 * length, width * taper[i] * 0.8, depth - 1)
            )
    return bands


def sample_airways(anat: Anatomy, rng: np.random.Generator) -> list[Band]:
    """Trachea and main bronchi as air (negative density) bands."""
    carina = np.array([rng.normal(0.0, 0.004), anat.rib_top + rng.uniform(3.4, 4.0) * anat.rib_spacing])
    trachea = np.linspace((rng.normal(0.0, 0.006), -0.05), carina, 16)
    bands = [Band(trachea, np.full(16, 0.017), np.full(16, -0.16))]
    for side, angle in ((-1, 30.0), (1, 45.0)):
        end = carina + 0.085 * np.array([side * np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])
        bands.append(Band(np.linspace(carina, end, 12), np.full(12, 0.0105), np.full(12, -0.12)))
    return bands
