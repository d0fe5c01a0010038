"""Scale benchmark: stage-1 training and folder inference as the number of images grows, one command.

For N in ``--sizes`` (default 1,000, 4,000, 16,000 and the paper's 65,845) training entries, each a distinct file
(contents cycle through a pool of phantoms, ``--pool`` of them, PNG at ``--phantom_size`` px), it runs the
bundle's stage 1 (``train.json`` + ``demo.json``: light network, 256 px, batch 16) in a child process, one
epoch of ``--samples`` samples without validation, and measures:

* the preprocessed store's build: images/s with 1 and 2 build workers (``num_workers``), bytes per image on disk;
* time from the launch of the process to its first completed training step, with an empty store (cold: the
  build is part of it) and with the store built (warm);
* steady training samples/s (median iteration after the first 5) as a ratio to the bare step, measured in the
  same process right after the epoch (forward + loss + backward + optimizer on one augmented batch);
* peak memory of the whole process tree (the child and its build / loader workers), sampled every 0.2 s from
  /proc: the largest sum of ``VmRSS`` and of ``Pss`` (proportional: pages shared between processes counted
  once), and the largest ``VmHWM`` of any one process;
* the in-RAM ``CacheDataset`` (``--cache_dir ""``) at the smaller sizes, for comparison;
* ``torchrun`` with 2 CPU processes (``multi_gpu_train.json``) on one warm store, against one process.

Inference: ``inference.json`` over a folder of ``--inference_files`` files (hard links to the training files):
the whole folder with 2 loader workers, with the tree's memory sampled along the way (flat or not), a rerun with
``--skip_existing true``, and images/s against loader workers (0, 1, 2) on the first ``--inference_small`` files.

Results go to ``bundle/docs/benchmark_scale.json`` and, with ``--model_card``, to the table between the
``scale`` markers of ``bundle/docs/README.md``. Runs are sequential; the disk holds the files and the stores
(about 110 kB + 135 kB per image at the defaults: 16 GB for 65,845).

    .venv/bin/python scripts/benchmark_scale.py --workdir /data/scale_bench --model_card
    .venv/bin/python scripts/benchmark_scale.py --sizes 1000 4000 --phases store builds   # quick look
    .venv/bin/python scripts/benchmark_scale.py --phases inference --merge    # one phase, kept with the others
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from repo_paths import BUNDLE_ROOT, REPO_ROOT

CONFIGS = BUNDLE_ROOT / "configs"
PAPER_IMAGES = 65_845
MARKERS = ("<!-- scale:begin -->", "<!-- scale:end -->")
PHASES = ("store", "builds", "torchrun", "in_ram", "inference", "torchrun_one")


# --------------------------------------------------------------------------------------------------------------
# memory of a process tree, from /proc
# --------------------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from the parent field of /proc/<pid>/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _memory(pid: int) -> dict[str, int] | None:
    """``VmRSS``, ``VmHWM`` (status) and ``Pss`` (smaps_rollup) of ``pid`` in bytes, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in status + rollup:
        name = line.split(":")[0]
        if name in ("VmRSS", "VmHWM", "Pss"):
            out[name] = int(line.split()[1]) * 1024
    return out if "VmRSS" in out else None


