"""Federated training (``fl/``) without the FLARE simulator: site datalists, site settings, the recipe, the stage-2
teacher policy, the quorum controller, the exported job, the atomic global checkpoint and the benchmark's bootstrap.

The simulator runs are in ``test_federated_simulator.py`` (full tier).
"""

from __future__ import annotations

import json
from pathlib import Path

import benchmark_federated
import numpy as np
import pytest
import torch
from ablation_stats import seed_draws
from benchmark_federated import MARK_END, MARK_START, share_interval
from conftest import BUNDLE_ROOT
from cxr_fl.client import build_algo, bundle_overrides, config_files, read_recipe, site_round
from cxr_fl.site_settings import ENV_VAR, LOCAL_FILE, SiteSettingsError, load_site_settings
from cxr_fl.sites import split_sites
from cxr_fl.teacher import TeacherSync
from ignite.engine import Engine


def _pool(num_r: int = 6, num_p: int = 11, num_n: int = 20, num_val: int = 9) -> dict:
    training = [{"image": f"r{i}.png", "subset": "R", "labels": {"rib": 1, "clavicle": 0}} for i in range(num_r)]
    training += [{"image": f"p{i}.png", "subset": "P", "labels": {"rib": 1, "clavicle": 0}} for i in range(num_p)]
    training += [{"image": f"n{i}.png", "subset": "N", "labels": {"rib": 0, "clavicle": 0}} for i in range(num_n)]
    validation = [{"image": f"v{i}.png", "labels": {"rib": i % 2, "clavicle": 0}} for i in range(num_val)]
    test = [{"image": "t.png", "labels": {"rib": 1, "clavicle": 0}}]
    return {"classes": ["rib", "clavicle"], "training": training, "validation": validation, "test": test}


# ----------------------------------------------------------------------------------------------------------------
# site datalists
# ----------------------------------------------------------------------------------------------------------------


def test_sites_partition_the_training_and_validation_images_by_holdings():
    pool = _pool()
    holdings = {"site-a": ("R", "N"), "site-b": ("P", "N"), "site-c": ("P", "N")}
    sites = split_sites(pool, holdings, seed=1)
    every = [item["image"] for site in sites.values() for item in site["training"]]
    assert sorted(every) == sorted(item["image"] for item in pool["training"])  # each image at exactly one site
    for name, site in sites.items():
        assert {item["subset"] for item in site["training"]} == set(holdings[name])
        assert site["test"] == []  # the test split stays out of every site
        assert site["classes"] == pool["classes"]
    counts = {name: site["site"]["counts"] for name, site in sites.items()}
    assert counts["site-a"]["R"] == 6 and counts["site-b"]["R"] == counts["site-c"]["R"] == 0
    assert sorted([counts["site-b"]["P"], counts["site-c"]["P"]]) == [5, 6]
    assert sorted(c["N"] for c in counts.values()) == [6, 7, 7]
    assert [c["validation"] for c in counts.values()] == [3, 3, 3]
    assert split_sites(pool, holdings, seed=1) == sites  # deterministic
    assert split_sites(pool, holdings, seed=2) != sites


def test_sites_refuse_unheld_or_unknown_subsets():
    pool = _pool()
    with pytest.raises(ValueError, match=r"\['P'\] are in the training split but no site holds them"):
        split_sites(pool, {"site-a": ("R", "N")})
    with pytest.raises(ValueError, match="unknown subsets"):
        split_sites(pool, {"site-a": ("R", "N", "P", "X")})
    with pytest.raises(ValueError, match="has no P image"):
        split_sites(_pool(num_p=0), {"site-a": ("R", "N", "P")})


# ----------------------------------------------------------------------------------------------------------------
# site settings and recipe
# ----------------------------------------------------------------------------------------------------------------


