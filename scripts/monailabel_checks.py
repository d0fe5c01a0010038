"""The MONAI Label side of ``scripts/check_monailabel.py``: runs inside ``.venv-monailabel`` (monailabel 0.8.5).

It is started by ``check_monailabel.py`` with a work folder that already holds the phantom images, label maps,
the test weights and the reference label maps computed with the project's own environment (``manifest.json``).
Every check prints one ``PASS``/``FAIL`` line; the exit code is the number of failures (capped at 100).

Steps: ``monailabel apps --download --name monaibundle`` (the sample app ships inside the wheel), the bundle
copied to ``apps/monaibundle/model/<name>``, ``BundleInferTask`` on a DICOM and a PNG, the sample app itself
(what ``start_server --conf models <name> --conf zoo_source github`` builds) for inference and one epoch of
training on image/label pairs, and optionally the real server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# MONAI Label reads its settings once at import: the local datastore must list DICOM files too (its default
# extensions are NIfTI, NRRD, JPEG, PNG, TIFF, SVS, XML).
os.environ.setdefault("MONAI_LABEL_DATASTORE_FILE_EXT", '["*.png", "*.dcm"]')

import numpy as np  # noqa: E402

EXPECTED_LABELS = {"rib": 1, "clavicle": 2}
#: Prefix of report lines: MONAI Label and the bundle log to the same stdout, and check_monailabel.py keeps only these.
MARK = "@@ "
RESULTS: list[tuple[str, bool, str]] = []


def venv_env() -> dict[str, str]:
    """Environment for the ``monailabel`` command: its launcher runs ``python`` from ``PATH`` (an activated venv)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def say(text: str) -> None:
    """Print a report line (every line of a multi-line text gets the report prefix)."""
    print("\n".join(MARK + line for line in text.splitlines()), flush=True)


def check(name: str, ok: bool, detail: str = "") -> bool:
    """Record and print one check."""
    RESULTS.append((name, bool(ok), detail))
    text = f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  -- {detail}" if detail else "")
    say(text)
    return bool(ok)


def guarded(name: str, step: Callable[[], Any]) -> Any:
    """Run a step; an exception is one FAIL line with its last traceback lines, not the end of the run."""
    try:
        return step()
    except Exception as error:  # report and go on with the other checks
        lines = traceback.format_exc().strip().splitlines()
        check(name, False, f"{type(error).__name__}: {error}\n      " + "\n      ".join(lines[-8:]))
        return None


def read_label_file(path: str) -> np.ndarray:
    """Read a written label file as ``(W, H)`` (axis 0 = x), the layout of the bundle's loader."""
    import itk

    image = itk.imread(str(path))
    array = itk.array_view_from_image(image)  # ITK arrays are row-major: (H, W)
    return np.asarray(array).T.copy()


def compare_label(name: str, label: np.ndarray, item: dict[str, Any], work: Path) -> None:
    """Size, orientation (against the project's reference map), values and non-triviality of one label map."""
    width, height = item["size"]
    check(
        f"{name}: label map is (W, H) = ({width}, {height}), the input's size",
        label.shape == (width, height),
        f"got {label.shape}",
    )
    reference = np.load(work / item["reference_label"])
    if label.shape == reference.shape:
        agreement = float((label == reference).mean())
        flipped = float((label[::-1] == reference).mean())
        check(
            f"{name}: label map equals the project's own inference (same orientation)",
            agreement >= 0.999,
            f"agreement {agreement:.5f} (a left-right flip would agree {flipped:.3f})",
        )
    values = sorted(int(v) for v in np.unique(label))
    check(f"{name}: label values are a subset of {{0, 1, 2}}", set(values) <= {0, 1, 2}, f"values {values}")
    check(
        f"{name}: label map is not trivial (background and a fracture class)",
        len(values) >= 2,
        f"pixels per value {dict(zip(values, np.bincount(label.ravel())[values].tolist(), strict=True))}",
    )


def compare_result(name: str, result: dict[str, Any], item: dict[str, Any], work: Path) -> None:
    """Detections and image scores of MONAI Label's result JSON against the reference."""
    width, height = item["size"]
    json.dumps(result)  # must be serialisable: MONAI Label sends it to the viewer
    detections = result.get("detections")
    check(
        f"{name}: result JSON has detections",
        isinstance(detections, list) and len(detections) > 0,
        f"{len(detections or [])} detections",
    )
    inside = all(
        d["class"] in EXPECTED_LABELS and 0 <= d["x"] <= width and 0 <= d["y"] <= height for d in detections or []
    )
    check(f"{name}: detections have a fracture class and lie inside the {width} x {height} image", inside)
    reference = json.loads((work / item["reference_result"]).read_text())
    same = len(detections or []) == len(reference["detections"]) and all(
        a["class"] == b["class"] and abs(a["x"] - b["x"]) <= 0.11 and abs(a["y"] - b["y"]) <= 0.11
        for a, b in zip(detections or [], reference["detections"], strict=False)
    )
    check(
        f"{name}: detections and image scores equal the project's own inference",
        same and all(abs(result["image_score"][c] - reference["image_score"][c]) < 1e-3 for c in EXPECTED_LABELS),
        f"image_score {result.get('image_score')} vs {reference['image_score']}",
    )
    check(
        f"{name}: result label_names are rib=1, clavicle=2",
        result.get("label_names") == EXPECTED_LABELS,
        f"{result.get('label_names')}",
    )