class TreeMonitor:
    """Samples the memory of a process and all its descendants every ``interval`` seconds in a thread.

    Attributes after :meth:`stop`: ``peak_rss`` and ``peak_pss`` (largest sums over the tree at one sample),
    ``peak_hwm`` (largest ``VmHWM`` of one process), ``processes`` (distinct pids seen), ``timeline`` (time,
    tree RSS) pairs.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.peak_hwm = 0
        self.seen: set[int] = set()
        self.timeline: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.time()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        rss = pss = 0
        for pid in [self.pid, *_children(self.pid)]:
            memory = _memory(pid)
            if memory is None:
                continue
            self.seen.add(pid)
            rss += memory["VmRSS"]
            pss += memory.get("Pss", memory["VmRSS"])
            self.peak_hwm = max(self.peak_hwm, memory["VmHWM"])
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        if rss:
            self.timeline.append((round(time.time() - self._start, 2), rss))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {
            "tree_peak_rss_mb": round(self.peak_rss / 2**20),
            "tree_peak_pss_mb": round(self.peak_pss / 2**20),
            "largest_process_vmhwm_mb": round(self.peak_hwm / 2**20),
            "processes": len(self.seen),
        }


def run_monitored(command: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``command``, sampling its tree's memory; return the memory figures, wall time and its last JSON lines."""
    start = time.time()
    env = {**os.environ, **(env or {}), "SCALE_T0": repr(start)}
    env.setdefault("OMP_NUM_THREADS", os.environ.get("SCALE_THREADS", "1"))
    with open(log or os.devnull, "w") as sink:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=sink, text=True)
        monitor = TreeMonitor(process.pid)
        stdout, _ = process.communicate()
    memory = monitor.stop()
    if process.returncode != 0:
        tail = Path(log).read_text()[-3000:] if log else ""
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({process.returncode}):\n{tail}")
    results = [json.loads(line[len("SCALE ") :]) for line in stdout.splitlines() if line.startswith("SCALE ")]
    return {"wall_s": round(time.time() - start, 2), **memory, "results": results, "timeline": monitor.timeline}


# --------------------------------------------------------------------------------------------------------------
# data: a phantom pool copied into N distinct files
# --------------------------------------------------------------------------------------------------------------
def prepare_data(workdir: Path, count: int, pool: int, phantom_size: int, validation: int) -> dict[str, Any]:
    """``count`` training files under ``workdir/data/files/<k>/`` (copies cycling through ``pool`` phantoms)."""
    from cxr_phantom import generate_dataset

    pool_dir = workdir / "pool"
    if not (pool_dir / "datalist.json").is_file():
        generate_dataset(
            pool_dir, num_images=pool + validation * 3, size=phantom_size, seed=0, prevalence=0.4, r_fraction=0.5,
            val_fraction=validation / (pool + validation * 3), test_fraction=0.0, difficulty=0.2, image_format="png",
            workers=2, progress=False,
        )  # fmt: skip
    content = json.loads((pool_dir / "datalist.json").read_text())
    training = [e for e in content["training"] if e.get("subset") in ("R", "N")]
    files = workdir / "data" / "files"
    entries = []
    for index in range(count):
        source = training[index % len(training)]
        target = files / f"{index // 1000:03d}" / f"{index:06d}.png"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pool_dir / source["image"], target)  # a distinct file: its own path, inode and mtime
        entries.append({**source, "image": str(target.relative_to(workdir / "data"))})
    valid_dir = workdir / "data" / "validation"
    valid_dir.mkdir(parents=True, exist_ok=True)
    validation_entries = []
    for entry in content["validation"][:validation]:
        target = valid_dir / Path(entry["image"]).name
        if not target.is_file():
            shutil.copyfile(pool_dir / entry["image"], target)
        validation_entries.append({**entry, "image": str(target.relative_to(workdir / "data"))})
    source_bytes = sum((workdir / "data" / e["image"]).stat().st_size for e in entries[: min(count, 1000)])
    return {
        "distinct": len(training),
        "training": entries,
        "validation": validation_entries,
        "classes": content.get("classes", ["rib", "clavicle"]),
        "source_bytes_per_image": round(source_bytes / min(count, 1000)),
    }


def write_datalist(workdir: Path, data: dict[str, Any], count: int) -> Path:
    path = workdir / "data" / f"datalist_{count}.json"
    content = {"classes": data["classes"], "training": data["training"][:count], "validation": data["validation"]}
    path.write_text(json.dumps(content))
    return path