def _settings_file(tmp_path: Path, **entry) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "datalist.json").write_text(json.dumps(_pool()))
    base = {"dataset_dir": str(data), "bundle_root": str(BUNDLE_ROOT), "work_dir": str(tmp_path / "work")}
    path = tmp_path / "sites.json"
    path.write_text(json.dumps({"site-a": {**base, **entry}}))
    return path


def test_site_settings_resolve_paths_and_name_the_file_in_errors(tmp_path, monkeypatch):
    path = _settings_file(tmp_path, overrides={"num_workers": 0})
    good = path.read_text()
    site = load_site_settings("site-a", path)
    assert site.datalist == tmp_path / "data" / "datalist.json" and site.bundle_root == BUNDLE_ROOT
    assert site.overrides == {"num_workers": 0}
    monkeypatch.setenv(ENV_VAR, str(path))
    assert load_site_settings("site-a").work_dir == tmp_path / "work"
    with pytest.raises(SiteSettingsError, match=r"sites\.json: no entry for site 'site-b'"):
        load_site_settings("site-b", path)
    with pytest.raises(SiteSettingsError, match="unknown keys"):
        load_site_settings("site-a", _settings_file(tmp_path, password="x"))
    with pytest.raises(SiteSettingsError, match="has no configs/train.json"):
        load_site_settings("site-a", _settings_file(tmp_path, bundle_root=str(tmp_path)))
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(SiteSettingsError, match="no site settings file"):
        load_site_settings("site-a", workspace=tmp_path)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / LOCAL_FILE).write_text(good)  # the site workspace's local/ folder
    assert load_site_settings("site-a", workspace=tmp_path).dataset_dir == tmp_path / "data"


def test_recipe_is_checked_and_stage_one_refuses_a_site_without_boxes(tmp_path):
    recipe = {"stage": 2, "configs": ["train.json", "distill.json"], "local_epochs": 1, "teacher": "global"}
    recipe.update(overrides={"learning_rate": 0.001}, seed=3, validate_every=1)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    assert read_recipe(path) == recipe
    path.write_text(json.dumps({**recipe, "teacher": "median"}))
    with pytest.raises(ValueError, match="recipe.json: teacher must be one of"):
        read_recipe(path)
    path.write_text(json.dumps({**recipe, "extra": 1}))
    with pytest.raises(ValueError, match="needs exactly the keys"):
        read_recipe(path)
    with pytest.raises(ValueError, match="stage 2 needs distill.json"):
        config_files(BUNDLE_ROOT, ["train.json"], 2)
    assert config_files(BUNDLE_ROOT, ["train.json", "demo.json"], 1)[1].endswith("configs/demo.json")

    site = load_site_settings("site-a", _settings_file(tmp_path, overrides={"device": "cpu"}))
    job = {"learning_rate": 0.001, "ckpt_dir": "/elsewhere", "cache_dir": "/elsewhere/cache"}
    overrides = bundle_overrides(site, job, stage=1, seed=3)
    assert overrides["ckpt_dir"] == str(tmp_path / "work" / "models")  # the site's folders, not the job's
    assert overrides["cache_dir"] == str(tmp_path / "work" / "cache")  # each site's own preprocessed store
    own_store = load_site_settings("site-a", _settings_file(tmp_path, overrides={"cache_dir": "/scratch/store"}))
    assert bundle_overrides(own_store, job, stage=1, seed=3)["cache_dir"] == "/scratch/store"
    assert overrides["device"] == "cpu" and overrides["learning_rate"] == 0.001
    assert overrides["datalist"] == str(site.datalist)
    for code in ({"learning_rate": "$__import__('os').system('id')"}, {"+train#handlers": [{"_target_": "x.Y"}]}):
        with pytest.raises(ValueError, match="config expressions that would run at this site"):
            bundle_overrides(site, code, stage=1, seed=3)  # the server's recipe cannot run code at the site
    trusting = load_site_settings("site-a", _settings_file(tmp_path, trust_job_expressions=True))
    assert bundle_overrides(trusting, {"learning_rate": "$1e-3"}, stage=1, seed=3)["learning_rate"] == "$1e-3"
    with pytest.raises(ValueError, match="file names in <bundle_root>/configs"):
        config_files(BUNDLE_ROOT, ["train.json", "../../etc/x.json"], 1)
    without_r = _pool(num_r=0)
    (tmp_path / "data" / "datalist.json").write_text(json.dumps(without_r))
    with pytest.raises(ValueError, match="no R \\(boxed\\) training images: .* joins stage 2 only"):
        bundle_overrides(site, {}, stage=1, seed=3)
    assert bundle_overrides(site, {}, stage=2, seed=3)["datalist"] == str(site.datalist)


