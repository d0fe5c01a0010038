"""Check that the bundle works as a MONAI Label 0.8.5 model, in a separate environment built for it.

Heavy (a 3 GB environment, a few minutes of CPU); not part of ``bash scripts/run_tests.sh``. Run it as::

    bash scripts/check_monailabel.sh            # or: .venv/bin/python scripts/check_monailabel.py [options]

Steps, each reported as PASS or FAIL:

1. Build ``.venv-monailabel`` (never the project's ``.venv``): CPU ``torch==2.13.0``, then
   ``scripts/monailabel-requirements.txt`` and ``monailabel==0.8.5 --no-deps``, and a stand-in ``torchvision``
   (see :func:`install_torchvision_stub`). Skipped while the requirements are unchanged.
2. In the project's environment (this interpreter): write phantom radiographs with the repository's generator
   (a portrait DICOM and a landscape 16-bit PNG for inference, four pairs of image and label map for training),
   test weights for the bundle's full network, and the reference label maps and JSON of the bundle's own
   pipeline on the same images.
3. In ``.venv-monailabel``: ``scripts/monailabel_checks.py`` (sample app, ``BundleInferTask``, the app's
   inference, ``start_server`` on 127.0.0.1 unless ``--server-port 0``, one epoch of training).

The test weights are the bundle's network with a random initialisation and its last bias set so that each class
crosses the 0.5 threshold on about 30 % of the two test images: the label map is a pattern whose every pixel is
compared with the reference, which a flip or a transposition would not match. A model trained for a few
minutes would give an empty map, and the check is about the integration, not the model.

The whole report is also written to ``--report`` (default ``bundle/docs/monailabel_check.txt``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from repo_paths import BUNDLE_ROOT as BUNDLE
from repo_paths import REPO_ROOT as REPO

REQUIREMENTS = REPO / "scripts" / "monailabel-requirements.txt"
TORCH = "torch==2.13.0"
MONAILABEL = "monailabel==0.8.5"
#: Prefix of the report lines of monailabel_checks.py among the log lines of MONAI Label and the bundle.
MARK = "@@ "

# The stand-in torchvision. monailabel/transform/post.py imports ``torchvision.utils`` at module level for a
# pathology debugging transform; every MONAI Label task imports that module. No torchvision build here fits CPU
# torch 2.13.0, so the import is satisfied by this stub, which refuses to be used.
TORCHVISION_STUB = {
    "__init__.py": '''"""Stand-in for torchvision in .venv-monailabel only (written by scripts/check_monailabel.py).

monailabel 0.8.5 imports torchvision.utils at module level (monailabel/transform/post.py) for a pathology
debugging transform this bundle never uses. No torchvision build here matches the CPU torch 2.13.0, so this
stub lets the import succeed; calling anything in it raises.
"""

__version__ = "0.0.0+stub"
''',
    "utils.py": '''"""Stub of torchvision.utils: the names monailabel imports, raising if called."""


def make_grid(*args, **kwargs):
    raise NotImplementedError("torchvision is a stub in this environment (see torchvision/__init__.py)")


def save_image(*args, **kwargs):
    raise NotImplementedError("torchvision is a stub in this environment (see torchvision/__init__.py)")
''',
}


class Report:
    """Print to the terminal and to the report file at once."""

    def __init__(self, path: Path | None) -> None:
        self.file: TextIO | None = path.open("w") if path else None
        self.failures: list[str] = []
        self.passes = 0

    def line(self, text: str) -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.line(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  -- {detail}" if detail else ""))
        if ok:
            self.passes += 1
        else:
            self.failures.append(name)
        return ok


def _stamp() -> str:
    text = REQUIREMENTS.read_text() + TORCH + MONAILABEL + json.dumps(TORCHVISION_STUB)
    return hashlib.sha256(text.encode()).hexdigest()


def install_torchvision_stub(venv: Path) -> Path:
    """Write the stand-in ``torchvision`` package into the environment's site-packages (see the module notes)."""
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(site) / "torchvision"
    package.mkdir(exist_ok=True)
    for name, text in TORCHVISION_STUB.items():
        (package / name).write_text(text)
    return package