# --------------------------------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------------------------------
def child_train(args: argparse.Namespace) -> None:
    """One bundle training run in this process (as ``monai.bundle run`` does), timing its steps; print SCALE json."""
    launched = float(os.environ["SCALE_T0"])
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    torch.set_num_threads(args.threads)
    marks = {"imports": time.time()}
    configs = [str(CONFIGS / name) for name in args.configs]
    overrides = json.loads(args.overrides)
    workflow = ConfigWorkflow(
        config_file=configs, meta_file=str(CONFIGS / "metadata.json"), workflow_type="train", **overrides
    )
    workflow.initialize()
    marks["config"] = time.time()
    workflow.parser.get_parsed_content("train#dataset")
    marks["training_data"] = time.time()  # datalist read, store opened (and built when cold)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    marks["trainer"] = time.time()  # network, validation data, handlers
    stamps: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: stamps.append(time.time()))
    workflow.run()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    dataset = workflow.parser.get_parsed_content("train#dataset")
    report = getattr(dataset, "build_report", None)
    batch = int(workflow.parser.get_parsed_content("batch_size"))
    steps = [b - a for a, b in zip(stamps[5:], stamps[6:], strict=False)]
    result = {
        "rank": rank,
        "first_step_s": round(stamps[0] - launched, 2),
        "first_step_breakdown_s": {  # from the launch: interpreter and imports, config, training data, the rest
            name: round(at - before, 2)
            for name, at, before in zip([*marks, "first_step"], [*marks.values(), stamps[0]],
                                        [launched, *marks.values()], strict=True)
        },  # fmt: skip
        "iterations": len(stamps),
        "steady_samples_per_s": round(batch / statistics.median(steps), 2) if steps else None,
        "build": None if report is None else {
            "built": report.built, "present": report.present, "seconds": round(report.seconds, 2),
            "entry_bytes": report.entry_bytes, "total": report.total,
        },
    }  # fmt: skip
    if args.bare_steps and not torch.distributed.is_initialized():
        result["bare_step_samples_per_s"] = round(bare_step(workflow, trainer, args.bare_steps), 2)
        result["steady_over_bare_step"] = round(result["steady_samples_per_s"] / result["bare_step_samples_per_s"], 3)
    workflow.finalize()
    print("SCALE " + json.dumps(result), flush=True)


def bare_step(workflow: Any, trainer: Any, iterations: int) -> float:
    """Samples/s of forward + loss + backward + optimizer step on one augmented batch (no data loading)."""
    import torch

    augmentation = workflow.parser.get_parsed_content("train#augmentation")
    device = trainer.state.device
    batch = next(iter(trainer.data_loader))
    image, label = augmentation(batch["image"].to(device), batch["label"].to(device))
    network, loss_function, optimizer = trainer.network, trainer.loss_function, trainer.optimizer
    network.train()
    times = []
    for index in range(iterations + 1):
        start = time.perf_counter()
        loss = loss_function(network(image), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    del torch
    return image.shape[0] / statistics.median(times)


def child_build(args: argparse.Namespace) -> None:
    """Build the store of a datalist's training files with ``--workers`` workers; print SCALE json."""
    from monai.bundle import ConfigParser

    from scripts.data.store import PreprocessedStore

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in args.configs])
    parser.update(json.loads(args.overrides))
    items = parser.get_parsed_content("train#datalist")
    store = PreprocessedStore(parser.get_parsed_content("cache_dir"), parser.get_parsed_content("image_transforms"))
    report = store.build([item["image"] for item in items], num_workers=args.workers, progress=False)
    result = {"built": report.built, "seconds": round(report.seconds, 2), "entry_bytes": report.entry_bytes}
    result["images_per_s"] = round(report.built / report.seconds, 1)
    print("SCALE " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------------------
def training_overrides(workdir: Path, count: int, cache_dir: str, samples: int, tag: str) -> dict[str, Any]:
    return {
        "dataset_dir": str(workdir / "data"),
        "datalist": str(workdir / "data" / f"datalist_{count}.json"),
        "cache_dir": cache_dir,
        "ckpt_dir": str(workdir / "runs" / tag / "models"),
        "output_dir": str(workdir / "runs" / tag),
        "train#trainer#max_epochs": 1,
        "train#samples_per_epoch": samples,
        "val_interval": 1000,
        "num_workers": 2,
    }


def train_run(
    args: argparse.Namespace, count: int, cache_dir: str, tag: str, processes: int = 1, torchrun: bool = False
) -> dict[str, Any]:
    torchrun = torchrun or processes > 1
    configs = ["train.json", "demo.json"] + (["multi_gpu_train.json"] if torchrun else [])
    overrides = training_overrides(args.workdir, count, cache_dir, args.samples, tag)
    child = [__file__, "--child", "train", "--configs", *configs, "--overrides", json.dumps(overrides)]
    child += ["--bare_steps", str(args.bare_steps), "--threads", str(args.threads)]
    if torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                   f"--nproc_per_node={processes}", *child]  # fmt: skip
    else:
        command = [sys.executable, *child]
    log = args.workdir / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    outcome = run_monitored(command, log=log)
    outcome.pop("timeline")
    results = sorted(outcome.pop("results"), key=lambda r: r["rank"])
    print(f"[scale] {tag}: {json.dumps(results[0])} tree peak RSS {outcome['tree_peak_rss_mb']} MB, "
          f"PSS {outcome['tree_peak_pss_mb']} MB", flush=True)  # fmt: skip
    return {**outcome, **results[0], "ranks": results if torchrun else None, "processes": processes}


