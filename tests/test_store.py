"""The persistent preprocessed store: keys and invalidation, atomic and resumable builds, bad files, concurrency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from repo_paths import BUNDLE_ROOT, REPO_ROOT

import numpy as np
import pytest
import torch
from helpers import write_png

from scripts.data.loading import LoadCXRImaged
from scripts.data.store import PreprocessedStore, StoreBuildError, StoreDataset, file_key, preprocessed_dataset
from scripts.data.transforms import LetterboxResized, PercentileScaleIntensityd

#: Import path of the child processes below: the tools (repo_paths), this folder (helpers, this module), the bundle.
CHILD_PATH = [str(REPO_ROOT / "scripts"), str(Path(__file__).parent), str(BUNDLE_ROOT)]


def image_chain(size: int = 32, lower: float = 0.5) -> list:
    """The bundle's stored chain (``image_transforms`` of ``train.json``) at a small size."""
    return [
        LoadCXRImaged(keys="image"),
        PercentileScaleIntensityd(keys="image", lower=lower, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
        LetterboxResized(keys="image", spatial_size=size),
    ]


def write_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` 16-bit PNGs of 40 x 48 pixels with distinct random content."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [str(write_png(folder / f"img{i:03d}.png", rng.integers(0, 4096, (48, 40)).astype(np.uint16)))
            for i in range(count)]  # fmt: skip


def test_entries_equal_the_chain_and_settings_changes_rebuild_only_what_they_must(tmp_path: Path) -> None:
    sources = write_images(tmp_path / "images", 4)
    store = PreprocessedStore(tmp_path / "cache", image_chain(32))
    report = store.build(sources, progress=False)
    assert (report.total, report.present, report.built, report.refused) == (4, 0, 4, {})
    direct = image_chain(32)
    expected = {"image": sources[1]}
    for transform in direct:
        expected = transform(expected)
    entry = store.read(sources[1], rebuild=False)
    assert entry["image"].dtype == torch.float16 and entry["image"].shape == (1, 32, 32)
    assert torch.equal(entry["image"], expected["image"].as_tensor().to(torch.float16))
    assert torch.equal(entry["original_size"], expected["original_size"])
    assert torch.equal(entry["scale"], expected["scale"])
    assert json.loads((store.folder / "settings.json").read_text())["transforms"][2]["spatial_size"] == 32

    # the same settings in a new process-like object: every entry found, nothing rebuilt
    again = PreprocessedStore(tmp_path / "cache", image_chain(32)).build(sources, progress=False)
    assert (again.present, again.built) == (4, 0)
    # a settings change (size, percentiles) is a new folder: all of it is rebuilt, the old one is left alone
    for changed in (image_chain(24), image_chain(32, lower=1.0)):
        other = PreprocessedStore(tmp_path / "cache", changed)
        assert other.folder != store.folder
        assert other.build(sources, progress=False).built == 4
    assert store.build(sources, progress=False).built == 0
    # a file that changes (new mtime) gets a new key: only it is rebuilt
    os.utime(sources[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert store.build(sources, progress=False).built == 1
    assert file_key(sources[2]) != file_key(sources[3])


def test_a_corrupt_file_is_reported_not_stored_and_the_rest_is_built(tmp_path: Path) -> None:
    sources = write_images(tmp_path / "images", 3)
    broken = tmp_path / "images" / "truncated.png"
    broken.write_bytes(Path(sources[0]).read_bytes()[:60])
    blank = write_png(tmp_path / "images" / "blank.png", np.full((48, 40), 7, np.uint16))
    everything = [sources[0], str(broken), sources[1], str(blank), sources[2]]
    store = PreprocessedStore(tmp_path / "cache", image_chain(32))
    report = store.build(everything, num_workers=2, progress=False)
    assert report.built == 3 and set(report.refused) == {str(broken), str(blank)}
    assert str(broken) in report.refused[str(broken)]  # the reason names the file
    assert "constant" in report.refused[str(blank)] or "blank" in report.refused[str(blank)]
    assert not store.has(broken) and not store.has(blank)
    assert set(json.loads((store.folder / "refused.json").read_text())) == {str(broken), str(blank)}
    # a dataset over the same items refuses to start, listing every bad file; the good entries stay stored
    items = [{"image": path} for path in everything]
    with pytest.raises(StoreBuildError, match="2 of 5 images") as raised:
        preprocessed_dataset(items, image_chain(32), [], None, tmp_path / "cache", progress=False)
    assert str(broken) in str(raised.value) and str(blank) in str(raised.value)
    assert store.build(sources, progress=False).present == 3


def test_a_killed_build_leaves_only_complete_entries_and_the_rerun_continues(tmp_path: Path) -> None:
    sources = write_images(tmp_path / "images", 12)
    cache = tmp_path / "cache"
    # A build slowed down to ~0.15 s per image in a child process, killed (SIGKILL) after a few entries.
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = {CHILD_PATH!r}
        from monai.transforms import Lambda
        from test_store import image_chain
        from scripts.data.store import PreprocessedStore
        slow = Lambda(lambda d: (time.sleep(0.15), d)[1])
        PreprocessedStore({str(cache)!r}, image_chain(32) + [slow]).build({sources!r}, progress=False)
    """)  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    from monai.transforms import Lambda

    store = PreprocessedStore(cache, image_chain(32) + [Lambda(lambda d: d)])
    deadline = time.monotonic() + 120
    while sum(store.has(s) for s in sources) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = [s for s in sources if store.has(s)]
    assert 3 <= len(done) < len(sources), "the build was not interrupted part-way"
    for source in done:  # every entry that exists is whole
        assert store.read(source, rebuild=False)["image"].shape == (1, 32, 32)
    # a temporary file of the killed build (as a kill during a write leaves one) is removed by the next build
    (store.folder / "00").mkdir(exist_ok=True)
    (store.folder / "00" / f".tmp-{child.pid}-abc").write_bytes(b"half an entry")
    report = store.build(sources, progress=False)
    assert (report.present, report.built, report.refused) == (len(done), len(sources) - len(done), {})
    assert not list(store.folder.glob("*/.tmp-*"))


def test_two_processes_build_and_read_one_store_at_once(tmp_path: Path) -> None:
    sources = write_images(tmp_path / "images", 16)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {CHILD_PATH!r}
        import time
        from pathlib import Path
        from monai.transforms import Lambda
        from test_store import image_chain
        from scripts.data.store import PreprocessedStore
        rank = int(sys.argv[1])
        slow = Lambda(lambda d: (time.sleep(0.05), d)[1])
        store = PreprocessedStore({str(cache)!r}, image_chain(32) + [slow])
        Path({str(tmp_path)!r}, f"ready{{rank}}").touch()  # start building together
        while not all(Path({str(tmp_path)!r}, f"ready{{r}}").exists() for r in (0, 1)):
            time.sleep(0.01)
        report = store.build({sources!r}, progress=False, rank=rank, world_size=2)
        sums = [float(store.read(s, rebuild=False)["image"].float().sum()) for s in {sources!r}]
        print(report.built, report.refused, sums)
    """)  # fmt: skip
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(rank)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    outputs = [child.communicate(timeout=300)[0].strip().splitlines()[-1] for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    built = [int(line.split(" ", 1)[0]) for line in outputs]
    assert all(b >= 1 for b in built) and sum(built) >= len(sources)  # both built; the same entry twice is allowed
    assert len({line.split(" ", 2)[2] for line in outputs}) == 1  # both read identical images
    from monai.transforms import Lambda

    store = PreprocessedStore(cache, image_chain(32) + [Lambda(lambda d: d)])
    assert len(list(store.folder.glob("*/*.npy"))) == len(sources) and not list(store.folder.glob("*/.tmp-*"))


def test_store_dataset_reads_without_holding_images_and_rebuilds_a_damaged_entry(tmp_path: Path) -> None:
    sources = write_images(tmp_path / "images", 2)
    store = PreprocessedStore(tmp_path / "cache", image_chain(32))
    store.build(sources, progress=False)
    dataset = StoreDataset([{"image": s, "subset": "N"} for s in sources], store, path_key="image_path")
    item = dataset[0]
    assert item["image_path"] == sources[0] and item["subset"] == "N" and item["image"].shape == (1, 32, 32)
    before = item["image"].clone()
    path = store.entry_path(sources[0])
    path.write_bytes(path.read_bytes()[:100])  # a damaged entry (e.g. a disk fault) is rebuilt on read
    assert torch.equal(dataset[0]["image"], before)
    assert store.read(sources[0], rebuild=False)["image"].shape == (1, 32, 32)


def test_store_items_equal_the_in_ram_cache_items_of_train_json(phantoms: Path, tmp_path: Path) -> None:
    """Training and validation items read through the store equal those of the in-RAM CacheDataset, key by key."""
    from monai.bundle import ConfigParser

    def items(section: str, cache_dir: str) -> list[dict]:
        parser = ConfigParser()
        parser.read_config(str(BUNDLE_ROOT / "configs" / "train.json"))
        parser.update({"dataset_dir": str(phantoms), "cache_dir": cache_dir, "image_size": 64, "num_workers": 0})
        dataset = parser.get_parsed_content(f"{section}#dataset")
        return [dataset[i] for i in range(len(dataset))]

    for section, dtype in (("train", torch.float16), ("validate", torch.float32)):
        in_ram, stored = items(section, ""), items(section, str(tmp_path / "cache"))
        assert any(float(item.get("label", torch.zeros(1)).sum()) > 0 for item in in_ram) or section == "validate"
        for a, b in zip(in_ram, stored, strict=True):
            assert b["image"].dtype == dtype and set(a) <= set(b)  # the store adds image_path to training items
            for key in a:
                if isinstance(a[key], torch.Tensor | np.ndarray):
                    assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), (section, key)
                else:
                    assert a[key] == b[key], (section, key)


def test_a_box_outside_its_image_is_refused_before_the_first_step(tmp_path: Path) -> None:
    from scripts.data.transforms import PackBoxesd, ScaleBoxesd

    sources = write_images(tmp_path / "images", 2)  # 40 x 48 pixels (W x H)
    items = [
        {"image": sources[0], "boxes": np.array([[1.0, 2.0, 10.0, 12.0]], np.float32), "box_classes": [0]},
        {"image": sources[1], "boxes": np.array([[30.0, 40.0, 45.0, 47.0]], np.float32), "box_classes": [0]},
    ]
    chain = [PackBoxesd(keys="boxes"), ScaleBoxesd(keys="boxes")]
    with pytest.raises(ValueError, match=rf"{sources[1]}: box \[30.0, 40.0, 45.0, 47.0\] lies outside the image"):
        preprocessed_dataset(items, image_chain(32), chain, None, tmp_path / "cache", progress=False)
    dataset = preprocessed_dataset(items[:1], image_chain(32), chain, None, tmp_path / "cache", progress=False)
    meta = dataset.store.read_meta(sources[0])
    assert meta["original_size"] == [40.0, 48.0] and meta["scale"][1] == pytest.approx(32 / 48)
    scale = torch.tensor(meta["scale"] * 2)  # (sx, sy, sx, sy); sx = round(40 * 32 / 48) / 40
    assert torch.equal(dataset[0]["boxes"], torch.tensor([[1.0, 2.0, 10.0, 12.0]]) * scale)


@pytest.mark.slow
def test_training_from_the_store_gives_the_weights_of_the_in_ram_cache(
    stage1: Path, phantoms: Path, tmp_path: Path
) -> None:
    """The session's stage-1 run read the store (the default ``cache_dir``); the same run with the in-RAM cache
    (``--cache_dir ""``) trains bit-identical weights and gets the same validation metrics: the store holds exactly
    what the cache held, and building it draws no random number."""
    from bundle_runs import read_metrics_csv, run_bundle

    run_bundle(
        "training", ["train.json"], "--dataset_dir", str(phantoms), "--ckpt_dir", str(tmp_path),
        "--output_dir", str(tmp_path / "runs"), "--train#trainer#max_epochs", "1", "--train#samples_per_epoch", "8",
        "--cache_dir", "",
    )  # fmt: skip
    assert (BUNDLE_ROOT / "cache").is_dir()  # where the session's stage-1 run built its store
    stored = torch.load(stage1 / "checkpoint_final.pt", weights_only=True)["model"]
    in_ram = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)["model"]
    assert stored.keys() == in_ram.keys() and all(torch.equal(stored[k], in_ram[k]) for k in stored)
    stored_metrics = read_metrics_csv(stage1 / "runs" / "validation" / "metrics.csv")
    in_ram_metrics = read_metrics_csv(tmp_path / "runs" / "validation" / "metrics.csv")
    assert stored_metrics.keys() == in_ram_metrics.keys()
    assert all(np.isclose(stored_metrics[k], in_ram_metrics[k], rtol=0, equal_nan=True) for k in stored_metrics)


def test_a_file_that_turns_unreadable_after_the_build_never_ends_training(tmp_path: Path, caplog) -> None:
    """Its entry is rebuilt when read (new file key); training takes the next image, validation names the file."""
    import logging

    from scripts.data.loading import CXRInputError

    sources = write_images(tmp_path / "images", 3)
    items = [{"image": source} for source in sources]
    training = preprocessed_dataset(
        items, image_chain(32), [], None, tmp_path / "cache", progress=False, desc="training data",
        replace_unreadable=True,
    )  # fmt: skip
    validation = preprocessed_dataset(items, image_chain(32), [], None, tmp_path / "cache", progress=False)
    Path(sources[1]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # replaced after the build: a new file key
    with caplog.at_level(logging.WARNING):
        item = training[1]
    assert item["image"].shape == (1, 32, 32) and torch.equal(item["image"], training[2]["image"])
    assert f"training data: skipped {sources[1]}, which cannot be read now" in caplog.text
    with pytest.raises(CXRInputError, match=f"^{sources[1]}: "):
        validation[1]