# ----------------------------------------------------------------------------------------------------------------
# stage-2 teacher policy
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["global", "local"])
def test_teacher_takes_the_global_model_every_round_or_only_the_first(policy):
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    engine = Engine(lambda engine, batch: None)
    TeacherSync(teacher, student, policy).attach(engine)
    rounds = []
    for value in (1.0, 2.0):  # the global model of round 0, then of round 1, loaded into the student
        with torch.no_grad():
            student.weight.fill_(value)
            teacher.weight.fill_(-5.0)  # stands for the teacher's own EMA state at the end of the last round
        engine.run([0], max_epochs=1)
        rounds.append(teacher.weight[0, 0].item())
    assert rounds == ([1.0, 2.0] if policy == "global" else [1.0, -5.0])
    with pytest.raises(ValueError, match="teacher policy"):
        TeacherSync(teacher, student, "mean")


def test_a_site_sends_the_weight_differences_of_its_network_and_nothing_else(phantoms, tmp_path):
    """One stage-2 round through MonaiAlgo on the bundle's configs: what ``site_round`` returns is what leaves."""
    tiny = {"image_size": 64, "network_def#widths": [8, 16, 32, 64], "network_def#fpn_channels": 16}
    tiny.update({"batch_size": 4, "num_workers": 0, "train#samples_per_epoch": 8, "tensorboard_overlays": 0})
    settings = {"dataset_dir": str(phantoms), "bundle_root": str(BUNDLE_ROOT), "work_dir": str(tmp_path / "work")}
    (tmp_path / "sites.json").write_text(json.dumps({"site-a": settings}))
    recipe = {"stage": 2, "configs": ["train.json", "distill.json", "demo.json"], "local_epochs": 1}
    recipe.update(teacher="global", overrides=tiny, seed=0, validate_every=1)
    algo = build_algo(load_site_settings("site-a", tmp_path / "sites.json"), recipe)
    network = algo.trainer.network
    torch.manual_seed(0)  # a "global model" unlike the site's freshly built network
    received = {
        name: (value + 0.05 * torch.randn_like(value) if value.is_floating_point() else value).detach().contiguous()
        for name, value in network.state_dict().items()
    }
    differences, metrics, steps = site_round(algo, received, round_number=0, validate_every=1)

    trained = network.state_dict()
    assert set(differences) == set(trained)  # one entry per network weight or buffer: no image, label or teacher
    for name, difference in differences.items():
        assert (
            difference.shape == trained[name].shape and difference.is_contiguous() and difference.device.type == "cpu"
        )
        assert torch.equal(difference, trained[name] - received[name])
    assert sum(d.numel() for d in differences.values()) == sum(v.numel() for v in trained.values())
    assert any(d.abs().max() > 0 for d in differences.values())
    assert steps == 2  # 8 samples, batch 4: FedAvg's weight
    assert metrics and all(name.startswith("val_") and isinstance(v, float) for name, v in metrics.items())
    assert (tmp_path / "work" / "models" / "model.pt").is_file()  # the validated global model, kept at the site
    assert list((tmp_path / "work" / "cache").glob("*/settings.json"))  # the site's preprocessed store
    # the teacher the AALS handler uses started the round from the received global model (not from the network it
    # was copied from when built) and followed the student slowly (EMA 0.999)
    parser = algo.train_workflow.parser
    teacher_module = parser.get_parsed_content("teacher")
    assert parser.get_parsed_content("aals_handler").teacher is teacher_module
    teacher = dict(teacher_module.named_parameters())
    moved = {name: (trained[name] - received[name]).abs().max() for name in teacher}
    teacher_moved = {name: (teacher[name].detach() - received[name]).abs().max() for name in teacher}
    assert max(teacher_moved.values()) < 0.01 * max(moved.values())


