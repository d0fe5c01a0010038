"""Tests of the evaluation report (``scripts.evaluate.report`` and its parts): metrics against direct FROC/AUROC calls
and against the ignite validation metrics, outcomes of a hand-made case, report files."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc
from PIL import Image

from scripts.data.transforms import PackBoxesd
from scripts.evaluate.froc import froc_curve, froc_score, sensitivity_at
from scripts.evaluate.metrics import FROCMetric, ImageAUROC
from scripts.evaluate.report import write_evaluation_report
from scripts.evaluate.report_metrics import (
    CAMELYON_FP_RATES,
    PAPER_FP_RATES,
    ImageRecord,
    compute_metrics,
    detection_outcomes,
    roc_curve,
)
from scripts.evaluate.report_table import format_metrics_table

CLASSES = ("rib", "clavicle")
WIDTH, HEIGHT = 200, 160
BRIGHT = (100, 80, 140, 120)  # x1, y1, x2, y2 of a bright square in every image; also rib box B of image a


def _write_png(path: Path, bits: int) -> str:
    """A ``WIDTH x HEIGHT`` grey ramp (brighter to the right and down) with the ``BRIGHT`` square saturated."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]  # rows = y
    pixels = xx * 150.0 + yy * 60.0
    x1, y1, x2, y2 = BRIGHT
    pixels[y1:y2, x1:x2] = 60000.0
    if bits == 16:
        Image.fromarray(pixels.astype(np.uint16)).save(path)
    else:
        Image.fromarray((pixels / 257).astype(np.uint8)).save(path)
    return str(path)


def _records(folder: Path) -> list[ImageRecord]:
    """Four images (rib = 0, clavicle = 1); the last file does not exist.

    a: rib boxes A (hit by 0.9, with an extra 0.5) and B (missed), clavicle box C (hit by 0.8); rib FPs 0.7 and 0.3
       (the 0.3 lies in clavicle box C, which does not count for a rib point).
    b: negative, rib FP 0.6 and clavicle FP 0.2 (8-bit file).
    c: rib box D hit on its corner (edges count) by 0.4.
    d: missing file, rib box E missed, rib FP 0.95.
    """
    return [
        ImageRecord(
            _write_png(folder / "a.png", 16),
            image_label=np.array([1, 1]),
            image_score=np.array([0.9, 0.8]),
            detections=np.array(
                [[40, 30, 0.9, 0], [45, 35, 0.5, 0], [150, 20, 0.7, 0], [50, 110, 0.8, 1], [60, 110, 0.3, 0]]
            ),
            boxes=np.array([[20, 20, 60, 50, 0], [*BRIGHT, 0], [30, 100, 90, 130, 1]]),
        ),
        ImageRecord(
            _write_png(folder / "b.png", 8),
            image_label=torch.tensor([0, 0]),
            image_score=torch.tensor([0.6, 0.2]),
            detections=torch.tensor([[100, 100, 0.6, 0], [10, 10, 0.2, 1]]),
            boxes=torch.zeros((0, 5)),
        ),
        ImageRecord(
            _write_png(folder / "c.png", 16),
            image_label=[1, 0],
            image_score=[0.4, 0.1],
            detections=[[30, 30, 0.4, 0]],
            boxes=[[10, 10, 30, 30, 0]],
        ),
        ImageRecord(
            str(folder / "d_missing.png"),
            image_label=[1, 0],
            image_score=[0.95, 0.3],
            detections=[[150, 150, 0.95, 0]],
            boxes=[[50, 50, 80, 80, 0]],
        ),
    ]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[ImageRecord]:
    return _records(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, records: list[ImageRecord]) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    metrics = write_evaluation_report(out, records, CLASSES, model_name="net <v1> & co", num_overlays=3)
    return out, metrics


