"""A site's training script: FLARE's Client API around ``monai.fl``'s ``MonaiAlgo`` driving the bundle's configs.

Each round the site

1. receives the global model (full weights) from the server;
2. validates it (every ``validate_every`` rounds) on the site's own validation split with the bundle's
   ``validate#evaluator`` (the same evaluator as local training; its checkpoint handler keeps the best global model
   by the site's validation as ``<work_dir>/models/model.pt``), and reports those metrics;
3. trains it with the bundle's ``train#trainer`` for the recipe's ``local_epochs`` (``MonaiAlgo.train``);
4. sends back the **weight differences** of the network (``MonaiAlgo.get_weights``, ``send_weight_diff=True``) with
   the number of iterations it ran (FedAvg's weight) and the validation metrics of step 2.

Nothing else leaves the site: no image, label, heatmap, teacher or optimizer state.

``MonaiAlgo`` builds the trainer from the bundle's configs but does not execute the bundle's ``run`` list; this
script adds what stage 2 needs from it: the handlers in ``stage_handlers`` (EMA teacher, AALS targets, teacher
validation), attached in the same order as ``run`` attaches them, and the teacher policy (:mod:`cxr_fl.teacher`).
``stage_setup`` (loading a local stage-1 checkpoint) is deliberately not run: the global model replaces it. The
local periodic checkpoints of ``train#checkpoint_saver`` are not attached either: a federated job resumes from the
server's global model, not from a site's trainer state.

The training recipe, the same for every site, is a JSON file in the job (``recipe.json`` beside ``cxr_fl/``,
written by ``fl/job.py``; see :func:`read_recipe`); site-specific paths come from :mod:`cxr_fl.site_settings`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script (FLARE's ScriptRunner): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxr_fl.site_settings import SiteSettings, load_site_settings
from cxr_fl.teacher import TEACHER_POLICIES, TeacherSync

__all__ = ["build_algo", "bundle_overrides", "config_files", "main", "parse_args", "read_recipe", "site_round"]

logger = logging.getLogger("cxr_fl.client")
#: Local validation inside training is switched off: the site validates each received global model instead.
NO_LOCAL_VALIDATION = 10**9


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--recipe`` (the job's training recipe) and ``--site_config`` (the site's settings file)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipe.json", help="recipe JSON, relative to the app's custom folder")
    parser.add_argument("--site_config", default=None, help="site settings JSON (default: $CXR_FL_SITE_CONFIG)")
    return parser.parse_args(argv)


RECIPE_KEYS = {"stage", "configs", "local_epochs", "teacher", "overrides", "seed", "validate_every"}


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The job's training recipe: ``stage`` (1 or 2), ``configs`` (bundle config names merged in order),
    ``local_epochs`` (per round), ``teacher`` (stage-2 policy, ``local`` or ``global``), ``overrides`` (bundle
    overrides for every site), ``seed`` (each site adds a number derived from its name) and ``validate_every``
    (validate the received global model every that many rounds, from the first; 0: never).

    Raises:
        ValueError: unreadable file, unknown or missing keys, or a value of the wrong kind (the message names the
            file).
    """
    path = Path(path)
    if not path.is_absolute():
        path = Path(__file__).resolve().parents[1] / path  # the app's custom/ folder, which holds cxr_fl/
    try:
        recipe = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the recipe: {error}") from error
    if not isinstance(recipe, dict) or set(recipe) != RECIPE_KEYS:
        keys = sorted(recipe) if isinstance(recipe, dict) else type(recipe).__name__
        raise ValueError(f"{path}: the recipe needs exactly the keys {sorted(RECIPE_KEYS)}, got {keys}.")
    if recipe["stage"] not in (1, 2):
        raise ValueError(f"{path}: stage must be 1 or 2, got {recipe['stage']!r}.")
    if recipe["teacher"] not in TEACHER_POLICIES:
        raise ValueError(f"{path}: teacher must be one of {TEACHER_POLICIES}, got {recipe['teacher']!r}.")
    if not isinstance(recipe["local_epochs"], int) or recipe["local_epochs"] < 1:
        raise ValueError(f"{path}: local_epochs must be a positive integer, got {recipe['local_epochs']!r}.")
    if not isinstance(recipe["validate_every"], int) or recipe["validate_every"] < 0:
        raise ValueError(f"{path}: validate_every must be an integer >= 0, got {recipe['validate_every']!r}.")
    if not isinstance(recipe["overrides"], dict) or not isinstance(recipe["configs"], list):
        raise ValueError(f"{path}: overrides must be a JSON object and configs a list of config names.")
    return recipe