def prepare_app(work: Path, bundle: Path, name: str) -> Path:
    """Download the monaibundle sample app (from the installed wheel) and copy the bundle in as ``model/<name>``."""
    apps = work / "apps"
    shutil.rmtree(apps, ignore_errors=True)
    cli = Path(sys.executable).parent / "monailabel"
    run = subprocess.run(
        [str(cli), "apps", "--download", "--name", "monaibundle", "--output", str(apps)],
        capture_output=True,
        text=True,
        timeout=300,
        env=venv_env(),
    )
    app = apps / "monaibundle"
    check(
        "monailabel apps --download --name monaibundle",
        run.returncode == 0 and (app / "main.py").is_file(),
        (run.stdout + run.stderr).strip().splitlines()[-1] if (run.stdout + run.stderr).strip() else "",
    )
    target = app / "model" / name
    ignore = shutil.ignore_patterns("__pycache__", "runs", "eval", "*.pt", "*.ts")
    for part in ("configs", "scripts", "docs"):
        shutil.copytree(bundle / part, target / part, ignore=ignore)
    shutil.copy(bundle / "LICENSE", target / "LICENSE")
    (target / "models").mkdir(parents=True)
    shutil.copy(work / "model.pt", target / "models" / "model.pt")
    say(f"      bundle copied to {target}")
    return app


def check_infer_task(bundle_dir: Path, manifest: dict[str, Any], work: Path) -> Any:
    """``BundleInferTask`` as a MONAI Label app builds it, on the DICOM and the PNG."""
    from monailabel.tasks.infer.bundle import BundleInferTask

    task = BundleInferTask(str(bundle_dir), conf={})
    check("BundleInferTask accepts the bundle", task.is_valid())
    info = task.info()
    check("task.info() labels are rib=1, clavicle=2", info.get("labels") == EXPECTED_LABELS, f"{info.get('labels')}")
    check(
        "task type is segmentation, 2D",
        str(info.get("type")) in ("segmentation", "InferType.SEGMENTATION") and info.get("dimension") == 2,
        f"type {info.get('type')}, dimension {info.get('dimension')}",
    )
    for item in manifest["infer"]:
        name = f"BundleInferTask {item['format']} {Path(item['path']).name}"
        label_file, result = task({"image": item["path"], "device": "cpu", "result_extension": ".nrrd"})
        check(f"{name}: label file written", bool(label_file) and Path(label_file).is_file(), str(label_file))
        compare_label(name, read_label_file(label_file), item, work)
        compare_result(name, result, item, work)
    return task


def load_sample_app(app_dir: Path, studies: Path, name: str) -> Any:
    """The monaibundle sample app's ``MyApp`` with the documented ``--conf`` values."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("monaibundle_main", app_dir / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(app_dir))
    spec.loader.exec_module(module)
    conf = {"models": name, "zoo_source": "github", "sam2": "false", "preload": "false"}
    return module.MyApp(str(app_dir), str(studies), conf)


def image_id(app: Any, path: str) -> str:
    """The datastore id of an image file (its name without the extension)."""
    ids = app.datastore().list_images()
    stem = Path(path).name.split(".")[0]
    return next(i for i in ids if i == stem)


def check_sample_app(app: Any, manifest: dict[str, Any], work: Path, name: str) -> None:
    """Inference through the sample app, as the server's ``/infer/<model>`` endpoint calls it."""
    models = app.info().get("models", {})
    check(
        f"sample app serves '{name}' with labels rib=1, clavicle=2",
        models.get(name, {}).get("labels") == EXPECTED_LABELS,
        f"models {list(models)}",
    )
    item = next(i for i in manifest["infer"] if i["format"] == "dicom")
    res = app.infer({"model": name, "image": image_id(app, item["path"]), "device": "cpu", "result_extension": ".nrrd"})
    compare_label(f"sample app infer {Path(item['path']).name}", read_label_file(res["file"]), item, work)


