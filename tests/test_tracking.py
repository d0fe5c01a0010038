"""Experiment tracking: ``--tracking mlflow`` logs losses, validation metrics and the executed config to SQLite."""

from __future__ import annotations

import pytest
from bundle_runs import read_metrics_csv, run_bundle

pytestmark = pytest.mark.slow  # MLflow-tracked bundle run: full tier only

mlflow = pytest.importorskip("mlflow", reason="optional extra: pip install -r requirements-tracking.txt")


def test_mlflow_tracking_records_loss_metrics_and_config(phantoms, tmp_path):
    runs_dir = tmp_path / "runs"
    run_bundle(
        "training", ["train.json"], "--dataset_dir", str(phantoms), "--ckpt_dir", str(tmp_path / "models"),
        "--output_dir", str(runs_dir), "--train#trainer#max_epochs", "2", "--train#samples_per_epoch", "8",
        "--tracking", "mlflow", "--experiment_name", "cxr_fracture_test",
        # MONAI builds the default path of the executed-config artifact by appending to the *expression* of
        # output_dir; with a plain --output_dir path that yields no file, so give the path explicitly.
        "--save_execute_config", str(runs_dir / "executed_config.json"),
    )  # fmt: skip
    database = runs_dir / "mlruns.db"
    assert database.is_file()  # MONAI's default MLflow settings use a SQLite tracking URI under output_dir
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{database}")
    (run,) = client.search_runs([client.get_experiment_by_name("cxr_fracture_test").experiment_id])
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) == 2 * 2  # 8 samples / batch 4 = 2 iterations per epoch, 2 epochs
    aurocs = client.get_metric_history(run.info.run_id, "val_auroc_rib")
    assert [m.step for m in aurocs] == [1, 2]
    last_validation = read_metrics_csv(runs_dir / "validation" / "metrics.csv")
    assert aurocs[-1].value == pytest.approx(last_validation["val_auroc_rib"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert artifacts == ["executed_config.json"]
