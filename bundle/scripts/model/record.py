"""What network a checkpoint holds, and a one-line refusal when a checkpoint and a config disagree.

Every state dict of :class:`scripts.model.network.FractureHeatmapNet` carries a record of the network it belongs to
(its ``network_def`` arguments that decide the weights' shapes, and the bundle version that wrote it), through
PyTorch's ``get_extra_state``: ``model.pt``, ``teacher.pt``, the calibrated and the epoch checkpoints all have it
without any writer knowing. Loading weights into a network of another definition then fails in one line naming
both definitions and the fix (:class:`NetworkMismatchError`), instead of PyTorch's list of several hundred size
mismatches; MONAI Label, which loads non-strictly, gets the same line instead of a random model.

The record is stored as a ``uint8`` tensor of JSON text, not as a dict: MONAI's ``copy_model_state`` (used by
``ckpt_export``) compares ``.shape`` of every state-dict value. Checkpoints of earlier releases have no record; they
load with a warning, and their network is read from the weights' shapes (:func:`definition_from_weights`), so a
mismatch is named there too.

:func:`check_checkpoint` runs in the ``initialize`` step of inference and evaluation: a mismatch ends the command
with the one line (no traceback) before any data are read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFINITION_KEYS",
    "RECORD_KEY",
    "NetworkMismatchError",
    "bundle_version",
    "check_checkpoint",
    "decode_record",
    "definition_from_weights",
    "encode_record",
    "mismatch_message",
    "read_checkpoint_network",
]

logger = logging.getLogger(__name__)

#: ``network_def`` arguments that decide the shapes of the weights, in the order they are described.
DEFINITION_KEYS = ("block", "layers", "widths", "fpn_channels", "num_classes", "in_channels")
#: State-dict key of a module's extra state (PyTorch's name, under the module's prefix).
RECORD_KEY = "_extra_state"
#: The configs folder of this bundle (``bundle/configs``), for the version and the named networks.
_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class NetworkMismatchError(ValueError):
    """The checkpoint holds another network than the config builds; the message names both and the fix."""


@lru_cache(maxsize=1)
def bundle_version() -> str:
    """``version`` of this bundle's ``configs/metadata.json`` (``"unknown"`` if it cannot be read)."""
    try:
        return str(json.loads((_CONFIGS / "metadata.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def encode_record(definition: Mapping[str, Any], version: str | None = None) -> torch.Tensor:
    """The record as saved: UTF-8 JSON ``{"network_def": {...}, "bundle_version": ...}`` in a ``uint8`` tensor."""
    record = {"network_def": dict(definition), "bundle_version": version or bundle_version()}
    return torch.tensor(list(json.dumps(record, sort_keys=True).encode()), dtype=torch.uint8)


def decode_record(state: Any) -> dict[str, Any]:
    """The record of :func:`encode_record` (a dict passes unchanged)."""
    if isinstance(state, Mapping):
        return dict(state)
    return json.loads(bytes(torch.as_tensor(state, dtype=torch.uint8).tolist()).decode())


def _shape_arguments(definition: Mapping[str, Any]) -> dict[str, Any]:
    return {key: definition[key] for key in DEFINITION_KEYS if key in definition}


def definition_from_weights(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any] | None:
    """The network definition that the weights' names and shapes imply (None if they are not this network's)."""
    try:
        stem = state_dict[f"{prefix}stem.0.weight"]
        head = state_dict[f"{prefix}head.0.weight"], state_dict[f"{prefix}head.2.weight"]
        pattern = re.compile(rf"^{re.escape(prefix)}stages\.(\d)\.(\d+)\.")
        blocks: dict[int, set[int]] = {}
        for key in state_dict:
            match = pattern.match(key)
            if match:
                blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
        widths = [int(state_dict[f"{prefix}stages.{stage}.0.conv1.weight"].shape[0]) for stage in range(4)]
    except (KeyError, AttributeError, IndexError):
        return None
    return {
        "block": "bottleneck" if f"{prefix}stages.0.0.conv3.weight" in state_dict else "basic",
        "layers": [len(blocks.get(stage, ())) for stage in range(4)],
        "widths": widths,
        "fpn_channels": int(head[0].shape[0]),
        "num_classes": int(head[1].shape[0]),
        "in_channels": int(stem.shape[1]),
    }


def _describe(definition: Mapping[str, Any]) -> str:
    parts = [f"{definition.get('block')} blocks", f"layers {list(definition.get('layers', []))}"]
    parts += [f"widths {list(definition.get('widths', []))}", f"FPN {definition.get('fpn_channels')}"]
    parts.append(f"{definition.get('num_classes')} classes")
    if definition.get("in_channels", 1) != 1:
        parts.append(f"{definition['in_channels']} input channels")
    return ", ".join(parts)


def _known_networks() -> dict[str, dict[str, Any]]:
    """The networks of ``inference.json`` and of ``inference.json`` + ``demo.json``, by name (shape arguments)."""
    try:
        default = dict(json.loads((_CONFIGS / "inference.json").read_text())["network_def"])
        demo = json.loads((_CONFIGS / "demo.json").read_text())
    except (OSError, ValueError, KeyError):
        return {}
    overrides = {key.split("#", 1)[1]: value for key, value in demo.items() if key.startswith("network_def#")}
    light = {**default, **overrides}
    known = {"default": default, "light": light}
    return {name: {k: v for k, v in _shape_arguments(d).items() if k != "num_classes"} for name, d in known.items()}


def _name(definition: Mapping[str, Any]) -> str:
    arguments = {k: v for k, v in _shape_arguments(definition).items() if k not in ("num_classes", "in_channels")}
    for name, known in _known_networks().items():
        if arguments == {k: v for k, v in known.items() if k != "in_channels"}:
            return {"default": "the default network (inference.json)", "light": "the light network (demo.json)"}[name]
    return "a custom network"


def mismatch_message(saved: Mapping[str, Any], built: Mapping[str, Any], source: str, version: str | None) -> str:
    """One line naming the checkpoint's network, the config's, and the fix.

    Args:
        saved: the checkpoint's network definition (recorded, or read from its weights).
        built: the definition of the network the config builds.
        source: how to name the checkpoint (its path, or "this checkpoint").
        version: the bundle version that wrote it; None when it has no record (read from the weights).
    """
    saved_name, built_name = _name(saved), _name(built)
    origin = f"saved by bundle {version}" if version else "no network record: read from its weights"
    if saved.get("num_classes") != built.get("num_classes"):
        fix = f"give the {saved.get('num_classes')} classes it was trained with (--classes)"
    elif saved_name == "the light network (demo.json)" and built_name == "the default network (inference.json)":
        fix = "add bundle/configs/demo.json to --config_file"
    elif saved_name == "the default network (inference.json)" and built_name == "the light network (demo.json)":
        fix = "leave bundle/configs/demo.json out of --config_file"
    else:
        overrides = [
            f"--network_def#{key} {json.dumps(saved[key]).replace(' ', '')}"
            for key in ("block", "layers", "widths", "fpn_channels", "in_channels")
            if key in saved and saved[key] != built.get(key)
        ]
        fix = "build the same network: " + " ".join(overrides)
    return (
        f"{source} holds {saved_name} ({_describe(saved)}; {origin}), but the config builds {built_name} "
        f"({_describe(built)}): {fix}"
    )


def read_checkpoint_network(path: str | Path, key: str = "model") -> tuple[dict[str, Any] | None, str | None]:
    """``(definition, bundle version)`` of the network in a checkpoint file; version None for a file without a
    record (definition read from the weights, or None if they are not this bundle's network)."""
    try:  # memory-mapped: only the record and the small tensors needed here are read
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file in PyTorch's legacy (non-zip) format cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
        state = state[key]
    if not isinstance(state, Mapping):
        return None, None
    if RECORD_KEY in state:
        record = decode_record(state[RECORD_KEY])
        return _shape_arguments(record.get("network_def", {})), str(record.get("bundle_version", "unknown"))
    return definition_from_weights(state), None


def check_checkpoint(path: str | Path, network: torch.nn.Module) -> None:
    """End the command with one line if the checkpoint at ``path`` holds another network than ``network``.

    For the ``initialize`` step of inference and evaluation (``SystemExit``: the line, no traceback). A missing file,
    a network that is not this bundle's, or weights that are not, are left to the checkpoint loader.
    """
    definition = getattr(network, "network_definition", None)
    if definition is None or not Path(path).is_file():
        return
    built = _shape_arguments(definition())
    try:
        saved, version = read_checkpoint_network(path)
    except Exception:  # an unreadable file: the checkpoint loader reports it with its own words
        return
    if saved is not None and saved != built:
        raise SystemExit(f"error: {mismatch_message(saved, built, str(path), version)}")