def config_files(bundle_root: Path, names: Sequence[str], stage: int) -> list[str]:
    """Absolute paths of the bundle configs ``names`` (in ``<bundle_root>/configs``); checks the stage's configs."""
    files = list(names)
    if not files or files[0] != "train.json":
        raise ValueError(f"the recipe's configs must start with train.json, got {names!r}.")
    outside = [name for name in files if Path(name).name != name or not name.endswith(".json")]
    if outside:  # the job names configs of the site's installed bundle, never files elsewhere
        raise ValueError(f"the recipe's configs must be file names in <bundle_root>/configs, got {outside}.")
    if stage == 2 and "distill.json" not in files:
        raise ValueError(f"stage 2 needs distill.json in the recipe's configs, got {names!r}.")
    if stage == 1 and "distill.json" in files:
        raise ValueError(f"stage 1 must not merge distill.json, got {names!r}.")
    paths = [bundle_root / "configs" / name for name in files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"bundle config {path} does not exist.")
    return [str(path) for path in paths]


def _expressions(value: Any) -> list[str]:
    """Strings in ``value`` (nested) that MONAI's config parser would evaluate or resolve: ``$``, ``@``, ``%``."""
    if isinstance(value, str):
        return [value] if value[:1] in ("$", "@", "%") else []
    if isinstance(value, Mapping):
        return [e for key, item in value.items() for e in _expressions(key) + _expressions(item)] + (
            ["_target_"] if "_target_" in value else []
        )
    if isinstance(value, (list, tuple)):
        return [e for item in value for e in _expressions(item)]
    return []


def bundle_overrides(site: SiteSettings, job_overrides: Mapping[str, Any], stage: int, seed: int) -> dict[str, Any]:
    """The overrides ``MonaiAlgo`` passes to the bundle: the job's recipe, then the site's paths and settings.

    The job's overrides come from the server, so they must be plain values: an expression (``$...``), reference
    (``@...``, ``%...``) or ``_target_`` would run code at the site, and is refused unless the site settings say
    ``"trust_job_expressions": true``. The site's own overrides may use them. Paths are the site's: ``ckpt_dir``,
    ``output_dir`` and the preprocessed store ``cache_dir`` (``<work_dir>/cache``; a site may point its overrides at
    the store its local training already built, or ``""`` for the in-RAM cache) replace any the job gives. Stage 1
    trains on R + N (``train.json``'s subsets), so a site without R images cannot take part: it is refused here with
    a clear error rather than training on negatives only.
    """
    code = [f"{key}: {found}" for key, value in job_overrides.items() for found in _expressions({key: value})]
    if code and not site.trust_job_expressions:
        raise ValueError(
            f"site {site.name}: the job's overrides hold config expressions that would run at this site: {code}. "
            'Give plain values in the job, or set "trust_job_expressions": true in this site\'s settings.'
        )
    site_seed = seed + zlib.crc32(site.name.encode()) % 10_000
    overrides: dict[str, Any] = dict(job_overrides)
    overrides.update(
        dataset_dir=str(site.dataset_dir),
        datalist=str(site.datalist),
        ckpt_dir=str(site.work_dir / "models"),
        output_dir=str(site.work_dir / "runs"),
        cache_dir=str(site.work_dir / "cache"),  # the site's preprocessed store, not the installed bundle's folder
        val_interval=NO_LOCAL_VALIDATION,
        seed=site_seed,
    )
    overrides.update(site.overrides)
    if stage == 1:
        subsets = {item.get("subset") for item in json.loads(site.datalist.read_text()).get("training", [])}
        if "R" not in subsets:
            raise ValueError(
                f"site {site.name}: {site.datalist} has no R (boxed) training images: stage 1 trains on R + N, "
                "so this site joins stage 2 only. Leave it out of the stage-1 job."
            )
    return overrides


def attach_stage2(algo: Any, policy: str) -> TeacherSync:
    """Attach the bundle's ``stage_handlers`` (stage 2) to ``MonaiAlgo``'s trainer, after the teacher policy."""
    parser = algo.train_workflow.parser
    sync = TeacherSync(parser.get_parsed_content("teacher"), parser.get_parsed_content("network"), policy)
    sync.attach(algo.trainer)
    for handler in parser.get_parsed_content("stage_handlers"):
        handler.attach(algo.trainer)
    return sync