# ----------------------------------------------------------------------------------------------------------------
# benchmark statistics
# ----------------------------------------------------------------------------------------------------------------


def test_share_of_the_centralised_gain_kept_is_a_ratio_of_paired_seed_means():
    draws = seed_draws(3, 400, seed=0)
    base = np.random.default_rng(0).random((3, 401))
    share = share_interval(base + 0.02, base, base + 0.04, draws)  # the consortium keeps half of the gain
    assert share["share"] == pytest.approx(0.5) and share["lower"] == pytest.approx(0.5) and share["dropped"] == 0
    fed = base + np.array([[0.0], [0.02], [0.04]])  # per-seed gains 0, 0.02, 0.04 of a 0.04 centralised gain
    share = share_interval(fed, base, base + 0.04, draws)
    assert share["share"] == pytest.approx(0.5) and 0.0 <= share["lower"] < 0.4 and 0.6 < share["upper"] <= 1.0
    none = share_interval(base + 0.02, base, base - 0.01, draws)  # no centralised gain: no share
    assert np.isnan(none["share"]) and none["dropped"] == 400


def test_model_card_federated_tables_are_the_recorded_benchmark(monkeypatch):
    """The model card's federated block is what ``benchmark_federated.py`` writes from ``federated.json``: no number
    typed by hand, the seeds the record ran, and every arm on every one of them."""
    record = json.loads((BUNDLE_ROOT / "docs" / "federated.json").read_text())
    settings = dict(benchmark_federated.SETTINGS)
    settings.update(record["settings"])
    monkeypatch.setattr(benchmark_federated, "SETTINGS", settings)
    card = (BUNDLE_ROOT / "docs" / "README.md").read_text()
    block = card.split(MARK_START, 1)[1].split(MARK_END, 1)[0].strip()
    assert block == benchmark_federated.markdown(record).strip()
    ran = {(run["arm"], run["seed"]) for run in record["runs"]}
    assert ran == {(arm, seed) for arm in settings["arms"] for seed in settings["training_seeds"]}
    assert len(settings["training_seeds"]) >= 2  # amendment 1 of the protocol: at least seeds 0 and 1


# ----------------------------------------------------------------------------------------------------------------
# FLARE parts (need requirements-fl.txt)
# ----------------------------------------------------------------------------------------------------------------


def test_quorum_controller_sends_rounds_with_the_quorum():
    pytest.importorskip("nvflare")
    from cxr_fl.controller import QuorumFedAvg

    controller = QuorumFedAvg(num_clients=3, num_rounds=2, quorum=2, wait_after_quorum=30, round_timeout=600)
    sent = {}
    controller.broadcast_model = lambda **kwargs: sent.update(kwargs)
    controller.send_model(task_name="train", data="model", targets=["a", "b", "c"], callback=print)
    assert (sent["min_responses"], sent["timeout"], sent["wait_time_after_min_received"]) == (2, 600, 30)
    assert sent["targets"] == ["a", "b", "c"] and sent["blocking"] is False
    with pytest.raises(ValueError, match="quorum must be in"):
        QuorumFedAvg(num_clients=2, num_rounds=1, quorum=3)


