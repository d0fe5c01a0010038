"""Package the bundle as ``<name>_v<version>.zip`` for the MONAI Model Zoo.

The archive is deterministic (sorted entries, fixed timestamps and permissions), holds no caches or run outputs,
and keeps weights over 25 MB out of it: they are listed in ``large_files.yml`` (path, size, SHA-256) for upload
to a release, as the Zoo requires.

Example::

    python scripts/package_bundle.py --out dist
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NAME = "cxr_rib_fracture_aals"
LARGE_FILE_BYTES = 25 * 1024 * 1024  # Model Zoo limit for files kept in git
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can hold: no build-time leaks into the archive
_SKIPPED_DIRS = {"__pycache__", "runs", "eval", "cache", ".pytest_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def bundle_files(bundle_dir: Path) -> list[Path]:
    """Files to package, relative to ``bundle_dir``, sorted; caches, run outputs and placeholders left out."""
    files = []
    for path in sorted(bundle_dir.rglob("*")):
        relative = path.relative_to(bundle_dir)
        if not path.is_file() or _SKIPPED_DIRS & set(relative.parts[:-1]) or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if path.name == ".gitkeep":
            continue
        files.append(relative)
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def large_files_yaml(entries: list[tuple[Path, int, str]]) -> str:
    """``large_files.yml`` text for files kept out of the archive (the URL is filled in when they are uploaded)."""
    lines = ["large_files:"]
    for relative, size, digest in entries:
        lines += [
            f'  - path: "{relative.as_posix()}"',
            '    url: ""',
            f'    hash_val: "{digest}"',
            '    hash_type: "sha256"',
            f"    size_bytes: {size}",
        ]
    return "\n".join(lines) + "\n"


def package(bundle_dir: Path, out_dir: Path, name: str = DEFAULT_NAME) -> Path:
    """Write ``<out_dir>/<name>_v<version>.zip`` from ``bundle_dir``; return its path."""
    metadata_path = bundle_dir / "configs" / "metadata.json"
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path}: no metadata.json, is {bundle_dir} a bundle?")
    metadata = json.loads(metadata_path.read_text())
    version = metadata["version"]
    if version not in metadata.get("changelog", {}):
        raise ValueError(f"{metadata_path}: version {version} has no changelog entry")
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{name}_v{version}.zip"
    large: list[tuple[Path, int, str]] = []
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for relative in bundle_files(bundle_dir):
            path = bundle_dir / relative
            size = path.stat().st_size
            if size > LARGE_FILE_BYTES:
                large.append((relative, size, _sha256(path)))
                continue
            _write(zf, f"{name}/{relative.as_posix()}", path.read_bytes())
        if large:
            _write(zf, f"{name}/large_files.yml", large_files_yaml(large).encode())
    return archive


def _write(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle-dir", type=Path, default=REPO / "bundle", help="bundle folder (default: bundle/)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"bundle name in the Zoo (default: {DEFAULT_NAME})")
    args = parser.parse_args(argv)
    try:
        archive = package(args.bundle_dir, args.out, args.name)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    print(f"wrote {archive} ({len(names)} files, {archive.stat().st_size / 1e3:.0f} kB)")
    if any(n.endswith("large_files.yml") for n in names):
        print("weights over 25 MB are listed in large_files.yml: upload them and fill in their url")
    return 0


if __name__ == "__main__":
    sys.exit(main())
