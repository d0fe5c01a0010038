"""The throughput benchmark's report: the model card's table of ratios, and the machine it was measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from throughput_settings import MODEL_CARD

#: Model-card markers of the table, per device type (a GPU run keeps the CPU table, and the other way round).
MARKERS = {
    "cpu": ("<!-- throughput:start -->", "<!-- throughput:end -->"),
    "cuda": ("<!-- throughput-gpu:start -->", "<!-- throughput-gpu:end -->"),
}
TABLE_START, TABLE_END = MARKERS["cpu"]


def model_card_table(runs: list[dict]) -> str:
    """Markdown table of the ratios and their targets, one row per network (and AMP)."""
    lines = [
        "| network | bare step (samples/s) | stage 1 / bare step (target >= 0.85) | stage-2 step cost over stage 1 "
        "(target <= 1.40) | bare forward (images/s) | DICOM->JSON / bare forward (target >= 0.70) | "
        "inference peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rates, ratios = run["samples_per_s"], run["ratios"]

        def fmt(entry: dict) -> str:
            return f"{entry['median']:.2f} ({entry['min']:.2f}-{entry['max']:.2f})"

        label = run["network"] + (" + AMP" if run["amp"] else "")
        lines.append(
            f"| {label} ({run['image_size']} px, batch {run['batch_size']}) | {fmt(rates['bare_step'])} | "
            f"{fmt(ratios['stage1_over_bare_step'])} | {fmt(ratios['stage2_step_over_stage1_step'])} | "
            f"{fmt(rates['bare_forward'])} | {fmt(ratios['inference_over_bare_forward'])} | "
            f"{run['inference_command']['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def write_model_card_table(
    table: str, machine: str, path: Path = MODEL_CARD, markers: tuple[str, str] = MARKERS["cpu"]
) -> None:
    """Replace the text between ``markers`` in the model card with ``table``."""
    start, end = markers
    text = path.read_text()
    if start not in text or end not in text:
        raise RuntimeError(f"{path} has no {start} ... {end} markers for the throughput table")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    body = f"{start}\nMeasured on {machine} (median and range over rounds).\n\n{table}\n{end}"
    path.write_text(head + body + tail)


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