def test_exported_jobs_reference_bundle_configs_and_start_from_the_bundle_network(tmp_path):
    pytest.importorskip("nvflare")
    from cxr_fl.jobs import build_job

    overrides = {"network_def#widths": [8, 16, 32, 64], "network_def#fpn_channels": 16, "image_size": 64}
    job = build_job(
        stage=1, sites=["site-a", "site-b"], rounds=3, configs=["train.json", "demo.json"], out_dir=tmp_path,
        overrides=overrides, seed=7, quorum=1, wait_after_quorum=60,
    )  # fmt: skip
    meta = json.loads((job / "meta.json").read_text())
    assert meta["min_clients"] == 1 and set(meta["deploy_map"]) == {"app_server", "app_site-a", "app_site-b"}
    server = json.loads((job / "app_server" / "config" / "config_fed_server.json").read_text())
    controller = server["workflows"][0]
    assert controller["path"] == "cxr_fl.controller.QuorumFedAvg"
    assert controller["args"] == {"num_clients": 2, "num_rounds": 3, "quorum": 1, "wait_after_quorum": 60}
    persistor = server["components"][0]
    assert persistor["args"] == {"source_ckpt_file_full_name": "initial_model.pt", "allow_numpy_conversion": False}
    client = json.loads((job / "app_site-a" / "config" / "config_fed_client.json").read_text())
    executor = client["executors"][0]["executor"]["args"]
    assert executor["task_script_path"] == "cxr_fl/client.py" and executor["params_exchange_format"] == "pytorch"
    custom = job / "app_site-a" / "custom"
    recipe = read_recipe(custom / "recipe.json")
    assert recipe["configs"] == ["train.json", "demo.json"] and recipe["overrides"] == overrides
    assert (custom / "cxr_fl" / "client.py").is_file() and not list(custom.rglob("*.pt"))  # no weights to sites

    # the initial model is the bundle's network_def with the overrides, seeded: loadable with weights_only
    from monai.bundle import ConfigParser

    from scripts.distill.aals import load_weights

    parser = ConfigParser()
    parser.read_config([str(BUNDLE_ROOT / "configs" / name) for name in ("train.json", "demo.json")])
    for key, value in overrides.items():
        parser[key] = value
    network = load_weights(
        parser.get_parsed_content("network_def"), str(job / "app_server" / "custom" / "initial_model.pt")
    )
    again = build_job(
        stage=1, sites=["site-a"], rounds=1, configs=["train.json", "demo.json"], out_dir=tmp_path / "again",
        overrides=overrides, seed=7,
    )  # fmt: skip
    first = torch.load(job / "app_server" / "custom" / "initial_model.pt", weights_only=True)["model"]
    second = torch.load(again / "app_server" / "custom" / "initial_model.pt", weights_only=True)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)  # same seed, same starting point
    assert set(first) == set(network.state_dict())

    with pytest.raises(ValueError, match="stage 2 starts from the calibrated stage-1 global model"):
        build_job(stage=2, sites=["site-a"], rounds=1, configs=["train.json", "distill.json"], out_dir=tmp_path)


def test_global_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """FLARE's PyTorch persistor (the jobs' global checkpoint writer): a failed write leaves the previous file."""
    pytest.importorskip("nvflare")
    from nvflare.app_opt.pt import file_model_persistor
    from nvflare.app_opt.pt.model_persistence_format_manager import PTModelPersistenceFormatManager

    persistor = file_model_persistor.PTFileModelPersistor(allow_numpy_conversion=False)
    persistor.persistence_manager = PTModelPersistenceFormatManager({"model": {"w": torch.ones(3)}})
    path = tmp_path / "FL_global_model.pt"
    persistor.save_model_file(str(path))

    def failing_save(obj, stream):  # a crash half-way through writing the next global model
        stream.write(b"partial")
        raise OSError("disk full")

    persistor.persistence_manager = PTModelPersistenceFormatManager({"model": {"w": torch.zeros(3)}})
    monkeypatch.setattr(file_model_persistor.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        persistor.save_model_file(str(path))
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