def seed_store(args: argparse.Namespace, count: int, data: dict[str, Any], store_dir: Path) -> dict[str, Any]:
    """Fill the store for ``count`` files by copying, for each file not yet stored, the entry of the earlier file
    with the same content (files cycle through the pool): the store a build would write, without its CPU time.

    For sizes whose cold build would take hours on a shared machine; the build rate is measured on real builds.
    """
    from monai.bundle import ConfigParser

    from scripts.data.store import PreprocessedStore

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "demo.json")])
    parser.update(training_overrides(args.workdir, count, str(store_dir), args.samples, "seed"))
    store = PreprocessedStore(store_dir, parser.get_parsed_content("image_transforms"), dtype="float16")
    root = args.workdir / "data"
    sources = [str(root / entry["image"]) for entry in data["training"][:count]]
    distinct = data["distinct"]
    start, copied = time.time(), 0
    for index, source in enumerate(sources):
        target = store.entry_path(source)
        if target.is_file():
            continue
        original = store.entry_path(sources[index % distinct])
        if not original.is_file():
            raise SystemExit(f"seeding needs the entry of {sources[index % distinct]}: build the first size for real")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".tmp-{os.getpid()}-seed")
        shutil.copyfile(original, temporary)
        os.replace(temporary, target)
        copied += 1
    print(f"[scale] store seeded to {count} entries ({copied} copied in {time.time() - start:.0f} s)", flush=True)
    return {"seeded": True, "copied": copied, "seconds": round(time.time() - start, 1)}


def build_run(args: argparse.Namespace, count: int, workers: int) -> dict[str, Any]:
    store = args.workdir / f"store_build_{workers}"
    shutil.rmtree(store, ignore_errors=True)
    overrides = training_overrides(args.workdir, count, str(store), args.samples, f"build{workers}")
    command = [sys.executable, __file__, "--child", "build", "--configs", "train.json", "demo.json",
               "--overrides", json.dumps(overrides), "--workers", str(workers)]  # fmt: skip
    outcome = run_monitored(command, log=args.workdir / "logs" / f"build_{workers}.log")
    outcome.pop("timeline")
    result = outcome.pop("results")[0]
    shutil.rmtree(store, ignore_errors=True)
    print(f"[scale] build with {workers} worker(s), {count} images: {result['images_per_s']} images/s", flush=True)
    return {**outcome, **result, "workers": workers, "images": count}


