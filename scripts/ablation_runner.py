"""Runs a method-benchmark protocol step by step: phantom pool, datalists, stage 1, teachers, stage-2 arms.

Every training and evaluation is the bundle's own workflow (``train.json`` + ``calibrate.json`` /
``distill.json`` / ``evaluate.json``), started by a :class:`Launcher` either as ``python -m monai.bundle run`` in
a subprocess (the default) or in this process through ``monai.bundle.create_workflow`` (the same workflow without
the interpreter start-up; the tests use it). The plan is a list of :class:`Step` objects built up front, so the
progress lines can say how many steps are left; each step leaves a result file in the work folder and is skipped
when it is there, so a killed benchmark resumes where it stopped (stage 1 resumes mid-run from its own
crash-safe checkpoints and picks its teacher levels from the validation curve afterwards).

Work folder layout::

    data/                       the pool (datalist.json, images/) and derived datalists semi_r<R>_s<seed>.json,
                                oracle_r<R>_s<seed>.json, semi_r<R>_s<seed>_p<fraction>.json
    seed<S>/stage1/             stage-1 run (checkpoints, snapshot_model_epoch=<E>.pt, runs/); level_<name>/ the
                                snapshot of each teacher level (level.json, model.pt, model_calibrated.pt,
                                preconditions.json, eval/)
    seed<S>/<level>/<arm>/      stage-2 run of one arm (result.json when finished), eval/ its test evaluation
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import repo_paths  # noqa: F401  (bundle package and cxr_phantom on the import path)

from ablation_data import derive_datalists, subsample_p, subset_counts
from ablation_settings import ARM_VARIANT, CLASSES, METRICS
from bundle_command import CONFIGS, run_bundle

__all__ = ["Benchmark", "Launcher", "Progress", "Step"]


class Progress:
    """Log lines with the elapsed time and, when known, the steps done and left."""

    def __init__(self, prefix: str = "ablation") -> None:
        self.started = time.time()
        self.prefix = prefix

    def minutes(self) -> float:
        return (time.time() - self.started) / 60

    def __call__(self, message: str) -> None:
        print(f"[{self.prefix} {self.minutes():6.1f} min] {message}", flush=True)


class Launcher:
    """Starts one bundle workflow and returns its log text.

    Args:
        network: ``"light"`` adds ``configs/demo.json`` (the CPU network); ``"default"`` keeps the bundle's
            ResNet-50 + FPN at 512 px.
        device: ``None`` keeps the config's choice (CUDA when available); else e.g. ``"cuda"`` or ``"cpu"``.
        overrides: bundle overrides added to every run (e.g. the tiny protocol's network).
        in_process: run through ``monai.bundle.create_workflow`` in this process instead of a subprocess.
    """

    def __init__(
        self,
        network: str = "light",
        device: str | None = None,
        overrides: dict[str, Any] | None = None,
        in_process: bool = False,
    ) -> None:
        if network not in ("light", "default"):
            raise ValueError(f"network must be 'light' or 'default', got {network!r}.")
        self.network, self.device, self.in_process = network, device, in_process
        self.overrides = dict(overrides or {})
        if device:
            self.overrides["device"] = device
        #: CPU seconds (user + system) spent in bundle runs: a cost measure that other load on the machine does
        #: not inflate the way it inflates wall time
        self.child_cpu_seconds = 0.0

    def configs(self, stage_configs: list[str]) -> list[str]:
        return [*stage_configs, "demo.json"] if self.network == "light" else list(stage_configs)

    def __call__(self, run_id: str, stage_configs: list[str], overrides: dict[str, Any], log_file: Path) -> str:
        configs = self.configs(stage_configs)
        merged = {**overrides, **self.overrides}
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.in_process:
            before = _children_cpu()
            text = run_bundle(run_id, configs, merged, log_file)
            self.child_cpu_seconds += _children_cpu() - before
            return text
        before = time.process_time()
        text = _run_in_process(run_id, configs, merged, log_file)
        self.child_cpu_seconds += time.process_time() - before
        return text


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Tee:
    """A text stream that copies what it is given to a file as well as to the original stream, until detached."""

    def __init__(self, original: Any, file: Any) -> None:
        self.original, self.file = original, file

    def write(self, text: str) -> int:
        if self.file is not None:
            self.file.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def _run_in_process(run_id: str, configs: list[str], overrides: dict[str, Any], log_file: Path) -> str:
    """Run one workflow through ``monai.bundle.create_workflow``; everything it prints also goes to ``log_file``.

    The bundle's logging configuration binds its console handler to ``sys.stdout`` when the workflow is created,
    so stdout and stderr are teed before that (a root-logger handler would miss loggers that do not propagate).
    """
    import sys

    from monai.bundle import create_workflow

    values = {key: str(value) if isinstance(value, Path) else value for key, value in overrides.items()}
    with log_file.open("w") as stream:
        tees = (_Tee(sys.stdout, stream), _Tee(sys.stderr, stream))
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = tees
        try:
            workflow = create_workflow(
                config_file=[str(CONFIGS / name) for name in configs],
                meta_file=str(CONFIGS / "metadata.json"),
                run_id=run_id,
                **values,
            )
            workflow.run()
            workflow.finalize()
        finally:
            sys.stdout, sys.stderr = saved
            for tee in tees:  # handlers created meanwhile may keep the tee: it then writes to the console only
                tee.flush()
                tee.file = None
    return log_file.read_text()


@dataclass
class Step:
    """One cached unit of work: ``done()`` tells whether its result file exists, ``run()`` makes it."""

    name: str
    done: Callable[[], bool]
    run: Callable[[], Any]
    kind: str = "stage2"  # "stage1" (a stage-1 segment or a teacher level) or "stage2" (an arm)


def validation_history(log_text: str, prefix: str = "val") -> list[dict[str, float]]:
    """Every validation's metrics from the StatsHandler lines (``Epoch[N] Metrics -- val_auroc_rib: ...``).

    ``prefix`` selects the evaluator: ``val`` (the student/stage-1 model) or ``teacher_val``.
    """
    history = []
    for line in log_text.splitlines():
        if "Metrics -- " not in line or "Epoch[" not in line:
            continue
        epoch = int(line.split("Epoch[", 1)[1].split("]", 1)[0])
        pairs = line.split("Metrics -- ", 1)[1].split()
        values = {pairs[i].rstrip(":"): float(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
        if f"{prefix}_score" in values:
            history.append({"epoch": epoch, **values})
    return history


class Benchmark:
    """One protocol's runs in one work folder. See the module docstring for the layout."""

    def __init__(
        self, settings: dict[str, Any], work: Path, launcher: Launcher, log: Progress, data: Path | None = None
    ) -> None:
        self.settings, self.work, self.launch, self.log = settings, work.resolve(), launcher, log
        self.data = (data or self.work / "data").resolve()
        self.evaluate_test = settings.get("evaluate_test", True)
        self.s1, self.s2 = settings["stage1"], settings["stage2"]

    # ------------------------------------------------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------------------------------------------------

    def prepare_pool(self) -> None:
        """Render the phantom pool once (every positive boxed: ``r_fraction`` 1)."""
        if (self.data / "datalist.json").is_file():
            return
        from cxr_phantom import generate_dataset

        pool = self.settings["pool"]
        self.log(f"generating the {pool['num_images']}-image phantom pool into {self.data}")
        generate_dataset(
            self.data, num_images=pool["num_images"], size=pool["size"], seed=pool["seed"],
            prevalence=pool["prevalence"], r_fraction=1.0, val_fraction=pool["val_fraction"],
            test_fraction=pool["test_fraction"], difficulty=pool["difficulty"], image_format=pool["format"],
            workers=2, progress=not self.launch.in_process, zoom=pool["zoom"],
        )  # fmt: skip

    def derivation_seed(self, seed: int) -> int:
        return seed if self.settings["r_draw"] == "per_seed" else self.settings["derivation_seed"]

    def datalist(self, seed: int, kind: str = "semi", p_fraction: float | None = None) -> Path:
        """The seed's semi-supervised or oracle datalist (or a P-dose subsample), written on first use."""
        derivation = self.derivation_seed(seed)
        name = f"{kind}_r{self.settings['num_r']}_s{derivation}"
        name += (f"_p{p_fraction:g}" if p_fraction is not None else "") + ".json"
        path = self.data / name
        if not path.is_file():
            pool = json.loads((self.data / "datalist.json").read_text())
            semi, oracle = derive_datalists(pool, self.settings["num_r"], derivation)
            content = semi if kind == "semi" else oracle
            if p_fraction is not None:
                content = subsample_p(content, p_fraction, derivation)
            _write_json(path, content, indent=1)
        return path

    def counts(self, seed: int) -> dict[str, Any]:
        return subset_counts(json.loads(self.datalist(seed).read_text()))

    def check_counts(self) -> dict[str, Any]:
        """Subset counts of the first seed's datalist; warns when the protocol's size rules are not met."""
        counts = self.counts(self.settings["training_seeds"][0])
        self.log(f"datalists: {counts}")
        if counts["test_images"] < self.settings["min_test_images"]:
            self.log(f"WARNING: {counts['test_images']} test images, the protocol asks for >= "
                     f"{self.settings['min_test_images']}")  # fmt: skip
        if counts["test_rib_positive"] < self.settings["min_test_rib_positive"]:
            self.log(f"WARNING: {counts['test_rib_positive']} rib-positive test images, the protocol asks for >= "
                     f"{self.settings['min_test_rib_positive']}")  # fmt: skip
        ratio = self.settings.get("min_p_per_r")
        if ratio and counts.get("P", 0) < ratio * counts.get("R", 1):
            self.log(f"WARNING: P = {counts.get('P', 0)} is below {ratio} x R = {ratio * counts.get('R', 0)}")
        return counts

    # ------------------------------------------------------------------------------------------------------------
    # stage 1 and the teacher levels
    # ------------------------------------------------------------------------------------------------------------

    def stage1_dir(self, seed: int) -> Path:
        return self.work / f"seed{seed}" / "stage1"

    def level_dir(self, seed: int, level: dict[str, Any]) -> Path:
        return self.stage1_dir(seed) / f"level_{level['name']}"

    def levels_of(self, seed: int) -> list[dict[str, Any]]:
        return [level for level in self.settings["levels"] if seed in level["seeds"]]

    def stage1(self, seed: int) -> None:
        """Train stage 1 (resuming a killed run from its own checkpoints) and snapshot every teacher level of the
        seed: ``{"epoch": E}`` is the run's best checkpoint by the validation selection score (``model.pt``);
        ``{"val_rib_auroc": x}`` the first validated checkpoint whose rib AUROC reaches ``x``."""
        out = self.stage1_dir(seed)
        out.mkdir(parents=True, exist_ok=True)
        levels = self.levels_of(seed)
        if not (out / "checkpoint_final.pt").is_file():
            has_checkpoint = any(out.glob("checkpoint_*.pt"))
            overrides: dict[str, Any] = {
                "dataset_dir": self.data, "datalist": self.datalist(seed), "seed": seed, "ckpt_dir": out,
                "output_dir": out / "runs", "train#trainer#max_epochs": self.s1["epochs"],
                "train#samples_per_epoch": self.s1["samples_per_epoch"], "learning_rate": self.s1["learning_rate"],
                "loss#pos_weight": self.s1["pos_weight"], "val_interval": self.s1["val_interval"],
                "tensorboard_overlays": 0,
            }  # fmt: skip
            if self.s1.get("lr_cosine"):
                overrides.update({"lr_cosine": True, "lr_decay_epochs": self.s1["epochs"],
                                  "lr_final_factor": self.s1["lr_final_factor"]})  # fmt: skip
            if any("val_rib_auroc" in level for level in levels):  # keep the weights of every validated epoch
                overrides["stage_handlers"] = [{
                    "_target_": "scripts.utils.checkpoints.SafeCheckpointSaver", "save_dir": str(out),
                    "save_dict": {"model": "@network"}, "file_prefix": "snapshot", "epoch_level": True,
                    "save_interval": self.s1["val_interval"], "n_saved": None,
                }]  # fmt: skip
            if has_checkpoint:
                overrides["resume_checkpoint"] = "latest"
            attempt = len(list(out.parent.glob("stage1_run*.log"))) + 1
            self.log(f"seed {seed}: stage 1, {self.s1['epochs']} epochs ({'resumed' if has_checkpoint else 'new'})")
            self.launch("training", ["train.json"], overrides, out.parent / f"stage1_run{attempt}.log")
        history: dict[int, dict[str, float]] = {}
        for log_file in sorted(out.parent.glob("stage1_run*.log"), key=lambda p: int(p.stem[len("stage1_run") :])):
            history.update({h["epoch"]: h for h in validation_history(log_file.read_text())})  # later runs win
        curve = [history[epoch] for epoch in sorted(history)]
        _write_json(out / "validation_history.json", curve, indent=1)
        for level in levels:
            self._snapshot_level(seed, level, curve)

    def _snapshot_level(self, seed: int, level: dict[str, Any], curve: list[dict[str, float]]) -> None:
        out, snapshot = self.stage1_dir(seed), self.level_dir(seed, level)
        snapshot.mkdir(parents=True, exist_ok=True)
        if "val_rib_auroc" in level:
            reached = [h for h in curve if h.get("val_auroc_rib", float("nan")) >= level["val_rib_auroc"]]
            chosen = reached[0] if reached else max(curve, key=lambda h: h.get("val_auroc_rib", float("-inf")))
            if not reached:
                self.log(f"seed {seed}: stage 1 never reached validation rib AUROC {level['val_rib_auroc']} for "
                         f"level {level['name']}; its best validated checkpoint is used instead")  # fmt: skip
            info = {"epoch": chosen["epoch"], "val_rib_auroc": chosen["val_auroc_rib"],
                    "target": level["val_rib_auroc"], "reached": bool(reached)}  # fmt: skip
            _write_json(snapshot / "level.json", info, indent=2)
            shutil.copy2(out / f"snapshot_model_epoch={chosen['epoch']}.pt", snapshot / "model.pt")
        else:
            if level["epoch"] != self.s1["epochs"]:
                raise ValueError(f"level {level['name']}: an 'epoch' level is the full run ({self.s1['epochs']})")
            best = json.loads((out / "model_key_metric.json").read_text())
            _write_json(snapshot / "level.json", {"epoch": "best by the validation selection score", **best}, indent=2)
            for name in ("model_key_metric.json", "model_operating_point.json", "model.pt"):  # model.pt last
                shutil.copy2(out / name, snapshot / name)
        _write_json(snapshot / "validation_history.json", curve, indent=1)

    def calibrate(self, seed: int, level: dict[str, Any]) -> Path:
        snapshot = self.level_dir(seed, level)
        calibrated = snapshot / "model_calibrated.pt"
        if not calibrated.is_file():
            self.launch(
                "calibrating",
                ["train.json", "calibrate.json"],
                {"dataset_dir": self.data, "datalist": self.datalist(seed), "ckpt_path": snapshot / "model.pt",
                 "calibrated_path": calibrated},
                snapshot / "calibrate.log",
            )  # fmt: skip
        return calibrated

    def teacher(self, seed: int, level: dict[str, Any]) -> None:
        """Calibrate the level's snapshot, log its preconditions and evaluate it on test (the stage1 arm)."""
        from ablation_preconditions import preconditions

        snapshot = self.level_dir(seed, level)
        calibrated = self.calibrate(seed, level)
        config = self.launch.configs(["train.json"])
        pre = preconditions(
            config, self.launch.overrides, self.data, self.datalist(seed), calibrated, self.s2["t"],
            self.s2.get("a0") or 4.0,
        )  # fmt: skip
        _write_json(snapshot / "preconditions.json", pre, indent=2)
        result = {"level": level["name"], "arm": "stage1", "seed": seed, "name": "stage1", "selected": "calibrated"}
        result["validation_student"] = json.loads((snapshot / "validation_history.json").read_text())
        if self.evaluate_test:
            result.update(self.evaluate(calibrated, snapshot / "eval"))
        _write_json(snapshot / "result.json", result, indent=2)
        test = f", test {_short(result)}" if self.evaluate_test else ""
        self.log(f"seed {seed} level {level['name']}: teacher val rib AUROC {pre['val_rib_auroc']:.3f}, "
                 f"P maxima in (t, 0.8) {pre['p_in_band']:.2f}{test}")  # fmt: skip

    # ------------------------------------------------------------------------------------------------------------
    # stage 2
    # ------------------------------------------------------------------------------------------------------------

    def stage2_epochs(self, seed: int) -> int:
        """Stage-2 epochs: fixed (v1), or enough for ``passes_over_p`` passes over the seed's full P (v2)."""
        if "epochs" in self.s2:
            return int(self.s2["epochs"])
        num_p = self.counts(seed)["P"]
        samples = self.s2["passes_over_p"] * num_p / self.s2["mix"]["P"]
        return max(1, math.ceil(samples / self.s2["samples_per_epoch"]))

    def arm_overrides(
        self, arm: str, seed: int, level: dict[str, Any], out: Path, a0: float, decay: float,
        p_fraction: float | None = None, start: str = "model_calibrated.pt",
    ) -> dict[str, Any]:  # fmt: skip
        """Bundle overrides of one stage-2 arm (train.json + distill.json [+ demo.json]).

        ``start`` names the teacher/student starting point in the level's folder: the calibrated stage 1 (the
        protocol), or ``model.pt`` (the uncalibrated one, the paper's way: ``t`` applied to raw outputs).
        """
        epochs = self.stage2_epochs(seed)
        overrides: dict[str, Any] = {
            "dataset_dir": self.data, "datalist": self.datalist(seed, "semi", p_fraction), "seed": seed,
            "stage1_checkpoint": self.level_dir(seed, level) / start, "ckpt_dir": out,
            "output_dir": out / "runs", "train#trainer#max_epochs": epochs,
            "train#samples_per_epoch": self.s2["samples_per_epoch"], "learning_rate": self.s2["learning_rate"],
            "loss#pos_weight": self.s2["pos_weight"], "val_interval": self.s2.get("val_interval", epochs),
            "ema_decay": decay, "aals_a0": a0, "aals_t": self.s2["t"], "target_variant": ARM_VARIANT[arm],
            "tensorboard_overlays": 0, "train#subset_mix": dict(self.s2["mix"]),
        }  # fmt: skip
        if arm == "control":  # the same stage 2 without P
            overrides.update({"train#datalist#subsets": ["R", "N"], "train#subset_mix": dict(self.s2["control_mix"])})
        if arm == "oracle":  # the same images and sampling, P trained on its boxes
            overrides.update({"datalist": self.datalist(seed, "oracle"), "train#datalist#p_boxes": True})
        return overrides

    def arm_dir(self, seed: int, level: dict[str, Any], name: str) -> Path:
        return self.work / f"seed{seed}" / level["name"] / name

    def stage2(
        self, seed: int, level: dict[str, Any], name: str, arm: str, a0: float, decay: float,
        p_fraction: float | None = None, start: str = "model_calibrated.pt",
    ) -> dict[str, Any]:  # fmt: skip
        """Train one arm, choose student or teacher on validation, evaluate it on test; cached in result.json."""
        out = self.arm_dir(seed, level, name)
        result_file = out / "result.json"
        if result_file.is_file():
            return json.loads(result_file.read_text())
        shutil.rmtree(out, ignore_errors=True)  # a killed earlier attempt: start the arm afresh
        out.mkdir(parents=True)
        epochs = self.stage2_epochs(seed)
        self.log(f"seed {seed} level {level['name']}: stage 2 '{name}' ({epochs} x {self.s2['samples_per_epoch']} "
                 f"samples, a0 {a0:g}, EMA decay {decay:g})")  # fmt: skip
        started, cpu_before = time.time(), self.launch.child_cpu_seconds
        overrides = self.arm_overrides(arm, seed, level, out, a0, decay, p_fraction, start)
        text = self.launch("training", ["train.json", "distill.json"], overrides, out / "train.log")
        student = json.loads((out / "model_key_metric.json").read_text())["key_metric"]
        teacher = json.loads((out / "teacher_key_metric.json").read_text())["key_metric"]
        chosen = "teacher" if teacher > student else "student"
        checkpoint = out / ("teacher.pt" if chosen == "teacher" else "model.pt")
        aals_stats = out / "runs" / "aals_stats.jsonl"
        counts = subset_counts(json.loads(Path(overrides["datalist"]).read_text()))
        num_p = counts.get("P", 0) if arm != "control" else 0
        iterations = epochs * self.s2["samples_per_epoch"]
        result: dict[str, Any] = {
            "level": level["name"], "arm": arm, "seed": seed, "name": name, "a0": a0, "ema_decay": decay,
            "start": start,
            "p_fraction": 1.0 if p_fraction is None and num_p else (p_fraction or 0.0), "num_p": num_p,
            "samples": iterations, "passes_over_p": (iterations * overrides["train#subset_mix"].get("P", 0) / num_p)
            if num_p else 0.0,
            "selected": chosen, "val_score_student": student, "val_score_teacher": teacher,
            "val_score": max(student, teacher),
            "validation_student": validation_history(text),
            "validation_teacher": validation_history(text, "teacher_val"),
            "aals_stats": [json.loads(line) for line in aals_stats.read_text().splitlines()] if aals_stats.is_file()
            else [],
        }  # fmt: skip
        if self.evaluate_test:
            result.update(self.evaluate(checkpoint, out / "eval"))
        result["minutes"] = round((time.time() - started) / 60, 2)
        result["child_cpu_minutes"] = round((self.launch.child_cpu_seconds - cpu_before) / 60, 2)
        _write_json(result_file, result, indent=2)
        test = f"; test {_short(result)}" if self.evaluate_test else ""
        self.log(f"seed {seed} level {level['name']}: {name}: {chosen} chosen (val {result['val_score']:.4f}){test}")
        return result

    def evaluate(self, checkpoint: Path, out: Path) -> dict[str, Any]:
        """Evaluate a checkpoint on the test split (no overlay crops); per-class AUROC, FROC and ECE."""
        if not (out / "metrics.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
            self.launch(
                "evaluating",
                ["train.json", "evaluate.json"],
                {"dataset_dir": self.data, "datalist": self.data / "datalist.json", "ckpt_path": checkpoint,
                 "output_dir": out, "validate#handlers#3#num_overlays": 0},
                out.parent / f"{out.name}.log",
            )  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())["classes"]
        result: dict[str, Any] = {f"{c}_auroc": metrics[c]["auroc"] for c in CLASSES}
        result.update({f"{c}_froc": metrics[c]["froc_paper"] for c in CLASSES})
        result.update({f"{c}_ece": metrics[c].get("expected_calibration_error") for c in CLASSES})
        result["eval_dir"] = str(out)
        return result

    # ------------------------------------------------------------------------------------------------------------
    # v1's tuning of a0 and the EMA decay on one seed
    # ------------------------------------------------------------------------------------------------------------

    def tune(self, level: dict[str, Any]) -> dict[str, Any]:
        grid, seed = self.settings["tuning"], self.settings["tuning"]["seed"]
        first = grid["first_decay"]
        runs = [self.stage2(seed, level, f"aals_a{a0:g}_d{first:g}", "aals", a0, first) for a0 in grid["a0"]]
        a0 = max(runs, key=lambda r: r["val_score"])["a0"]
        for decay in grid["ema_decay"]:
            if decay != first:
                runs.append(self.stage2(seed, level, f"aals_a{a0:g}_d{decay:g}", "aals", a0, decay))
        decay = max((r for r in runs if r["a0"] == a0), key=lambda r: r["val_score"])["ema_decay"]
        self.log(f"tuning on validation: a0 = {a0:g}, EMA decay = {decay:g}")
        trials = [{k: r[k] for k in ("a0", "ema_decay", "val_score")} for r in runs]
        return {"a0": a0, "ema_decay": decay, "runs": trials}

    def tuned(self) -> dict[str, Any]:
        """a0 and the EMA decay: fixed by the protocol (v2) or chosen on validation on the tuning seed (v1)."""
        if not self.settings.get("tuning"):
            return {"a0": self.s2["a0"], "ema_decay": self.s2["ema_decay"], "runs": []}
        path = self.work / "tuning.json"
        if not path.is_file():
            _write_json(path, self.tune(self.settings["levels"][-1]), indent=2)
        return json.loads(path.read_text())

    # ------------------------------------------------------------------------------------------------------------
    # the plan
    # ------------------------------------------------------------------------------------------------------------

    def arm_name(self, arm: str, tuned: dict[str, Any]) -> str:
        if arm == "aals" and self.settings.get("tuning"):
            return f"aals_a{tuned['a0']:g}_d{tuned['ema_decay']:g}"  # v1's folder names
        return arm

    def plan(self) -> list[Step]:
        """Every step in run order: all stage-1 runs, then the top level's arms, then the lower levels' arms.

        The top level comes first so that a run cut short by its budget trims the lower levels, as the protocol
        says.
        """
        steps: list[Step] = []
        seeds = self.settings["training_seeds"]
        for seed in seeds:
            snapshots = [self.level_dir(seed, level) / "model.pt" for level in self.levels_of(seed)]
            steps.append(Step(f"seed {seed}: stage 1 and its teacher levels",
                              lambda paths=snapshots: all(p.is_file() for p in paths),
                              lambda s=seed: self.stage1(s), "stage1"))  # fmt: skip
        levels = [self.settings["levels"][-1], *self.settings["levels"][:-1]]
        for level in levels:
            for seed in [s for s in seeds if s in level["seeds"]]:
                result = self.level_dir(seed, level) / "result.json"
                steps.append(Step(f"seed {seed} level {level['name']}: teacher", result.is_file,
                                  lambda s=seed, lv=level: self.teacher(s, lv), "stage1"))  # fmt: skip
                for arm in self.settings["arms"][level["name"]]:
                    if arm == "stage1":
                        continue
                    steps.append(self._arm_step(seed, level, arm, None))
                if level is self.settings["levels"][-1]:
                    for fraction in self.settings["p_dose"]:
                        steps.append(self._arm_step(seed, level, "aals", fraction))
        return self._prioritised(steps)

    def _prioritised(self, steps: list[Step]) -> list[Step]:
        """Reorder ``steps`` by the settings' ``priority`` list (protocol v2, amendment 3), if it has one.

        Each entry ``[seed, level, arm]`` pulls that arm forward, preceded by what it needs (the seed's stage 1, the
        level's teacher); every step the list does not name follows in plan order. A budget cut therefore trims the
        end of the priority list, and rerunning with a larger budget completes the full protocol.
        """
        priority = self.settings.get("priority")
        if not priority:
            return steps
        by_name = {step.name: step for step in steps}
        ordered: list[Step] = []
        for seed, level, arm in priority:
            for name in (f"seed {seed}: stage 1 and its teacher levels", f"seed {seed} level {level}: teacher",
                         f"seed {seed} level {level}: {arm}"):  # fmt: skip
                if name not in by_name:
                    raise ValueError(f"priority entry {[seed, level, arm]}: no step named {name!r} in the plan")
                if by_name[name] not in ordered:
                    ordered.append(by_name[name])
        return ordered + [step for step in steps if step not in ordered]

    def _arm_step(self, seed: int, level: dict[str, Any], arm: str, p_fraction: float | None) -> Step:
        def run() -> dict[str, Any]:
            tuned = self.tuned()
            name = self.arm_name(arm, tuned) if p_fraction is None else f"aals_p{p_fraction:g}"
            return self.stage2(seed, level, name, arm, tuned["a0"], tuned["ema_decay"], p_fraction)

        label = arm if p_fraction is None else f"aals_p{p_fraction:g}"

        def done() -> bool:
            if self.settings.get("tuning") and arm == "aals" and p_fraction is None:
                if not (self.work / "tuning.json").is_file():
                    return False
                label_name = self.arm_name(arm, json.loads((self.work / "tuning.json").read_text()))
            else:
                label_name = label
            return (self.arm_dir(seed, level, label_name) / "result.json").is_file()

        return Step(f"seed {seed} level {level['name']}: {label}", done, run)

    def execute(self, budget_minutes: float | None = None, only: str | None = None) -> None:
        """Run every step not yet done, with progress lines; stop starting new steps past ``budget_minutes``.

        ``only="stage1"`` runs the stage-1 segments and the teacher levels only (what stage 2 starts from).
        """
        self.prepare_pool()
        steps = [step for step in self.plan() if only is None or step.kind == only]
        todo = [step for step in steps if not step.done()]
        self.log(f"{len(steps)} steps, {len(steps) - len(todo)} already done, {len(todo)} to run")
        for index, step in enumerate(todo):
            if budget_minutes is not None and self.log.minutes() > budget_minutes:
                self.log(f"budget of {budget_minutes:g} min spent: {len(todo) - index} steps left undone")
                break
            self.log(f"step {index + 1}/{len(todo)}: {step.name} ({len(todo) - index - 1} left after it)")
            step.run()

    def results(self) -> list[dict[str, Any]]:
        """Every finished run's result (teachers' ``stage1`` arm included), in plan order."""
        runs = []
        for path in sorted(self.work.glob("seed*/**/result.json")):
            runs.append(json.loads(path.read_text()))
        return runs


def _short(result: dict[str, Any]) -> str:
    return ", ".join(f"{c} {m} {result[f'{c}_{m}']:.3f}" for c in CLASSES for m in METRICS)


def _write_json(path: Path, content: Any, indent: int | None = None) -> None:
    """Write JSON through a temporary file and a rename: a killed benchmark never leaves a truncated result."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=indent) + "\n")
    temporary.replace(path)