def validate_global(algo: Any, weights: Mapping[str, torch.Tensor], round_number: int) -> dict[str, float]:
    """Validate the received global weights on the site's validation split; returns the scalar metrics.

    Uses the bundle's ``validate#evaluator`` (network shared with the trainer). Its handlers keep the best global
    model by this site's validation as ``models/model.pt`` and its operating point beside it.
    """
    from monai.networks.utils import copy_model_state

    evaluator = algo.train_workflow.parser.get_parsed_content("validate#evaluator")
    copy_model_state(src=dict(weights), dst=algo.trainer.network)
    evaluator.run(round_number + 1)
    metrics = {}
    for name, value in evaluator.state.metrics.items():
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            metrics[name] = float(value)
    return metrics


def build_algo(site: SiteSettings, recipe: Mapping[str, Any]) -> Any:
    """``MonaiAlgo`` on the site's installed bundle with the recipe's configs and overrides, initialised; stage 2
    also gets the bundle's ``stage_handlers`` and the recipe's teacher policy (:func:`attach_stage2`)."""
    from monai.fl.client import MonaiAlgo
    from monai.fl.utils.constants import ExtraItems

    overrides = bundle_overrides(site, recipe["overrides"], recipe["stage"], recipe["seed"])
    site.work_dir.mkdir(parents=True, exist_ok=True)
    if str(site.bundle_root) not in sys.path:  # the configs' `scripts.` targets, as `monai.bundle run` would
        sys.path.insert(0, str(site.bundle_root))
    algo = MonaiAlgo(
        bundle_root=str(site.bundle_root),
        local_epochs=recipe["local_epochs"],
        send_weight_diff=True,
        config_train_filename=config_files(site.bundle_root, recipe["configs"], recipe["stage"]),
        train_kwargs=overrides,
        config_evaluate_filename=None,
    )
    algo.initialize(extra={ExtraItems.CLIENT_NAME: site.name})
    if recipe["stage"] == 2:
        attach_stage2(algo, recipe["teacher"])
    return algo


def site_round(
    algo: Any, weights: Mapping[str, torch.Tensor], round_number: int, validate_every: int
) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
    """One round at a site: validate the received global ``weights`` (every ``validate_every`` rounds), train them
    for the recipe's local epochs, and return what the site sends back.

    Returns:
        ``(differences, metrics, iterations)``: trained minus received weights for every entry of the network's
        state dict (contiguous CPU tensors of the parameters' shapes; nothing else), the scalar validation metrics
        of the received model (empty when not validated this round), and the iterations trained (FedAvg's weight).
    """
    from monai.fl.utils.constants import FlStatistics
    from monai.fl.utils.exchange_object import ExchangeObject

    metrics: dict[str, float] = {}
    if validate_every and round_number % validate_every == 0:
        metrics = validate_global(algo, weights, round_number)
        logger.info("%s round %d: global model on local validation %s", algo.client_name, round_number, metrics)
    algo.train(ExchangeObject(weights=dict(weights)))
    update = algo.get_weights()  # MonaiAlgo: differences to the received weights (send_weight_diff=True)
    steps = int(update.statistics.get(FlStatistics.NUM_EXECUTED_ITERATIONS, 0))
    # contiguous copies: the network is channels-last, and FLARE's tensor streaming (safetensors) needs contiguous
    # tensors
    differences = {name: value.contiguous() for name, value in update.weights.items()}
    return differences, metrics, steps


def site_workspace() -> Path | None:
    """The site's FLARE workspace, from where FLARE deploys this script (``<workspace>/<job>/app_<site>/custom/``);
    None when the script does not run from a deployed job."""
    parents = Path(__file__).resolve().parents
    if len(parents) > 4 and parents[1].name == "custom" and parents[2].name.startswith("app"):
        return parents[4]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run the site's part of the federated job until the server ends it."""
    import nvflare.client as flare
    from nvflare.apis.fl_constant import FLMetaKey

    args = parse_args(argv)
    recipe = read_recipe(args.recipe)
    flare.init()
    site = load_site_settings(flare.get_site_name(), args.site_config, workspace=site_workspace())
    algo = build_algo(site, recipe)
    logger.info("%s ready: stage %d, bundle %s, data %s", site.name, recipe["stage"], site.bundle_root, site.datalist)
    while flare.is_running():
        received = flare.receive()
        if received is None:
            break
        weights = {name: torch.as_tensor(value) for name, value in received.params.items()}
        differences, metrics, steps = site_round(
            algo, weights, int(received.current_round or 0), recipe["validate_every"]
        )
        flare.send(
            flare.FLModel(
                params=differences,
                params_type=flare.ParamsType.DIFF,
                metrics=metrics,
                meta={FLMetaKey.NUM_STEPS_CURRENT_ROUND: steps},
            )
        )
    algo.finalize()
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    logger.info("%s finished: %.1f CPU seconds in this site's process and its children", site.name, cpu)


if __name__ == "__main__":
    main()