def inference_runs(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """Folder inference over ``--inference_files`` hard links to training files: rate vs workers, flat memory."""
    folder = args.workdir / "inference_input"
    files = sorted((args.workdir / "data" / "files").rglob("*.png"))[: args.inference_files]
    if len(files) < args.inference_files:
        raise SystemExit(f"need {args.inference_files} training files for the inference run, have {len(files)}")
    small = folder / "small"
    for index, source in enumerate(files):
        target = folder / "all" / f"{index // 1000:03d}" / source.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        if index < args.inference_small and not (small / source.name).exists():
            small.mkdir(parents=True, exist_ok=True)
            os.link(source, small / source.name)
    checkpoint = next((args.workdir / "runs").rglob("checkpoint_final.pt"))

    def infer(input_dir: Path, workers: int, tag: str, skip_existing: bool = False) -> dict[str, Any]:
        output = args.workdir / "inference_output" / tag
        if not skip_existing:
            shutil.rmtree(output, ignore_errors=True)
        command = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
                   f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'demo.json'}']",
                   "--meta_file", str(CONFIGS / "metadata.json"), "--dataset_dir", str(input_dir),
                   "--output_dir", str(output), "--ckpt_path", str(checkpoint), "--num_workers", str(workers),
                   "--write_overlays", "false", "--skip_existing", str(skip_existing).lower()]  # fmt: skip
        outcome = run_monitored(command, log=args.workdir / "logs" / f"inference_{tag}.log")
        summary = json.loads((output / "summary.json").read_text())
        counts = {k: summary[k] for k in ("processed", "refused", "skipped", "existing")}
        timeline = outcome.pop("timeline")
        outcome.pop("results")
        images = counts["processed"]
        result = {**outcome, **counts, "workers": workers, "images_per_s": round(images / outcome["wall_s"], 2)}
        if len(timeline) > 10:  # memory over the run: the tree's RSS at 20 % and at the end of the samples
            result["tree_rss_mb_at_20_percent"] = round(timeline[len(timeline) // 5][1] / 2**20)
            result["tree_rss_mb_at_end"] = round(max(r for _, r in timeline[-5:]) / 2**20)
        print(f"[scale] inference {tag}: {json.dumps(result)}", flush=True)
        return result

    out: dict[str, Any] = {"files": len(files)}
    if "all" in args.inference_parts:
        out["all_files"] = infer(folder / "all", 2, "all_w2")
    if "resume" in args.inference_parts:
        out["rerun_skip_existing"] = infer(folder / "all", 2, "all_w2", skip_existing=True)
    if "workers" in args.inference_parts:
        out[f"by_workers_{args.inference_small}_files"] = [
            infer(small, workers, f"small_w{workers}") for workers in (0, 1, 2)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, PAPER_IMAGES])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/benchmark_scale"))
    parser.add_argument("--pool", type=int, default=256, help="distinct phantoms the files cycle through")
    parser.add_argument("--phantom_size", type=int, default=320)
    parser.add_argument("--validation", type=int, default=32, help="validation images (built, not run)")
    parser.add_argument("--samples", type=int, default=640, help="training samples in each run's one epoch")
    parser.add_argument("--bare_steps", type=int, default=10)
    parser.add_argument("--in_ram_sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--torchrun_size", type=int, default=4000)
    parser.add_argument("--build_size", type=int, default=4000, help="images for the 1- and 2-worker build rates")
    parser.add_argument("--inference_files", type=int, default=10_240)
    parser.add_argument("--inference_small", type=int, default=256, help="files of the loader-workers comparison")
    parser.add_argument(
        "--inference_parts", nargs="+", default=["all", "resume", "workers"], choices=("all", "resume", "workers")
    )
    parser.add_argument("--phases", nargs="+", default=list(PHASES[:5]), choices=PHASES, help="what to run, in order")
    parser.add_argument("--merge", action="store_true", help="keep the other phases' results already in --output")
    parser.add_argument("--prepare_only", action="store_true", help="only write the files and datalists")
    parser.add_argument("--output", type=Path, default=BUNDLE_ROOT / "docs" / "benchmark_scale.json")
    parser.add_argument("--model_card", action="store_true", help="update the table in bundle/docs/README.md")
    parser.add_argument("--model_card_only", action="store_true", help="only rewrite the table from --output")
    parser.add_argument("--child", choices=("train", "build"), help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: see the docstring)")
    parser.add_argument(
        "--seed_from",
        type=int,
        default=0,
        help="fill the store above this many images by copying entries of identical content",
    )
    args = parser.parse_args()
    if args.child == "train":
        return child_train(args)
    if args.child == "build":
        return child_build(args)
    if args.model_card_only:
        return update_model_card(json.loads(args.output.read_text()))

    started = time.time()
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    largest = max([*args.sizes, args.build_size, args.torchrun_size, *args.in_ram_sizes, args.inference_files])
    data = prepare_data(args.workdir, largest, args.pool, args.phantom_size, args.validation)
    for count in sorted({*args.sizes, args.build_size, args.torchrun_size, *args.in_ram_sizes}):
        write_datalist(args.workdir, data, count)
    if args.prepare_only:
        print(f"[scale] data for {largest} images in {args.workdir / 'data'}", flush=True)
        return None
    report: dict[str, Any] = json.loads(args.output.read_text()) if args.merge and args.output.is_file() else {}
    command = "python scripts/benchmark_scale.py " + " ".join(sys.argv[1:])
    report.setdefault("invocations", []).append(command)  # phases run one invocation at a time, with --merge
    report.update({
        "command": command,
        "settings": {"configs": ["train.json", "demo.json"], "image_size": 256, "batch_size": 16,
                     "samples_per_run": args.samples, "pool": args.pool, "phantom_size": args.phantom_size,
                     "source_bytes_per_image": data["source_bytes_per_image"]},
    })  # fmt: skip
    report.setdefault("machine", {})["cpu_count"] = os.cpu_count()
    loads = report["machine"].setdefault("load_average_per_phase", {})

    def save(phase: str) -> None:
        loads[phase] = [round(v, 1) for v in os.getloadavg()]
        report["goals"] = goals(report)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    store_dir = args.workdir / "store"
    for phase in args.phases:
        if phase == "store":  # an empty store (cold: the build is part of the first step), then the same run again
            rows = {row["images"]: row for row in report.get("store", [])}
            for count in args.sizes:
                if args.seed_from and count > args.seed_from:  # cold build not run: see --seed_from
                    cold = seed_store(args, count, data, store_dir)
                else:
                    shutil.rmtree(store_dir, ignore_errors=True)
                    cold = train_run(args, count, str(store_dir), f"store_{count}_cold")
                warm = train_run(args, count, str(store_dir), f"store_{count}_warm")
                rows[count] = {"images": count, "cold": cold, "warm": warm}
                report["store"] = [rows[n] for n in sorted(rows)]
                save(f"store_{count}")
        elif phase == "builds":
            report["builds"] = [build_run(args, args.build_size, workers) for workers in (1, 2)]
        elif phase == "in_ram":
            rows = {row["images"]: row for row in report.get("in_ram", [])}
            for count in args.in_ram_sizes:
                rows[count] = {"images": count, "run": train_run(args, count, "", f"in_ram_{count}")}
                report["in_ram"] = [rows[n] for n in sorted(rows)]
                save(f"in_ram_{count}")
        elif phase == "torchrun":  # 2 processes and 1 on one warm store (the store phase left every entry in it)
            tag = f"torchrun_{args.torchrun_size}"
            train_run(args, args.torchrun_size, str(store_dir), f"{tag}_warmup")  # builds whatever is missing
            single = train_run(args, args.torchrun_size, str(store_dir), f"{tag}_single")
            launched = train_run(args, args.torchrun_size, str(store_dir), f"{tag}_x1", torchrun=True)
            double = train_run(args, args.torchrun_size, str(store_dir), f"{tag}_x2", processes=2)
            report["torchrun"] = {"images": args.torchrun_size, "one_process": single,
                                  "one_process_torchrun": launched, "two_processes": double}  # fmt: skip
        elif phase == "torchrun_one":  # only the 1-process torchrun run, added to an earlier torchrun phase
            tag = f"torchrun_{args.torchrun_size}"
            report.setdefault("torchrun", {})["one_process_torchrun"] = train_run(
                args, args.torchrun_size, str(store_dir), f"{tag}_x1", torchrun=True
            )
        elif phase == "inference":
            report["inference"] = {**report.get("inference", {}), **inference_runs(args, data)}
        save(phase)
    report["wall_minutes_last_invocation"] = round((time.time() - started) / 60, 1)
    save("end")
    print(f"[scale] results in {args.output}", flush=True)
    if args.model_card:
        update_model_card(report)
    return None


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, read off the measurements."""
    store = {row["images"]: row for row in report.get("store", [])}
    out: dict[str, Any] = {}
    if 1000 in store and 16000 in store:
        small, large = store[1000]["warm"], store[16000]["warm"]
        out["rss_16k_over_1k"] = round(large["tree_peak_rss_mb"] / small["tree_peak_rss_mb"], 3)
        out["rss_16k_over_1k_at_most_1.25"] = out["rss_16k_over_1k"] <= 1.25
        out["throughput_16k_over_1k"] = round(large["steady_over_bare_step"] / small["steady_over_bare_step"], 3)
        out["throughput_16k_over_1k_at_least_0.90"] = out["throughput_16k_over_1k"] >= 0.90
    if PAPER_IMAGES in store and 1000 in store:
        ratio = store[PAPER_IMAGES]["warm"]["tree_peak_rss_mb"] / store[1000]["warm"]["tree_peak_rss_mb"]
        out["rss_65845_over_1k"] = round(ratio, 3)
    out["warm_first_step_s"] = {str(n): row["warm"]["first_step_s"] for n, row in store.items()}
    if store:
        out["warm_first_step_within_10_s"] = all(row["warm"]["first_step_s"] <= 10 for row in store.values())
    torchrun = report.get("torchrun")
    if torchrun:
        one, two = torchrun["one_process"]["tree_peak_pss_mb"], torchrun["two_processes"]["tree_peak_pss_mb"]
        out["torchrun_two_over_one_pss"] = round(two / one, 3)
        out["torchrun_two_under_twice_one"] = two < 2 * one
        if "one_process_torchrun" in torchrun:  # the same launcher on both sides
            launched = torchrun["one_process_torchrun"]["tree_peak_pss_mb"]
            out["torchrun_two_over_torchrun_one_pss"] = round(two / launched, 3)
            out["torchrun_two_under_twice_torchrun_one"] = two < 2 * launched
    return out


def update_model_card(report: dict[str, Any]) -> None:
    """Replace the table between the ``scale`` markers of the model card with this run's numbers."""
    card = BUNDLE_ROOT / "docs" / "README.md"
    text = card.read_text()
    if MARKERS[0] not in text:
        print("[scale] model card has no scale markers: table not written", flush=True)
        return
    rows = ["| training images | first step, empty store (s) | first step, built store (s): imports / training "
            "data / rest | steady / bare step (bare samples/s) | peak RSS / PSS of the process tree (MB) | "
            "store on disk |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in report.get("store", []):
        cold, warm = row["cold"], row["warm"]
        if cold.get("seeded"):
            first_cold = "not run (store filled by copying)"
        else:
            first_cold = f"{cold['first_step_s']:.0f} (build {cold['build']['seconds']:.0f})"
        parts = warm["first_step_breakdown_s"]
        rest = sum(v for k, v in parts.items() if k not in ("imports", "training_data"))
        rows.append(
            f"| {row['images']:,} | {first_cold} | {warm['first_step_s']:.0f}: {parts['imports']:.0f} / "
            f"{parts['training_data']:.1f} (store check {warm['build']['seconds']:.1f}) / {rest:.0f} | "
            f"{warm['steady_over_bare_step']:.2f} ({warm['bare_step_samples_per_s']:.1f}) | "
            f"{warm['tree_peak_rss_mb']:,} / {warm['tree_peak_pss_mb']:,} | "
            f"{warm['build']['entry_bytes'] / 1e9:.2f} GB |"
        )
    for row in report.get("in_ram", []):
        run = row["run"]
        parts = run["first_step_breakdown_s"]
        rest = sum(v for k, v in parts.items() if k not in ("imports", "training_data"))
        rows.append(
            f'| {row["images"]:,}, in RAM (`--cache_dir ""`) | (every run) | {run["first_step_s"]:.0f}: '
            f"{parts['imports']:.0f} / {parts['training_data']:.1f} (cache built in RAM) / {rest:.0f} | "
            f"{run['steady_over_bare_step']:.2f} ({run['bare_step_samples_per_s']:.1f}) | "
            f"{run['tree_peak_rss_mb']:,} / {run['tree_peak_pss_mb']:,} | none |"
        )
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    card.write_text(text[:start] + "\n" + "\n".join(rows) + "\n" + text[end:])


if __name__ == "__main__":
    main()