def check_training(app: Any, manifest: dict[str, Any], bundle_dir: Path, name: str) -> None:
    """One epoch of MONAI Label's bundle training (``configs/train.json`` + its overrides) on image/label pairs."""
    import torch

    datastore = app.datastore()
    for pair in manifest["train"]:
        datastore.save_label(image_id(app, pair["image"]), pair["label"], "final", {})
    pairs = datastore.datalist()
    check("datastore lists image/label pairs for training", len(pairs) == len(manifest["train"]), f"{len(pairs)} pairs")
    models = bundle_dir / "models"
    before = (models / "model.pt").stat().st_mtime
    started = time.time()
    app.train({"model": name, "max_epochs": 1, "device": "cpu", "multi_gpu": False, "val_split": 0.25})
    final = models / "checkpoint_final.pt"
    check(
        "MONAI Label training runs one epoch of configs/train.json",
        final.is_file(),
        f"{time.time() - started:.0f} s; {sorted(p.name for p in models.iterdir())}",
    )
    if final.is_file():
        state = torch.load(final, map_location="cpu", weights_only=True)["trainer"]
        check(
            "training checkpoint records epoch 1 of 1",
            state.get("max_epochs") == 1 and state.get("iteration", 0) >= 1,
            f"trainer state {dict(state)}",
        )
    check(
        "model.pt (what MONAI Label serves) was rewritten by the validation's checkpoint saver",
        (models / "model.pt").stat().st_mtime > before,
    )


def check_server(work: Path, app_dir: Path, studies: Path, name: str, manifest: dict[str, Any], port: int) -> None:
    """The documented ``monailabel start_server`` command, on 127.0.0.1, with one JSON and one label request."""
    cli = Path(sys.executable).parent / "monailabel"
    command = [
        str(cli),
        "start_server",
        "--app",
        str(app_dir),
        "--studies",
        str(studies),
        "--conf",
        "models",
        name,
        "--conf",
        "zoo_source",
        "github",
        "--conf",
        "sam2",
        "false",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    say("      $ monailabel " + " ".join(command[1:]))
    log = (work / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=venv_env())
    base = f"http://127.0.0.1:{port}"
    try:
        info = None
        for _ in range(180):
            try:
                with urllib.request.urlopen(f"{base}/info/", timeout=5) as response:
                    info = json.loads(response.read())
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(1)
        check(
            "start_server answers /info/ with the bundle's labels",
            bool(info) and info["models"].get(name, {}).get("labels") == EXPECTED_LABELS,
            f"see {work / 'server.log'}" if not info else "",
        )
        if not info:
            return
        item = next(i for i in manifest["infer"] if i["format"] == "png")
        stem = Path(item["path"]).name.split(".")[0]
        for output in ("json", "image"):
            query = urllib.parse.urlencode({"image": stem, "output": output})
            request = urllib.request.Request(f"{base}/infer/{name}?{query}", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=600) as response:
                body = response.read()
            if output == "json":
                params = json.loads(body)
                check(
                    "POST /infer returns detections in the JSON",
                    len(params.get("detections", [])) > 0,
                    f"{len(params.get('detections', []))} detections, label_names {params.get('label_names')}",
                )
            else:
                path = work / "server_label.png"
                path.write_bytes(body)
                compare_label("POST /infer label (PNG)", read_label_file(str(path)), item, work)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder prepared by check_monailabel.py")
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder to copy into the app")
    parser.add_argument("--name", default="cxr_rib_fracture_aals", help="model name (never containing 'detection')")
    parser.add_argument("--server-port", type=int, default=0, help="also run start_server on this port (0: skip)")
    args = parser.parse_args(argv)
    # MONAI Label and the bundle print their own log lines too; check_monailabel.py keeps them out of the report
    logging.basicConfig(filename=args.work / "monailabel.log", level=logging.INFO, force=True)

    import monai
    import monailabel
    import pydicom
    import torch
    import torchvision

    say(
        f"      monailabel {monailabel.__version__}, monai {monai.__version__}, torch {torch.__version__}, "
        f"numpy {np.__version__}, pydicom {pydicom.__version__}, torchvision {torchvision.__version__}"
    )
    check("monailabel 0.8.5 imports", monailabel.__version__.startswith("0.8.5"), monailabel.__version__)
    manifest = json.loads((args.work / "manifest.json").read_text())
    app_dir = guarded("sample app", lambda: prepare_app(args.work, args.bundle, args.name))
    if app_dir is None:
        return 1
    bundle_dir = app_dir / "model" / args.name
    guarded("BundleInferTask", lambda: check_infer_task(bundle_dir, manifest, args.work))
    app = guarded("sample app start", lambda: load_sample_app(app_dir, Path(manifest["studies"]), args.name))
    if app is not None:
        guarded("sample app inference", lambda: check_sample_app(app, manifest, args.work, args.name))
    if args.server_port:  # before training, which replaces the weights the reference maps were made with
        guarded(
            "start_server",
            lambda: check_server(args.work, app_dir, Path(manifest["studies"]), args.name, manifest, args.server_port),
        )
    if app is not None:
        guarded("MONAI Label training", lambda: check_training(app, manifest, bundle_dir, args.name))
    failed = [name for name, ok, _ in RESULTS if not ok]
    say(f"monailabel checks: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return min(len(failed), 100)


if __name__ == "__main__":
    sys.exit(main())
