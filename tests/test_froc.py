"""Tests for ``scripts.evaluate.froc``: hand-computed FROC curves, edge cases, MONAI cross-checks and a brute-force
reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_fp_tp_probs_nd, compute_froc_curve_data, compute_froc_score

from scripts.evaluate.froc import (
    DEFAULT_FP_RATES,
    MISSED,
    froc_curve,
    froc_curve_from_scores,
    froc_from_matches,
    froc_score,
    match_detections,
    sensitivity_at,
)

INF = np.inf


def _d(*rows: tuple[float, float, float]) -> np.ndarray:
    """Detections ``(N, 3)`` from ``(x, y, score)`` rows."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _b(*rows: tuple[float, float, float, float]) -> np.ndarray:
    """Boxes ``(M, 4)`` from ``(x1, y1, x2, y2)`` rows."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _assert_curve(curve, fps, sens, thresholds) -> None:
    got_fps, got_sens, got_thr = curve
    np.testing.assert_allclose(got_fps, fps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_sens, sens, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got_thr, thresholds)


# ----------------------------------------------------------------------------------------------------------------
# hand-computed cases
# ----------------------------------------------------------------------------------------------------------------


def test_no_detections_at_all():
    # 2 images, 1 box, no detection anywhere: only the origin point (threshold +inf), sensitivity 0 at every rate.
    for empty in (np.zeros((0,)), np.zeros((0, 3)), [], torch.zeros((0, 3))):
        curve = froc_curve([empty, empty], [_b((0, 0, 10, 10)), np.zeros((0,))])
        _assert_curve(curve, fps=[0.0], sens=[0.0], thresholds=[INF])
        assert froc_score([empty, empty], [_b((0, 0, 10, 10)), []]) == 0.0


def test_no_boxes_anywhere_gives_nan_sensitivity_and_warns():
    # sensitivity = hits / 0 is undefined: NaN sensitivity, NaN score, RuntimeWarning; the FP rates stay valid.
    # 2 images: FP scores {0.5} and {0.9, 0.5} -> t=0.5: 3/2 = 1.5; t=0.9: 1/2 = 0.5; +inf: 0.
    dets = [_d((1, 1, 0.5)), _d((2, 2, 0.9), (3, 3, 0.5))]
    with pytest.warns(RuntimeWarning, match="undefined"):
        fps, sens, thr = froc_curve(dets, [[], np.zeros((0, 4))])
    np.testing.assert_allclose(fps, [1.5, 0.5, 0.0])
    assert np.isnan(sens).all() and sens.shape == (3,)
    np.testing.assert_array_equal(thr, [0.5, 0.9, INF])
    with pytest.warns(RuntimeWarning):
        assert np.isnan(froc_score(dets, [[], []]))


def test_negative_images_count_in_fp_rate_denominator():
    # 4 images, 1 box (image 0). TP 0.8 in image 0; FPs 0.9, 0.7 (image 1) and 0.6 (image 2); image 3 empty.
    dets = [_d((5, 5, 0.8)), _d((1, 1, 0.9), (2, 2, 0.7)), _d((3, 3, 0.6)), np.zeros((0, 3))]
    boxes = [_b((0, 0, 10, 10)), [], [], []]
    # t=0.6: FPs {0.9,0.7,0.6} = 3/4 = 0.75, TP 1/1 | t=0.7: 2/4 = 0.5, 1 | t=0.8: 1/4 = 0.25, 1
    # t=0.9: 1/4 = 0.25, TP 0.8 < 0.9 -> 0       | t=+inf: origin (0, 0)
    _assert_curve(
        froc_curve(dets, boxes),
        fps=[0.75, 0.5, 0.25, 0.25, 0.0],
        sens=[1.0, 1.0, 1.0, 0.0, 0.0],
        thresholds=[0.6, 0.7, 0.8, 0.9, INF],
    )


def test_several_hits_in_one_box_only_max_counts():
    # box hit by 0.3, 0.9, 0.5 -> TP score 0.9; 0.3 and 0.5 are neither TP nor FP. FP 0.4 outside.
    dets = [_d((1, 1, 0.3), (2, 2, 0.9), (3, 3, 0.5), (20, 20, 0.4))]
    fp, tp = match_detections(dets[0], _b((0, 0, 10, 10)))
    np.testing.assert_array_equal(fp, [0.4])
    np.testing.assert_array_equal(tp, [0.9])
    # t=0.4: FP 1/1, TP 1/1 | t=0.9: FP 0, TP 1 | +inf: (0, 0). 0.3 and 0.5 are not thresholds (no count changes).
    _assert_curve(
        froc_curve(dets, [_b((0, 0, 10, 10))]), fps=[1.0, 0.0, 0.0], sens=[1.0, 1.0, 0.0], thresholds=[0.4, 0.9, INF]
    )


def test_ties_between_tp_and_fp_scores():
    # image 0: box A hit with 0.7, FPs 0.7 and 0.9; image 1: box B hit with 0.4. 2 images, 2 boxes.
    dets = [_d((5, 5, 0.7), (50, 50, 0.7), (60, 60, 0.9)), _d((2, 2, 0.4))]
    boxes = [_b((0, 0, 10, 10)), _b((0, 0, 4, 4))]
    # t=0.9: FP 1/2 = 0.5, TP 0 | t=0.7: TP and FP both enter: FP 2/2 = 1.0, TP 1/2 | t=0.4: 1.0, 2/2 | +inf: origin
    fps, sens, thr = froc_curve(dets, boxes)
    _assert_curve(
        (fps, sens, thr), fps=[1.0, 1.0, 0.5, 0.0], sens=[1.0, 0.5, 0.0, 0.0], thresholds=[0.4, 0.7, 0.9, INF]
    )
    # increasing fps: (0,0) (0.5,0) (1,0.5) (1,1). 0.75 lies on the tied (diagonal) segment: 0 + 0.5 * 0.25/0.5 = 0.25
    np.testing.assert_allclose(sensitivity_at(fps, sens, [0.25, 0.75, 1.0, 3.0]), [0.0, 0.25, 1.0, 1.0])


def test_points_on_box_edges_are_inside():
    box = _b((10, 20, 30, 40))
    dets = _d(
        (10, 20, 0.1),  # top-left corner -> inside
        (30, 40, 0.2),  # bottom-right corner -> inside
        (10, 30, 0.3),  # left edge -> inside
        (20, 40, 0.6),  # bottom edge -> inside (the max)
        (9.999, 30, 0.5),  # just left of the box -> FP
        (30, 40.001, 0.4),  # just below the box -> FP
    )
    fp, tp = match_detections(dets, box)
    np.testing.assert_array_equal(fp, [0.5, 0.4])
    np.testing.assert_array_equal(tp, [0.6])
    # a degenerate (zero-area) box still contains its single point
    np.testing.assert_array_equal(match_detections(_d((3, 4, 0.7)), _b((3, 4, 3, 4)))[1], [0.7])


def test_overlapping_boxes_each_take_the_point():
    # (10, 10) is the shared corner of both boxes: it hits both, and is no FP. (5, 5) only in box 0, lower score.
    fp, tp = match_detections(_d((10, 10, 0.8), (5, 5, 0.3)), _b((0, 0, 10, 10), (10, 10, 20, 20)))
    assert fp.shape == (0,)
    np.testing.assert_array_equal(tp, [0.8, 0.8])


def test_one_image_with_everything():
    # A=[0,0,10,10] and B=[5,5,15,15] overlap; C is missed; D=[50,50,60,60].
    boxes = [_b((0, 0, 10, 10), (5, 5, 15, 15), (100, 100, 110, 110), (50, 50, 60, 60))]
    dets = [
        _d(
            (7, 7, 0.6),  # in A and B
            (1, 1, 0.9),  # in A only -> A = max(0.6, 0.9) = 0.9, B = 0.6
            (60, 55, 0.3),  # on D's right edge -> D = 0.3
            (55, 55, 0.2),  # in D as well: neither TP nor FP
            (200, 200, 0.5),  # FP
            (30, 30, 0.05),  # FP, the lowest score
        )
    ]
    fp, tp = match_detections(dets[0], boxes[0])
    np.testing.assert_array_equal(fp, [0.5, 0.05])
    np.testing.assert_array_equal(tp, [0.9, 0.6, MISSED, 0.3])
    # 1 image, 4 boxes. t=0.05: FP 2, TP {0.9,0.6,0.3} = 3/4 | t=0.3: FP 1, 3/4 | t=0.5: FP 1, 2/4
    # t=0.6: FP 0, 2/4 | t=0.9: FP 0, 1/4 | +inf: (0, 0)
    fps, sens, thr = froc_curve(dets, boxes)
    _assert_curve(
        (fps, sens, thr),
        fps=[2.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        sens=[0.75, 0.75, 0.5, 0.5, 0.25, 0.0],
        thresholds=[0.05, 0.3, 0.5, 0.6, 0.9, INF],
    )
    # increasing fps: (0,0) (0,.25) (0,.5) (1,.5) (1,.75) (2,.75).
    # 0.5 -> between (0,.5) and (1,.5) = 0.5; 1 -> highest at fps 1 = 0.75; 2 -> 0.75; 4 -> clamped 0.75
    # mean = (0.5 + 0.75 + 0.75 + 0.75) / 4 = 0.6875
    assert froc_score(dets, boxes, fp_rates=(0.5, 1, 2, 4)) == pytest.approx(0.6875)
    # default rates 0.1..0.4 all lie between (0, .5) and (1, .5) -> 0.5
    assert froc_score(dets, boxes) == pytest.approx(0.5)


def test_lowest_score_being_a_tp_is_not_dropped():
    # 1 image: TP 0.1 (lowest score), FP 0.8. t=0.1: (1, 1/1) | t=0.8: (1, 0) | +inf: (0, 0)
    dets, boxes = [_d((5, 5, 0.1), (50, 50, 0.8))], [_b((0, 0, 10, 10))]
    fps, sens, thr = froc_curve(dets, boxes)
    _assert_curve((fps, sens, thr), fps=[1.0, 1.0, 0.0], sens=[1.0, 0.0, 0.0], thresholds=[0.1, 0.8, INF])
    assert froc_score(dets, boxes, fp_rates=(1.0,)) == 1.0
    # MONAI's compute_froc_curve_data drops the lowest distinct score (0.1) and never reaches sensitivity 1.
    _, monai_sens = compute_froc_curve_data(np.array([0.8]), np.array([0.1]), num_targets=1, num_images=1)
    assert monai_sens.max() == 0.0


def test_interpolation_between_curve_points():
    # 4 images, 2 boxes. image 0: A hit with 0.8; image 1: two FPs 0.8; image 2: B hit with 0.3; image 3: FP 0.9.
    dets = [_d((5, 5, 0.8)), _d((50, 50, 0.8), (60, 60, 0.8)), _d((5, 5, 0.3)), _d((70, 70, 0.9))]
    boxes = [_b((0, 0, 10, 10)), [], _b((0, 0, 10, 10)), []]
    # t=0.3: FP 3/4 = 0.75, TP 2/2 | t=0.8: FP 3/4 = 0.75, TP 1/2 | t=0.9: FP 1/4 = 0.25, TP 0 | +inf: (0, 0)
    fps, sens, thr = froc_curve(dets, boxes)
    _assert_curve(
        (fps, sens, thr), fps=[0.75, 0.75, 0.25, 0.0], sens=[1.0, 0.5, 0.0, 0.0], thresholds=[0.3, 0.8, 0.9, INF]
    )
    # increasing fps: (0,0) (.25,0) (.75,.5) (.75,1). Segment (.25,0)-(.75,.5) has slope 1:
    # 0.1 -> 0, 0.2 -> 0, 0.3 -> 0.05, 0.4 -> 0.15, 0.5 -> 0.25, 0.75 -> highest at .75 = 1, 2 -> clamped 1
    rates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 2.0]
    np.testing.assert_allclose(sensitivity_at(fps, sens, rates), [0.0, 0.0, 0.05, 0.15, 0.25, 1.0, 1.0], atol=1e-12)
    # default rates: (0 + 0 + 0.05 + 0.15) / 4 = 0.05, and MONAI's compute_froc_score agrees on the same curve
    assert froc_score(dets, boxes) == pytest.approx(0.05)
    assert compute_froc_score(fps, sens, DEFAULT_FP_RATES) == pytest.approx(0.05)


def test_origin_interpolation_when_top_score_is_fp():
    # 10 images, 1 box. FP 0.9 (image 1), TP 0.5 (image 0). t=0.5: (0.1, 1) | t=0.9: (0.1, 0) | +inf: (0, 0)
    dets = [_d((5, 5, 0.5)), _d((1, 1, 0.9))] + [np.zeros((0, 3))] * 8
    boxes = [_b((0, 0, 10, 10))] + [[]] * 9
    fps, sens, _ = froc_curve(dets, boxes)
    np.testing.assert_allclose(fps, [0.1, 0.1, 0.0])
    # below 0.1 the curve runs from the origin to (0.1, 0): no credit for 0.05 FPs per image
    np.testing.assert_allclose(sensitivity_at(fps, sens, [0.0, 0.05, 0.1, 0.4]), [0.0, 0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------------------------------------------
# inputs, validation and gathering
# ----------------------------------------------------------------------------------------------------------------


def test_accepts_tensors_tuples_and_batched_arrays():
    dets_np = [_d((5, 5, 0.7), (50, 50, 0.6)), _d((1, 1, 0.9), (2, 2, 0.2))]
    boxes_np = [_b((0, 0, 10, 10)), _b((0, 0, 1, 1))]
    expected = froc_curve(dets_np, boxes_np)
    variants = [
        ([torch.as_tensor(d, dtype=torch.float32) for d in dets_np], tuple(torch.as_tensor(b) for b in boxes_np)),
        (tuple(d.tolist() for d in dets_np), [b.tolist() for b in boxes_np]),
        (np.stack(dets_np), np.stack(boxes_np)),  # (B, N, 3) and (B, M, 4)
        (torch.as_tensor(np.stack(dets_np)), torch.as_tensor(np.stack(boxes_np))),
    ]
    for dets, boxes in variants:
        for got, exp in zip(froc_curve(dets, boxes), expected, strict=True):
            np.testing.assert_allclose(got, exp, rtol=1e-6)  # float32 scores round slightly


@pytest.mark.parametrize(
    "dets, boxes, match",
    [
        ([_d((1, 1, 0.5))], [[], []], "detection arrays"),
        ([], [], "no images"),
        ([np.zeros((2, 2))], [[]], "shape"),
        ([_d((1, 1, np.nan))], [[]], "finite"),
        ([_d((1, 1, np.inf))], [[]], "finite"),
        ([_d((1, 1, 0.5))], [_b((5, 5, 0, 10))], "x1 <= x2"),
    ],
)
def test_invalid_inputs_raise(dets, boxes, match):
    with pytest.raises(ValueError, match=match):
        froc_curve(dets, boxes)


def test_invalid_rates_and_curves_raise():
    fps, sens, _ = froc_curve([_d((5, 5, 0.5), (50, 50, 0.7))], [_b((0, 0, 10, 10))])  # fps [1, 1, 0]
    with pytest.raises(ValueError, match="fp_rates"):
        sensitivity_at(fps, sens, [-0.1])
    with pytest.raises(ValueError, match="non-increasing"):
        sensitivity_at(fps[::-1], sens[::-1], [0.1])
    with pytest.raises(ValueError, match="num_images"):
        froc_curve_from_scores([0.5], [0.5], num_images=0)
    with pytest.raises(ValueError, match="num_images"):
        froc_from_matches([(np.zeros(0), np.zeros(0))] * 3, num_images=2)


def test_froc_from_matches_equals_froc_curve_across_shards():
    dets, boxes = _random_dataset(np.random.default_rng(7), num_images=40, grid=30, score_decimals=2)
    expected = froc_curve(dets, boxes)
    matches = [match_detections(d, b) for d, b in zip(dets, boxes, strict=True)]
    # simulate 3 ranks: each gathers its images' matches, then the union is combined (order does not matter)
    shards = [matches[r::3] for r in range(3)]
    gathered = [m for shard in reversed(shards) for m in shard]
    for got, exp in zip(froc_from_matches(gathered), expected, strict=True):
        np.testing.assert_array_equal(got, exp)
    # pooled scores with the image count give the same curve
    fp_all = np.concatenate([m[0] for m in matches])
    tp_all = np.concatenate([m[1] for m in matches])
    for got, exp in zip(froc_curve_from_scores(fp_all, tp_all, len(matches)), expected, strict=True):
        np.testing.assert_array_equal(got, exp)


# ----------------------------------------------------------------------------------------------------------------
# cross-checks against MONAI and a brute-force reference
# ----------------------------------------------------------------------------------------------------------------


def test_match_detections_agrees_with_monai_mask_matching():
    # non-overlapping integer boxes rasterised as an instance mask (closed intervals), integer points.
    rng = np.random.default_rng(3)
    for _ in range(20):
        boxes = _b((2, 3, 6, 8), (10, 1, 14, 4), (0, 12, 5, 15))[: rng.integers(1, 4)]
        mask = np.zeros((16, 16), dtype=np.int64)
        for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int), start=1):
            mask[y1 : y2 + 1, x1 : x2 + 1] = k
        n = rng.integers(0, 12)
        dets = np.column_stack([rng.integers(0, 16, n), rng.integers(0, 16, n), rng.random(n)]).astype(np.float64)
        fp, tp = match_detections(dets, boxes)
        coords = dets[:, [1, 0]].astype(int)  # MONAI indexes the mask as (row, col) = (y, x)
        m_fp, m_tp, m_targets = compute_fp_tp_probs_nd(dets[:, 2], coords, mask)
        np.testing.assert_array_equal(fp, m_fp)
        np.testing.assert_allclose(np.where(tp == MISSED, 0.0, tp), m_tp, rtol=1e-6)  # MONAI: float32, 0 = miss
        assert m_targets == len(boxes)


def test_curve_agrees_with_monai_curve_when_lowest_is_a_sentinel():
    # compute_froc_curve_data drops the lowest distinct score; feeding it an extra MISSED (-inf) sentinel makes the
    # dropped value the sentinel, and it then returns our curve (minus the thresholds).
    dets, boxes = _random_dataset(np.random.default_rng(11), num_images=25, grid=20, score_decimals=2)
    matches = [match_detections(d, b) for d, b in zip(dets, boxes, strict=True)]
    fp_all = np.concatenate([m[0] for m in matches])
    tp_all = np.concatenate([m[1] for m in matches])
    m_fps, m_sens = compute_froc_curve_data(fp_all, np.append(tp_all, MISSED), len(tp_all), len(dets))
    fps, sens, _ = froc_curve(dets, boxes)
    np.testing.assert_allclose(fps, m_fps)
    np.testing.assert_allclose(sens, m_sens)


def _random_dataset(
    rng: np.random.Generator, num_images: int, grid: int, score_decimals: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Small integer-grid images (many edge hits, overlaps); rounded scores give many ties."""
    dets, boxes = [], []
    for _ in range(num_images):
        m = rng.choice([0, 0, 1, 2, 3])
        xy1 = rng.integers(0, grid, (m, 2))
        xy2 = xy1 + rng.integers(0, grid // 3, (m, 2))
        boxes.append(np.concatenate([xy1, xy2], axis=1).astype(np.float64))
        n = rng.integers(0, 8)
        scores = rng.random(n)
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        dets.append(np.column_stack([rng.integers(0, grid + 5, (n, 2)), scores]).astype(np.float64))
    return dets, boxes


def _brute_force_point(dets: list[np.ndarray], boxes: list[np.ndarray], t: float) -> tuple[float, float]:
    """Naive (fps per image, sensitivity) at threshold ``t``: keep scores >= t, then count per image, per box."""
    fp_count, hit_count, box_count = 0, 0, 0
    for d, b in zip(dets, boxes, strict=True):
        kept = [(x, y) for x, y, s in d if s >= t]
        for x1, y1, x2, y2 in b:
            box_count += 1
            hit_count += any(x1 <= x <= x2 and y1 <= y <= y2 for x, y in kept)
        for x, y in kept:
            fp_count += not any(x1 <= x <= x2 and y1 <= y <= y2 for x1, y1, x2, y2 in b)
    return fp_count / len(dets), hit_count / box_count


@pytest.mark.parametrize("seed, num_images, score_decimals", [(0, 60, 1), (1, 60, 2), (2, 40, None), (3, 80, 1)])
def test_matches_brute_force_reference(seed, num_images, score_decimals):
    dets, boxes = _random_dataset(np.random.default_rng(seed), num_images, grid=20, score_decimals=score_decimals)
    if sum(len(b) for b in boxes) == 0:
        boxes[0] = _b((0, 0, 5, 5))
    fps, sens, thr = froc_curve(dets, boxes)
    # brute force at every distinct score of every detection (+inf), one full recount per threshold
    all_scores = np.unique(np.concatenate([d[:, 2] for d in dets]))
    brute_thr = np.append(all_scores, INF)
    brute = np.array([_brute_force_point(dets, boxes, t) for t in brute_thr])
    # our thresholds are the count-changing subset (scores of extra in-box points are skipped), values identical
    assert set(thr) <= set(brute_thr) and thr[0] == brute_thr[0]  # the lowest is kept
    on_ours = np.isin(brute_thr, thr)
    np.testing.assert_allclose(fps, brute[on_ours, 0], atol=1e-12)
    np.testing.assert_allclose(sens, brute[on_ours, 1], atol=1e-12)
    # the skipped thresholds only repeat a point: the set of curve points is identical
    np.testing.assert_allclose(np.unique(np.column_stack([fps, sens]), axis=0), np.unique(brute, axis=0), atol=1e-12)
    # and so is the interpolated score
    rates = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 1.0, 5.0])
    expected = np.interp(rates, brute[::-1, 0], brute[::-1, 1])
    np.testing.assert_allclose(sensitivity_at(fps, sens, rates), expected, atol=1e-12)
    assert froc_score(dets, boxes) == pytest.approx(expected[1:5].mean(), abs=1e-12)