def build_venv(venv: Path, report: Report, rebuild: bool) -> bool:
    """Create or reuse the MONAI Label environment; report install time and size."""
    stamp_file = venv / ".check_monailabel.sha256"
    if venv.resolve() == (REPO / ".venv").resolve():
        return report.check("separate environment", False, f"{venv} is the project's own environment")
    if rebuild and venv.exists():
        shutil.rmtree(venv)
    if stamp_file.is_file() and stamp_file.read_text() == _stamp():
        return report.check("MONAI Label environment", True, f"reusing {venv} (requirements unchanged)")
    started = time.time()
    python = shutil.which("python3.11") or sys.executable
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [
        [python, "-m", "venv", str(venv)],
        [*pip, TORCH],  # first and alone: the CPU build on local disk; a bare resolve could pull a CUDA build
        [*pip, TORCH, "-r", str(REQUIREMENTS)],
        [*pip, "--no-deps", MONAILABEL],  # its torchvision and sam2 requirements are left out on purpose
    ]
    for command in steps:
        report.line("      $ " + " ".join(command[2:] if command[0] != python else command))
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            output = "\n".join(
                line
                for line in (result.stdout + result.stderr).splitlines()
                if "is neither a file nor a directory" not in line
            )
            return report.check("MONAI Label environment", False, output[-3000:])
    install_torchvision_stub(venv)
    stamp_file.write_text(_stamp())
    size = subprocess.run(["du", "-sh", str(venv)], capture_output=True, text=True).stdout.split()[0]
    return report.check("MONAI Label environment", True, f"built {venv} in {time.time() - started:.0f} s, {size}")


def _paint_label(shape: tuple[int, int], boxes: Any, classes: Any) -> Any:
    """Label map (rows, cols) uint8 with every fracture box painted 1 (rib) or 2 (clavicle)."""
    import numpy as np

    label = np.zeros(shape, np.uint8)
    for (x1, y1, x2, y2), name in zip(boxes, classes, strict=True):
        label[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = 1 + ("rib", "clavicle").index(name)
    return label


def write_images(work: Path) -> dict[str, Any]:
    """Phantom radiographs (project environment: the generator writes DICOM with pydicom 3) and a manifest."""
    import numpy as np
    from PIL import Image

    from cxr_phantom import render_phantom, write_dicom, write_png

    studies = work / "studies"
    labels = work / "label_maps"
    for folder in (studies, labels):
        folder.mkdir(parents=True)
    phantom = render_phantom(np.random.default_rng([11, 0]), size=320, difficulty=0.0, num_fractures=2).pixels
    portrait = np.ascontiguousarray(phantom[:, 40:240])  # 320 rows x 200 columns: W = 200, H = 320
    write_dicom(studies / "cxr_portrait.dcm", portrait, uid_key="monailabel-check-portrait", patient_index=1)
    phantom = render_phantom(np.random.default_rng([11, 1]), size=320, difficulty=0.0, num_fractures=2).pixels
    landscape = np.ascontiguousarray(phantom[60:250])  # 190 rows x ~290 columns: W > H
    write_png(studies / "cxr_landscape.png", landscape)
    infer = [
        {"format": "dicom", "path": str(studies / "cxr_portrait.dcm"), "size": [portrait.shape[1], portrait.shape[0]]},
        {"format": "png", "path": str(studies / "cxr_landscape.png"), "size": [landscape.shape[1], landscape.shape[0]]},
    ]
    train = []
    for index in range(4):
        image = render_phantom(np.random.default_rng([12, index]), size=256, difficulty=0.0, num_fractures=index % 3)
        path = studies / f"cxr_train{index}.{'dcm' if index % 2 else 'png'}"
        if index % 2:
            write_dicom(path, image.pixels, uid_key=f"monailabel-check-train{index}", patient_index=10 + index)
        else:
            write_png(path, image.pixels)
        label = labels / f"cxr_train{index}.png"
        Image.fromarray(_paint_label(image.pixels.shape, image.boxes, image.box_classes)).save(label)
        train.append({"image": str(path), "label": str(label)})
    return {"studies": str(studies), "infer": infer, "train": train}


def write_weights_and_references(work: Path, manifest: dict[str, Any]) -> None:
    """Test weights for ``inference.json``'s network, and the bundle's own label maps and results with them."""
    import numpy as np
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "inference.json")
    parser["bundle_root"] = str(BUNDLE)
    parser["device"] = "$torch.device('cpu')"
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    images = torch.stack([torch.as_tensor(preprocessing({"image": i["path"]})["image"]) for i in manifest["infer"]])
    with torch.no_grad():
        # a random network's logits follow the image's edges and shades but sit far from 0; moving each class's
        # 70th percentile to 0 makes both classes cover about 30 % of the image in a pattern with structure
        network.head[-1].bias.zero_()
        logits = network(images).transpose(0, 1).flatten(1)
        network.head[-1].bias.copy_(-torch.quantile(logits, 0.7, dim=1))
    torch.save(network.state_dict(), work / "model.pt")
    for item in manifest["infer"]:
        d = preprocessing({"image": item["path"]})
        with torch.no_grad():
            d["pred"] = network(torch.as_tensor(d["image"])[None])[0]
        d = postprocessing(d)
        stem = Path(item["path"]).stem
        np.save(work / f"{stem}_reference.npy", np.asarray(d["pred"]))
        (work / f"{stem}_reference.json").write_text(json.dumps(d["result"], indent=1))
        item["reference_label"], item["reference_result"] = f"{stem}_reference.npy", f"{stem}_reference.json"


