"""Build (and optionally simulate) the NVIDIA FLARE job of one stage of the bundle's training: the command line of
:mod:`cxr_fl.jobs` (read its docstring for what a job holds).

Examples::

    # export stage 1 for site-a (the R site); then run it in the simulator (one line, as FLARE documents it)
    python fl/job.py --stage 1 --sites site-a --rounds 8 --configs train.json,demo.json --export runs/fl/jobs
    CXR_FL_SITE_CONFIG=runs/fl/sites.json nvflare simulator runs/fl/jobs/cxr_stage1 -w runs/fl/ws1 -c site-a -t 1

    # stage 2 from the calibrated stage-1 model, at every site; --simulate runs the simulator directly
    python fl/job.py --stage 2 --sites site-a,site-b,site-c --rounds 4 --configs train.json,distill.json,demo.json \\
        --initial_ckpt runs/fl/model_calibrated.pt --export runs/fl/jobs --simulate runs/fl/ws2 \\
        --site_config runs/fl/sites.json

What each site sets (data, bundle, work folder) is not in the job: see ``cxr_fl/site_settings.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cxr_fl.jobs import build_job, simulate
from cxr_fl.teacher import TEACHER_POLICIES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True)
    parser.add_argument("--sites", required=True, help="comma-separated FLARE site names (stage 1: R sites only)")
    parser.add_argument("--rounds", type=int, default=4, help="FedAvg rounds (default 4)")
    parser.add_argument("--configs", default=None, help="bundle configs (default: train.json[,distill.json])")
    parser.add_argument("--initial_ckpt", type=Path, default=None, help="starting global model (stage 2: required)")
    parser.add_argument("--overrides", default="{}", help="JSON object of bundle overrides for every site")
    parser.add_argument("--local_epochs", type=int, default=1)
    parser.add_argument("--teacher", choices=TEACHER_POLICIES, default="global", help="stage-2 teacher policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate_every", type=int, default=1, help="rounds between site validations (0: none)")
    parser.add_argument("--quorum", type=int, default=None, help="results a round needs (default: every site)")
    parser.add_argument("--wait_after_quorum", type=int, default=3600)
    parser.add_argument("--round_timeout", type=int, default=0)
    parser.add_argument("--export", type=Path, required=True, help="folder the job folder is written into")
    parser.add_argument("--simulate", type=Path, default=None, help="also run the simulator in this workspace")
    parser.add_argument("--site_config", type=Path, default=None, help="site settings for --simulate")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sites = [site.strip() for site in args.sites.split(",") if site.strip()]
    configs = args.configs or ("train.json" if args.stage == 1 else "train.json,distill.json")
    job_dir = build_job(
        stage=args.stage,
        sites=sites,
        rounds=args.rounds,
        configs=[name.strip() for name in configs.split(",")],
        out_dir=args.export,
        initial_ckpt=args.initial_ckpt,
        overrides=json.loads(args.overrides),
        local_epochs=args.local_epochs,
        teacher=args.teacher,
        seed=args.seed,
        validate_every=args.validate_every,
        quorum=args.quorum,
        wait_after_quorum=args.wait_after_quorum,
        round_timeout=args.round_timeout,
    )
    print(f"job: {job_dir}")
    if args.simulate is None:
        return 0
    if args.site_config is None:
        print("error: --simulate needs --site_config", file=sys.stderr)
        return 2
    return simulate(job_dir, args.simulate, sites, args.site_config)


if __name__ == "__main__":
    sys.exit(main())
