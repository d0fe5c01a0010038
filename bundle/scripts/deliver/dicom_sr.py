"""DICOM Structured Report of the findings: one Comprehensive 3D SR (TID 1500 measurement report) per study.

A PACS or viewer reads the bundle's findings from this SR, not from its JSON. MONAI writes no such report
(MONAI Deploy writes SEG and a basic-text SR only), so it is built here with ``highdicom``, an optional extra
(``pip install -r requirements-deploy.txt``): this module imports it only when a report is written.

Content of the report of one study (every image of that study run through inference)::

    TID 1500 Imaging Measurement Report, procedure reported (SCT 399208008, "Plain chest X-ray")
      observer: device (the model: name and version)
      per finding (a detection at or above its class's operating point), TID 1410 planar ROI group:
        tracking identifier "<class> finding <k>" (unique UID)
        finding type: SCT 33737001 "Fracture of rib" or SCT 58150001 "Fracture of clavicle"
        image region: SCOORD POINT (x, y) in the source image's pixels, referencing its SOP Instance UID
        measurement: DCM 111012 "Certainty of Finding" = score x 100 (2 decimals), UCUM "%"
      per image and class, TID 1501 group (image-level result):
        tracking identifier "<class> image result <SOP Instance UID>"
        finding type (as above), source image reference
        qualitative evaluation: finding type = SCT 52101004 "Present" or SCT 272519000 "Absent" (the image call)
        measurement: DCM 111012 "Certainty of Finding" = image score x 100, UCUM "%"

Optionally (``presentation_states=True``, config key ``write_dicom_gsps``) a Grayscale Softcopy Presentation
State per image, ``pr_<SOPInstanceUID>.dcm``, draws the same findings (a circle and a "<class> fracture <score>"
label each, layer ``AI FINDINGS``) for viewers that show SR poorly.

Points: DICOM SCOORD puts (0, 0) at the top-left corner of the top-left pixel, x along columns, y along rows,
which is the bundle's own continuous pixel convention, so ``x``/``y`` of the JSON are written unchanged.
Patient, study and equipment attributes of the report are copied from the source images by highdicom.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from scripts.data.loading import image_format
from scripts.evaluate.operating_point import finding_flags

if TYPE_CHECKING:
    from ignite.engine import Engine
    from pydicom import Dataset

__all__ = ["FINDING_CODES", "DicomSRWriter", "build_presentation_state", "build_study_report"]

logger = logging.getLogger(__name__)

#: SNOMED CT finding type per class: (code value, meaning).
FINDING_CODES: dict[str, tuple[str, str]] = {
    "rib": ("33737001", "Fracture of rib"),
    "clavicle": ("58150001", "Fracture of clavicle"),
}
#: SNOMED CT procedure reported.
PROCEDURE_CODE = ("399208008", "Plain chest X-ray")
#: DCM concept of the score (CAD SR usage: percent certainty).
CERTAINTY_CODE = ("111012", "Certainty of Finding")


def _codes() -> Any:
    """The coded concepts (highdicom imported here, not at module import)."""
    from highdicom.sr import CodedConcept

    class Codes:
        finding = {name: CodedConcept(value, "SCT", meaning) for name, (value, meaning) in FINDING_CODES.items()}
        procedure = CodedConcept(PROCEDURE_CODE[0], "SCT", PROCEDURE_CODE[1])
        certainty = CodedConcept(CERTAINTY_CODE[0], "DCM", CERTAINTY_CODE[1])
        percent = CodedConcept("%", "UCUM", "percent")
        present = CodedConcept("52101004", "SCT", "Present")
        absent = CodedConcept("272519000", "SCT", "Absent")

    return Codes


def build_study_report(
    images: Sequence[tuple[Dataset, Mapping[str, Any]]],
    class_names: Sequence[str],
    operating_point: Mapping[str, Mapping[str, float | None]],
    algorithm_name: str = "cxr_rib_fracture_aals",
    algorithm_version: str = "0",
    series_number: int = 9001,
) -> Any:
    """The Comprehensive 3D SR of one study.

    Args:
        images: per image of the study its DICOM header (pixel data not needed) and its result, with
            ``detections`` ``(K, 4)`` rows ``(x, y, score, class_index)`` in file pixels and ``image_score`` ``(C,)``.
        class_names: class names in channel order (each needs a code in :data:`FINDING_CODES`).
        operating_point: per-class thresholds (:func:`scripts.evaluate.operating_point.load_operating_point`).
        algorithm_name, algorithm_version: the observer device and algorithm identification.
        series_number: SeriesNumber of the report.

    Returns:
        ``highdicom.sr.Comprehensive3DSR``.
    """
    import highdicom as hd
    from highdicom import sr
    from pydicom.sr.codedict import codes

    unknown = [name for name in class_names if name not in FINDING_CODES]
    if unknown:
        raise ValueError(f"no finding code for class(es) {unknown}; known: {sorted(FINDING_CODES)}.")
    studies = {str(ds.StudyInstanceUID) for ds, _ in images}
    if len(studies) != 1:
        raise ValueError(f"one report per study: got images of {len(studies)} studies.")
    coded = _codes()
    algorithm = sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    device_uid = hd.UID()
    observer = sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=sr.DeviceObserverIdentifyingAttributes(uid=device_uid, name=algorithm_name),
    )
    groups: list[Any] = []
    for ds, result in images:
        rows = np.asarray(torch.as_tensor(result["detections"]).detach().cpu(), dtype=np.float64).reshape(-1, 4)
        findings, calls = finding_flags(rows, operating_point, class_names)
        scores = np.asarray(torch.as_tensor(result["image_score"]).detach().cpu(), dtype=np.float64).reshape(-1)
        region_source = sr.SourceImageForRegion.from_source_image(ds)
        counts: dict[str, int] = defaultdict(int)
        for (x, y, score, cls), finding in zip(rows.tolist(), findings.tolist(), strict=True):
            if not finding:
                continue
            name = class_names[int(cls)]
            counts[name] += 1
            groups.append(
                sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=sr.TrackingIdentifier(
                        uid=hd.UID(), identifier=f"{name} finding {counts[name]}"
                    ),
                    referenced_region=sr.ImageRegion(
                        graphic_type=sr.GraphicTypeValues.POINT,
                        graphic_data=np.array([[x, y]], dtype=np.float64),
                        source_image=region_source,
                    ),
                    finding_type=coded.finding[name],
                    algorithm_id=algorithm,
                    measurements=[
                        sr.Measurement(name=coded.certainty, value=round(100.0 * score, 2), unit=coded.percent)
                    ],
                )
            )
        for c, name in enumerate(class_names):
            groups.append(
                sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=sr.TrackingIdentifier(
                        uid=hd.UID(), identifier=f"{name} image result {ds.SOPInstanceUID}"
                    ),
                    finding_type=coded.finding[name],
                    algorithm_id=algorithm,
                    source_images=[sr.SourceImageForMeasurementGroup.from_source_image(ds)],
                    qualitative_evaluations=[
                        sr.QualitativeEvaluation(
                            name=coded.finding[name], value=coded.present if calls[name] else coded.absent
                        )
                    ],
                    measurements=[
                        sr.Measurement(name=coded.certainty, value=round(100.0 * scores[c], 2), unit=coded.percent)
                    ],
                )
            )
    report = sr.MeasurementReport(
        observation_context=sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coded.procedure,
        imaging_measurements=groups,
    )
    return sr.Comprehensive3DSR(
        evidence=[ds for ds, _ in images],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MONAI bundle " + algorithm_name,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="AI rib/clavicle fracture findings",
    )


def build_presentation_state(
    ds: Dataset,
    result: Mapping[str, Any],
    class_names: Sequence[str],
    operating_point: Mapping[str, Mapping[str, float | None]],
    algorithm_name: str = "cxr_rib_fracture_aals",
    algorithm_version: str = "0",
    series_number: int = 9002,
) -> Any:
    """Grayscale Softcopy Presentation State of one image drawing its findings (``result`` as in
    :func:`build_study_report`): per finding a circle (radius 1 % of the longer image side) around the point and a
    text "<class> fracture <score>" anchored at it, in pixel units of the source image.

    Returns:
        ``highdicom.pr.GrayscaleSoftcopyPresentationState``.
    """
    import highdicom as hd

    rows = np.asarray(torch.as_tensor(result["detections"]).detach().cpu(), dtype=np.float64).reshape(-1, 4)
    findings, _ = finding_flags(rows, operating_point, class_names)
    radius = max(2.0, 0.01 * max(int(ds.Rows), int(ds.Columns)))
    layer = hd.pr.GraphicLayer(layer_name="AI FINDINGS", order=1, description="rib/clavicle fracture findings")
    graphics, texts = [], []
    for k, ((x, y, score, cls), finding) in enumerate(zip(rows.tolist(), findings.tolist(), strict=True)):
        if not finding:
            continue
        name = class_names[int(cls)]
        edge = x + radius if x + radius <= int(ds.Columns) else x - radius  # the point on the circle stays inside
        circle = np.array([[x, y], [edge, y]], dtype=np.float64)  # centre, then a point on the circle
        graphics.append(hd.pr.GraphicObject(hd.pr.GraphicTypeValues.CIRCLE, circle, "PIXEL", tracking_id=f"{k}",
                                            tracking_uid=hd.UID()))  # fmt: skip
        texts.append(hd.pr.TextObject(f"{name} fracture {score:.2f}", "PIXEL", anchor_point=(x, y)))
    annotations = []
    if graphics:
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[ds], graphic_layer=layer, graphic_objects=graphics, text_objects=texts
            )  # fmt: skip
        )
    state = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[ds],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MONAI bundle " + algorithm_name,
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="none",
        content_label="AI_FINDINGS",
        content_description="rib/clavicle fracture findings at the operating point",
        graphic_annotations=annotations or None,
        graphic_layers=[layer] if annotations else None,
    )
    # General Series Laterality (type 2C): a chest radiograph shows no single side, so it is present and empty.
    state.Laterality = ds.get("Laterality", "")
    return state


class DicomSRWriter:
    """Write ``sr_<StudyInstanceUID>.dcm`` per study of the DICOM inputs when inference completes (and, with
    ``presentation_states``, ``pr_<SOPInstanceUID>.dcm`` per DICOM image).

    Non-DICOM inputs and refused files are passed over. A study whose report cannot be built (e.g. a source
    without the patient or study attributes a report must copy) is logged with the reason; the others are written.

    Args:
        output_dir: folder of the reports (the inference output folder).
        class_names: class names in channel order.
        operating_point: per-class thresholds (:func:`scripts.evaluate.operating_point.load_operating_point`).
        algorithm_name, algorithm_version: written as the observer device and algorithm.
        structured_report: write the SR per study.
        presentation_states: write a Grayscale Softcopy Presentation State per image.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        operating_point: Mapping[str, Mapping[str, float | None]],
        algorithm_name: str = "cxr_rib_fracture_aals",
        algorithm_version: str = "0",
        structured_report: bool = True,
        presentation_states: bool = False,
    ) -> None:
        import highdicom  # noqa: F401  (fail at start, with the install hint, not after the whole run)

        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.operating_point = operating_point
        self.algorithm_name, self.algorithm_version = algorithm_name, str(algorithm_version)
        self.structured_report, self.presentation_states = bool(structured_report), bool(presentation_states)
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.written: list[Path] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.results.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _collect(self, engine: Engine) -> None:
        for item, batch_item in zip(engine.state.output, engine.state.batch, strict=True):
            data = {**batch_item, **item}
            path = str(data.get("image_path", ""))
            if data.get("error") or not path or image_format(path) != "dicom":
                continue
            detections = torch.as_tensor(data["detections"]).detach().cpu().clone()
            self.results.append((path, {"detections": detections, "image_score": data["image_score"]}))

    def write(self, engine: Engine | None = None) -> list[Path]:
        """Write one report per study of the collected DICOM results; return the files written."""
        from pydicom import dcmread

        by_study: dict[str, list[tuple[Any, dict]]] = defaultdict(list)
        for path, result in self.results:
            header = dcmread(path, stop_before_pixels=True)
            by_study[str(header.get("StudyInstanceUID", ""))].append((header, result))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.written = []
        for study, images in sorted(by_study.items()):
            files = ", ".join(str(ds.filename) for ds, _ in images)
            if not study:
                logger.warning("no DICOM SR for %s: the file has no StudyInstanceUID.", files)
                continue
            args = (self.class_names, self.operating_point, self.algorithm_name, self.algorithm_version)
            outputs = []
            if self.structured_report:
                outputs.append((f"sr_{study}.dcm", partial(build_study_report, images, *args)))
            if self.presentation_states:
                for ds, result in images:
                    outputs.append(
                        (f"pr_{ds.SOPInstanceUID}.dcm", partial(build_presentation_state, ds, result, *args))
                    )
            for name, build in outputs:
                try:
                    dataset = build()
                except (ValueError, TypeError, AttributeError) as error:
                    logger.warning("no %s for study %s (%s): %s", name, study, files, error)
                    continue
                dataset.save_as(self.output_dir / name, enforce_file_format=True)
                self.written.append(self.output_dir / name)
        logger.info("DICOM SR/GSPS: %d file(s) written to %s", len(self.written), self.output_dir)
        return self.written