def prepare(work: Path, report: Report) -> bool:
    """Step 2: images, weights, references and ``manifest.json`` in ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        manifest = write_images(work)
        write_weights_and_references(work, manifest)
    except Exception as error:  # report, do not hide it behind a traceback
        return report.check(
            "phantom images, test weights and reference maps", False, f"{type(error).__name__}: {error}"
        )
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sizes = ", ".join(f"{Path(i['path']).name} {i['size'][0]} x {i['size'][1]}" for i in manifest["infer"])
    return report.check("phantom images, test weights and reference maps", True, f"{work}: {sizes} (W x H)")


def run_checks(venv: Path, work: Path, name: str, port: int, report: Report) -> bool:
    """Step 3: ``monailabel_checks.py`` in the MONAI Label environment, its lines copied into the report."""
    command = [
        str(venv / "bin" / "python"),
        str(REPO / "scripts" / "monailabel_checks.py"),
        "--work",
        str(work),
        "--bundle",
        str(BUNDLE),
        "--name",
        name,
        "--server-port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work)
    assert process.stdout is not None
    log = (work / "monailabel_checks.log").open("w")
    for line in process.stdout:
        log.write(line)
        if not line.startswith(MARK):  # MONAI Label's and the bundle's own log lines stay in the log file
            continue
        line = line[len(MARK) :].rstrip("\n")
        report.line(line)
        if line.startswith("PASS"):
            report.passes += 1
        elif line.startswith("FAIL"):
            report.failures.append(line[6:].split("  -- ")[0])
    log.close()
    report.line(f"      (full log of this step: {work / 'monailabel_checks.log'})")
    return process.wait() == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv-monailabel", help="MONAI Label environment")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cxr_monailabel_check"), help="scratch folder")
    parser.add_argument("--name", default="cxr_rib_fracture_aals", help="model name; must not contain 'detection'")
    parser.add_argument("--server-port", type=int, default=8765, help="port of the start_server check; 0 skips it")
    parser.add_argument("--report", type=Path, default=BUNDLE / "docs" / "monailabel_check.txt")
    parser.add_argument("--rebuild", action="store_true", help="delete and rebuild the MONAI Label environment")
    args = parser.parse_args(argv)
    if "detection" in args.name.lower():
        parser.error("MONAI Label treats a model whose name contains 'detection' as a 3D box detector")
    report = Report(args.report)
    started = time.time()
    report.line(f"MONAI Label 0.8.5 check of {BUNDLE} ({time.strftime('%Y-%m-%d %H:%M')})")
    if build_venv(args.venv, report, args.rebuild) and prepare(args.work.resolve(), report):
        run_checks(args.venv, args.work.resolve(), args.name, args.server_port, report)
    report.line(f"\n{report.passes} passed, {len(report.failures)} failed ({time.time() - started:.0f} s)")
    for name in report.failures:
        report.line(f"  failed: {name}")
    return 1 if report.failures or not report.passes else 0


if __name__ == "__main__":
    sys.exit(main())
