"""Deal a phantom data set to simulated sites and write the site settings file the simulator's sites read.

Example (site A holds the boxed positives, B and C image-level positives; every site negatives)::

    python fl/make_sites.py --data runs/fl/data --sites site-a=R,N site-b=P,N site-c=P,N \\
        --work_dir runs/fl/work --out runs/fl/sites.json

writes ``runs/fl/data/site-a.json`` ... (each site's training and validation images; the test split stays out) and
``runs/fl/sites.json`` (``dataset_dir``, ``datalist``, ``bundle_root``, ``work_dir`` per site; see
``cxr_fl/site_settings.py``). A real site writes its own entry instead, pointing at its own data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cxr_fl.sites import SUBSETS, split_sites, write_site_datalists

FL_ROOT = Path(__file__).resolve().parent


def parse_holdings(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["site-a=R,N", "site-b=P,N"]`` -> ``{"site-a": ["R", "N"], "site-b": ["P", "N"]}``."""
    holdings = {}
    for spec in specs:
        name, _, subsets = spec.partition("=")
        names = [s.strip() for s in subsets.split(",") if s.strip()]
        if not name or not names or any(s not in SUBSETS for s in names):
            raise ValueError(f"site spec {spec!r}: expected NAME=SUBSETS with subsets from {list(SUBSETS)}.")
        holdings[name] = names
    return holdings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding datalist.json (a phantom set)")
    parser.add_argument("--sites", nargs="+", required=True, help="NAME=SUBSETS, e.g. site-a=R,N site-b=P,N")
    parser.add_argument("--datalist", type=Path, default=None, help="datalist to deal (default <data>/datalist.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dealing")
    parser.add_argument("--bundle_root", type=Path, default=FL_ROOT.parent / "bundle")
    parser.add_argument("--work_dir", type=Path, required=True, help="each site works in <work_dir>/<site>")
    parser.add_argument("--out", type=Path, required=True, help="site settings file to write")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    datalist = json.loads((args.datalist or data / "datalist.json").read_text())
    sites = split_sites(datalist, parse_holdings(args.sites), args.seed)
    paths = write_site_datalists(data, sites)
    settings = {
        name: {
            "dataset_dir": str(data),
            "datalist": str(path),
            "bundle_root": str(args.bundle_root.resolve()),
            "work_dir": str((args.work_dir / name).resolve()),
        }
        for name, path in paths.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(settings, indent=1) + "\n")
    for name, content in sites.items():
        print(f"{name}: {content['site']['counts']} -> {paths[name]}")
    print(f"site settings: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
