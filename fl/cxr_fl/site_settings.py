"""What each site sets for itself: where its data, the installed bundle and its working folder are.

The job (the same for every site) carries the training recipe; the site settings carry what only the site knows.
They are read at the site from a JSON file, never sent by the server: the path comes from the client's
``--site_config`` argument, else from the environment variable ``CXR_FL_SITE_CONFIG``, else it is
``local/cxr_fl_site.json`` in the site's FLARE workspace (the startup kit's folder for site-local configuration). The
file maps site names to settings, so one file can describe every site of a simulation and a hospital's file holds its
own entry only::

    {
      "site-a": {
        "dataset_dir": "/data/cxr",                       # required: folder that image paths are relative to
        "datalist": "/data/cxr/datalist.json",            # optional, default <dataset_dir>/datalist.json
        "bundle_root": "/opt/bundles/cxr_fracture_aals",   # required: the installed bundle (configs/, scripts/)
        "work_dir": "/var/lib/cxr_fl/site-a",              # required: local checkpoints and logs
        "overrides": {"device": "$torch.device('cuda:0')", "num_workers": 4},  # optional bundle overrides
        "trust_job_expressions": false   # optional: accept $/@/% expressions in the job's overrides (default no)
      }
    }
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "LOCAL_FILE", "SiteSettings", "SiteSettingsError", "load_site_settings"]

ENV_VAR = "CXR_FL_SITE_CONFIG"
#: The settings file's name in the site workspace's ``local/`` folder, used when neither argument nor variable is set.
LOCAL_FILE = "cxr_fl_site.json"
_KEYS = {"dataset_dir", "datalist", "bundle_root", "work_dir", "overrides", "trust_job_expressions"}


class SiteSettingsError(ValueError):
    """The site settings file is missing, unreadable or lacks what this site needs (the message names the file)."""


@dataclass(frozen=True)
class SiteSettings:
    """One site's settings (paths absolute).

    Attributes:
        name: the FLARE site name (``site-a``).
        dataset_dir: folder holding the images (the bundle's ``dataset_dir``).
        datalist: the site's datalist JSON.
        bundle_root: the installed bundle (``configs/train.json`` inside).
        work_dir: where the site writes its checkpoints (``models/``) and logs (``runs/``).
        overrides: bundle config overrides the site applies on top of the job's (device, workers, caching).
        trust_job_expressions: whether the job's overrides may hold config expressions (code run at the site).
    """

    name: str
    dataset_dir: Path
    datalist: Path
    bundle_root: Path
    work_dir: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)
    trust_job_expressions: bool = False


def load_site_settings(
    site: str, path: str | os.PathLike | None = None, workspace: str | os.PathLike | None = None
) -> SiteSettings:
    """Read ``site``'s entry from the settings file.

    Args:
        site: the FLARE site name.
        path: the settings file; default ``$CXR_FL_SITE_CONFIG``, else ``<workspace>/local/cxr_fl_site.json``.
        workspace: the site's FLARE workspace (the folder holding ``startup/`` and ``local/``), if known.

    Raises:
        SiteSettingsError: no file found, the file is unreadable or not a JSON object, ``site`` has no entry, an
            entry has unknown keys or misses a required one, or a folder or file it names does not exist.
    """
    if path is None:
        path = os.environ.get(ENV_VAR)
    if not path and workspace is not None and (Path(workspace) / "local" / LOCAL_FILE).is_file():
        path = Path(workspace) / "local" / LOCAL_FILE
    if not path:
        where = f" or put {Path(workspace) / 'local' / LOCAL_FILE}" if workspace is not None else ""
        raise SiteSettingsError(
            f"site {site!r}: no site settings file: pass --site_config, set {ENV_VAR}{where}; it maps site names "
            "to {'dataset_dir', 'bundle_root', 'work_dir', ...}."
        )
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SiteSettingsError(f"{path}: cannot read the site settings: {error}") from error
    if not isinstance(content, dict):
        raise SiteSettingsError(f"{path}: expected a JSON object mapping site names to settings.")
    if site not in content:
        raise SiteSettingsError(f"{path}: no entry for site {site!r} (entries: {sorted(content)}).")
    entry = content[site]
    if not isinstance(entry, dict):
        raise SiteSettingsError(f"{path}: the entry of site {site!r} must be a JSON object.")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise SiteSettingsError(f"{path}: site {site!r} has unknown keys {unknown}; allowed: {sorted(_KEYS)}.")
    missing = sorted({"dataset_dir", "bundle_root", "work_dir"} - set(entry))
    if missing:
        raise SiteSettingsError(f"{path}: site {site!r} misses {missing}.")
    dataset_dir = Path(entry["dataset_dir"]).expanduser().resolve()
    datalist = Path(entry.get("datalist") or dataset_dir / "datalist.json").expanduser().resolve()
    bundle_root = Path(entry["bundle_root"]).expanduser().resolve()
    if not dataset_dir.is_dir():
        raise SiteSettingsError(f"{path}: site {site!r}: dataset_dir {dataset_dir} is not a folder.")
    if not datalist.is_file():
        raise SiteSettingsError(f"{path}: site {site!r}: datalist {datalist} does not exist.")
    if not (bundle_root / "configs" / "train.json").is_file():
        raise SiteSettingsError(f"{path}: site {site!r}: bundle_root {bundle_root} has no configs/train.json.")
    overrides = entry.get("overrides", {})
    if not isinstance(overrides, dict):
        raise SiteSettingsError(f"{path}: site {site!r}: overrides must be a JSON object of bundle keys.")
    trust = entry.get("trust_job_expressions", False)
    if not isinstance(trust, bool):
        raise SiteSettingsError(f"{path}: site {site!r}: trust_job_expressions must be true or false.")
    return SiteSettings(
        name=site,
        trust_job_expressions=trust,
        dataset_dir=dataset_dir,
        datalist=datalist,
        bundle_root=bundle_root,
        work_dir=Path(entry["work_dir"]).expanduser().resolve(),
        overrides=dict(overrides),
    )