def _per_class(records: list[ImageRecord], c: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    dets = [r.detections[r.detections[:, 3] == c, :3] for r in records]
    boxes = [r.boxes[r.boxes[:, 4] == c, :4] for r in records]
    return dets, boxes


# ----------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------


def test_metrics_equal_direct_froc_and_auroc_calls(records: list[ImageRecord]) -> None:
    metrics = compute_metrics(records, CLASSES)
    assert metrics["num_images"] == 4
    assert metrics["fp_rates"] == {"paper": list(PAPER_FP_RATES), "camelyon": [float(r) for r in CAMELYON_FP_RATES]}
    for c, name in enumerate(CLASSES):
        m = metrics["classes"][name]
        dets, boxes = _per_class(records, c)
        assert m["froc_paper"] == pytest.approx(froc_score(dets, boxes, PAPER_FP_RATES), abs=5e-5)
        assert m["froc_camelyon"] == pytest.approx(froc_score(dets, boxes, CAMELYON_FP_RATES), abs=5e-5)
        fps, sens, _ = froc_curve(dets, boxes)
        rates = sorted({*PAPER_FP_RATES, *CAMELYON_FP_RATES})
        expected = dict(zip([f"{r:g}" for r in rates], sensitivity_at(fps, sens, rates), strict=True))
        assert m["sensitivity_at"] == pytest.approx(expected, abs=5e-5)
        scores = torch.tensor([float(r.image_score[c]) for r in records])
        labels = torch.tensor([float(r.image_label[c]) for r in records])
        assert m["auroc"] == pytest.approx(float(compute_roc_auc(scores, labels)), abs=5e-5)
        assert m["num_boxes"] == sum(len(b) for b in boxes)
        assert m["num_positive_images"] + m["num_negative_images"] == m["num_images"] == 4
    # hand values: rib FROC paper: sensitivity 0, 0, 0.25, 0.25 (first FP at 0.95; box A at 0.9 -> 0.25 FP/image)
    assert metrics["classes"]["rib"]["froc_paper"] == pytest.approx(0.125)
    assert metrics["classes"]["rib"]["auroc"] == pytest.approx(2 / 3, abs=5e-5)
    assert metrics["classes"]["clavicle"]["froc_paper"] == 1.0
    assert metrics["mean"]["froc_paper"] == pytest.approx((0.125 + 1.0) / 2, abs=5e-5)


def _random_records(seed: int, num_images: int = 60) -> list[ImageRecord]:
    """Records with boxes hit by a nearby detection 70 % of the time, random false positives, scores that rank
    positives higher on average, and every seventh image with image-level labels only (AUROC, no FROC)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(num_images):
        corners = rng.uniform(0, 180, (int(rng.integers(0, 3)), 2))
        sizes, classes = rng.uniform(4, 20, corners.shape), rng.integers(0, 2, len(corners))
        boxes = np.column_stack([corners, corners + sizes, classes])
        hits = [(*rng.uniform(b[:2], b[2:4]), rng.uniform(0.3, 1.0), b[4]) for b in boxes if rng.random() < 0.7]
        num_false = int(rng.integers(0, 4))
        false = [(*rng.uniform(0, 200, 2), rng.uniform(0.0, 0.8), rng.integers(0, 2)) for _ in range(num_false)]
        labels = np.array([float((boxes[:, 4] == c).any()) for c in range(len(CLASSES))])
        scores = np.clip(0.3 * labels + rng.random(len(CLASSES)), 0, 1).astype(np.float32)  # float32: as validation
        detections = np.array([*hits, *false], dtype=np.float64).reshape(-1, 4)
        records.append(ImageRecord(f"img{i}.png", labels, scores, detections, boxes.reshape(-1, 5), i % 7 != 3))
    return records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_json_equals_the_ignite_validation_metrics(seed: int) -> None:
    """On the same images, ``metrics.json`` (test report) and the ignite metrics (validation, checkpoint selection)
    give the same per-class and mean AUROC and FROC: both compute them through ``scripts.evaluate.class_metrics``."""
    records = _random_records(seed)
    report = compute_metrics(records, CLASSES)
    pack = PackBoxesd("boxes", max_boxes=8)
    tables = [
        pack({"boxes": r.boxes[:, :4], "box_classes": r.boxes[:, 4], "boxed": r.boxed})["box_table"] for r in records
    ]
    auroc, froc = ImageAUROC(CLASSES, lambda x: x), FROCMetric(CLASSES, lambda x: x, fp_rates=PAPER_FP_RATES)
    auroc.update(([torch.as_tensor(r.image_score) for r in records], [torch.as_tensor(r.image_label) for r in records]))
    froc.update(([torch.as_tensor(r.detections) for r in records], tables))
    for metric, key in ((auroc, "auroc"), (froc, "froc_paper")):
        values = metric.compute()
        for name in CLASSES:
            assert report["classes"][name][key] == round(values[name], 4), (key, name)
        mean = float(np.mean([values[name] for name in CLASSES]))
        assert report["mean"][key] == round(mean, 4)
    assert all(0 < report["classes"][name]["froc_paper"] < 1 for name in CLASSES)  # the data exercise the curve


def test_operating_threshold_is_lowest_within_fp_budget(records: list[ImageRecord]) -> None:
    metrics = compute_metrics(records, CLASSES)
    rib, clavicle = metrics["classes"]["rib"], metrics["classes"]["clavicle"]
    # rib FP scores 0.95, 0.7, 0.6, 0.3 over 4 images: >= 0.9 keeps 1 FP (0.25/image), >= 0.7 keeps 2 (0.5/image)
    assert rib["operating_threshold"] == 0.9
    assert rib["operating_fps_per_image"] == 0.25 and rib["operating_sensitivity"] == 0.25
    # clavicle: its only FP (0.2) is within the budget, so the lowest score is the threshold
    assert clavicle["operating_threshold"] == 0.2 and clavicle["operating_sensitivity"] == 1.0
    # a budget below the first FP rate keeps nothing: +inf, written as null
    strict = compute_metrics(records, CLASSES, operating_fp_rate=0.1)
    assert strict["classes"]["rib"]["operating_threshold"] is None


def test_nan_auroc_is_null_and_skipped_in_the_mean(tmp_path: Path, records: list[ImageRecord]) -> None:
    no_clavicle = [
        ImageRecord(r.image, r.image_label * [1, 0], r.image_score, r.detections, r.boxes[r.boxes[:, 4] == 0])
        for r in records
    ]
    metrics = compute_metrics(no_clavicle, CLASSES)
    clavicle = metrics["classes"]["clavicle"]
    assert clavicle["auroc"] is None and clavicle["froc_paper"] is None and clavicle["num_boxes"] == 0
    assert metrics["mean"]["auroc"] == metrics["classes"]["rib"]["auroc"]
    json.dumps(metrics, allow_nan=False)  # no NaN anywhere
    write_evaluation_report(tmp_path, no_clavicle, CLASSES, num_overlays=0)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["classes"]["clavicle"]["auroc"] is None
    assert "-" in format_metrics_table(written)


def test_invalid_records_raise() -> None:
    with pytest.raises(ValueError, match="no image records"):
        compute_metrics([], CLASSES)
    bad_class = ImageRecord("x.png", [0, 0], [0.1, 0.1], [[1, 1, 0.5, 2]])
    with pytest.raises(ValueError, match="class index"):
        compute_metrics([bad_class], CLASSES)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([ImageRecord("x.png", [0], [0.1])], CLASSES)


def test_roc_curve_area_matches_monai() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60).astype(float)
    scores = np.round(rng.random(60) * 0.5 + 0.3 * labels, 1)  # ties on purpose
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert thresholds[0] == np.inf and (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    assert (np.diff(thresholds) < 0).all()
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(float(compute_roc_auc(torch.tensor(scores), torch.tensor(labels))), abs=1e-12)


def test_detection_outcomes_rules() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [50, 50, 60, 60]], dtype=float)
    dets = np.array(
        [
            [7, 7, 0.6],  # in boxes 0 and 1; max of box 1 -> TP
            [2, 2, 0.8],  # max of box 0 -> TP
            [15, 15, 0.6],  # in box 1, ties with the first point (which comes first) -> extra
            [30, 30, 0.9],  # in no box -> FP
            [60, 60, 0.1],  # on the corner of box 2 -> TP
        ]
    )
    outcomes, box_scores = detection_outcomes(dets, boxes)
    assert list(outcomes) == ["TP", "TP", "extra-in-box", "FP", "TP"]
    np.testing.assert_array_equal(box_scores, [0.8, 0.6, 0.1])
    outcomes, box_scores = detection_outcomes(np.zeros((0, 3)), boxes)
    assert outcomes.shape == (0,) and (box_scores == -np.inf).all()


# ----------------------------------------------------------------------------------------------------------------
# report files
# ----------------------------------------------------------------------------------------------------------------


def test_all_files_written_and_non_empty(report: tuple[Path, dict]) -> None:
    out, metrics = report
    names = ["metrics.json", "detections.json", "report.html", "froc.png", "roc.png"]
    names += [f"{kind}_curve_{c}.csv" for kind in ("froc", "roc") for c in CLASSES]
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("froc.png", "roc.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 300
    # FPs by score: 0.95 (missing file, no crop), 0.7 (a), 0.6 (b); missed: B (a), E (missing), D (c, 0.4 < 0.9)
    crops = sorted(p.name for p in (out / "overlays").iterdir())
    assert crops == ["fp_01_a.png", "fp_02_b.png", "missed_00_a.png", "missed_02_c.png"]
    for name in crops:
        with Image.open(out / "overlays" / name) as image:
            assert image.size == (256, 256) and image.mode == "RGB"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["model"] == "net <v1> & co"


def test_report_is_deterministic(tmp_path: Path, report: tuple[Path, dict], records: list[ImageRecord]) -> None:
    out, _ = report
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays" / "fp_07_old.png").write_bytes(b"stale crop of an earlier run")
    write_evaluation_report(tmp_path, records, CLASSES, model_name="net <v1> & co", num_overlays=3)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_detections_json_outcomes(report: tuple[Path, dict], records: list[ImageRecord]) -> None:
    out, _ = report
    data = json.loads((out / "detections.json").read_text())
    assert data["classes"] == list(CLASSES)
    assert data["operating_threshold"] == {"rib": 0.9, "clavicle": 0.2}
    images = data["images"]
    assert [entry["image"] for entry in images] == [r.image for r in records]
    a, b, c, d = images
    assert [det["outcome"] for det in a["detections"]] == ["TP", "extra-in-box", "FP", "TP", "FP"]
    assert [det["class"] for det in a["detections"]] == ["rib", "rib", "rib", "clavicle", "rib"]
    assert [det["above_operating_threshold"] for det in a["detections"]] == [True, False, False, True, False]
    assert [(box["hit"], box["score"]) for box in a["boxes"]] == [(True, 0.9), (False, None), (True, 0.8)]
    assert a["image_label"] == {"rib": 1, "clavicle": 1} and a["image_score"] == {"rib": 0.9, "clavicle": 0.8}
    assert [det["outcome"] for det in b["detections"]] == ["FP", "FP"] and b["boxes"] == []
    assert c["detections"][0]["outcome"] == "TP"  # on the box corner
    assert c["boxes"][0] == {
        "class": "rib",
        "x1": 10.0,
        "y1": 10.0,
        "x2": 30.0,
        "y2": 30.0,
        "hit": True,
        "score": 0.4,
        "hit_at_operating_point": False,
    }
    assert d["detections"][0]["outcome"] == "FP" and d["boxes"][0]["hit"] is False


def _read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]


def test_curve_csvs(report: tuple[Path, dict]) -> None:
    out, _ = report
    froc = _read_csv(out / "froc_curve_rib.csv")
    assert list(froc[0]) == ["threshold", "fps_per_image", "sensitivity"]
    assert froc[0] == {"threshold": math.inf, "fps_per_image": 0.0, "sensitivity": 0.0}
    # lowest counted rib score is the FP 0.3; all 4 FPs over 4 images; boxes A and D hit out of 4
    assert froc[-1] == {"threshold": 0.3, "fps_per_image": 1.0, "sensitivity": 0.5}
    assert all(p["fps_per_image"] <= q["fps_per_image"] for p, q in zip(froc, froc[1:], strict=False))
    roc = _read_csv(out / "roc_curve_rib.csv")
    assert list(roc[0]) == ["threshold", "fpr", "tpr"]
    assert roc[0] == {"threshold": math.inf, "fpr": 0.0, "tpr": 0.0}
    assert roc[-1] == {"threshold": 0.4, "fpr": 1.0, "tpr": 1.0}
    assert len(_read_csv(out / "froc_curve_clavicle.csv")) == 3  # origin, 0.8 (TP), 0.2 (FP)


def test_html_has_table_values_and_existing_references(report: tuple[Path, dict]) -> None:
    out, metrics = report
    text = (out / "report.html").read_text()
    assert "net &lt;v1&gt; &amp; co" in text and "<v1>" not in text
    for name in CLASSES:
        m = metrics["classes"][name]
        row = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", text).group(1)
        values = [m["auroc"], m["froc_paper"], m["froc_camelyon"]]
        values += [m["sensitivity_at"][f"{r:g}"] for r in PAPER_FP_RATES]
        counts = [m["num_images"], m["num_positive_images"], m["num_boxes"]]
        assert row == "".join(f"<td>{v:.3f}</td>" for v in values) + "".join(f"<td>{n}</td>" for n in counts)
    assert re.search(r'<tr class="mean"><td>mean</td><td>0\.833</td><td>0\.562</td>', text)
    sources = re.findall(r'src="([^"]+)"', text)
    assert {"froc.png", "roc.png", "overlays/fp_01_a.png", "overlays/missed_02_c.png"} <= set(sources)
    for source in sources:
        assert (out / source).is_file(), source
    assert "<script" not in text.lower() and "http" not in text.lower()
    assert "0.9000" in text  # rib operating threshold


def test_missing_image_is_reported_not_fatal(report: tuple[Path, dict]) -> None:
    out, _ = report
    text = (out / "report.html").read_text()
    assert "image could not be loaded" in text and "d_missing.png: file not found" in text
    assert "Images without overlays" in text
    assert not any("d_missing" in p.name for p in (out / "overlays").iterdir())


def test_overlay_crop_orientation(report: tuple[Path, dict]) -> None:
    """The missed box B is the bright square: file (x, y) must land on crop (column, row), not transposed."""
    out, _ = report
    crop = np.asarray(Image.open(out / "overlays" / "missed_00_a.png"))  # rows = y
    # crop side 3 x 40 = 120 px around B's centre (120, 100): origin (60, 40), scale 256 / 120
    scale = 256 / 120

    def pixel(x: float, y: float) -> np.ndarray:
        return crop[int((y - 40) * scale), int((x - 60) * scale)]

    assert (pixel(130, 88) > 240).all()  # inside B, near its top right (bright)
    # the ramp rises 150 per pixel in x but 60 in y: transposed, the top right corner would be the darker one
    assert int(pixel(175, 45)[0]) > int(pixel(65, 155)[0]) + 25
    green = pixel(BRIGHT[0], 100)  # B's left edge carries the green outline
    assert green[1] > 200 and green[0] < 50 and green[2] < 100


def test_format_metrics_table(report: tuple[Path, dict]) -> None:
    _, metrics = report
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["Class", "AUROC"]
    for name in (*CLASSES, "mean"):
        assert any(line.startswith(name) for line in lines)
    assert f"{metrics['classes']['rib']['froc_paper']:.3f}" in table
    assert len({len(line) for line in lines}) == 1 and len(lines[0]) <= 120  # aligned columns, fits a terminal
