"""Start the network's ResNet backbone from pretrained weights: a ResNet state dict in torchvision's layout.

Config keys (``configs/train.json``; stage 1 only, since stage 2 starts from stage 1): ``pretrained_backbone``, a
path to the file (empty: train from scratch, the default), and ``pretrained_prefix``, a key prefix to strip (e.g.
``"model."`` for the ``state_dict()`` of a torchxrayvision ``ResNet``, which wraps a torchvision ResNet as ``model``).
The bundle never downloads anything: users fetch the file themselves, for example

* torchvision's ImageNet ResNet-50 (``resnet50-11ad3fa6.pth``, IMAGENET1K_V2, or ``resnet50-0676ba61.pth``, V1) or
  ResNet-18 (``resnet18-f37072fd.pth``, for a ResNet-18 ``network_def``), from ``download.pytorch.org/models``;
* torchxrayvision's chest-radiograph ResNet-50 (``resnet50-res512-all``:
  ``pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt``): a torchvision ResNet-50 state dict with a one-channel
  ``conv1`` and an 18-class ``fc``, no prefix.

Mapping: ``conv1`` -> ``stem.0``, ``bn1`` -> ``stem.1``, ``layer1..4`` -> ``stages.0..3``; inside the stages MONAI's
ResNet blocks use torchvision's names (``conv1``, ``bn1``, ..., ``downsample.0``, ``downsample.1``). An RGB
``conv1`` (``(64, 3, 7, 7)``) is summed over colour, which is exact for a grey image fed as three equal channels;
a one-channel ``conv1`` loads as it is. ``fc.*`` is not used. MONAI's shortcut convolution has a bias that
torchvision's lacks: it is set to 0, which is what torchvision computes. The files expect other input scales
(ImageNet mean/std per colour, torchxrayvision [-1024, 1024]) than the bundle's [0, 1]; the batch norm after
``conv1`` normalises that away in training (its output does not change when its input is scaled and shifted per
channel), and its running statistics follow within the first iterations.

Anything else refuses in one line: a file that is not a tensor-only state dict (read with
``torch.load(weights_only=True)``), or an architecture that does not fit (e.g. ResNet-18 weights for the default
ResNet-50 ``network_def``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_pretrained_backbone", "parameter_groups", "read_resnet_state_dict", "resnet_description"]

logger = logging.getLogger(__name__)

#: torchvision ResNet key prefix -> FractureHeatmapNet key prefix.
KEY_MAP = (
    ("conv1.", "stem.0."),
    ("bn1.", "stem.1."),
    ("layer1.", "stages.0."),
    ("layer2.", "stages.1."),
    ("layer3.", "stages.2."),
    ("layer4.", "stages.3."),
)
BACKBONE_PREFIXES = ("stem.", "stages.")
#: Well-known ResNets by block type and blocks per stage (widths 64, 128, 256, 512).
KNOWN = {
    ("basic", (2, 2, 2, 2)): "ResNet-18",
    ("basic", (3, 4, 6, 3)): "ResNet-34",
    ("bottleneck", (3, 4, 6, 3)): "ResNet-50",
    ("bottleneck", (3, 4, 23, 3)): "ResNet-101",
    ("bottleneck", (3, 8, 36, 3)): "ResNet-152",
}


def _unwrap(network: nn.Module) -> nn.Module:
    if isinstance(network, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return network.module
    return network


def read_resnet_state_dict(path: str | Path, prefix: str = "") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read a ResNet state dict in torchvision's layout with ``torch.load(weights_only=True)``.

    Args:
        path: the file; a checkpoint that holds the state dict under ``"state_dict"`` or ``"model"`` is unwrapped.
        prefix: stripped from every key that has it; keys without it are returned as not used.

    Returns:
        ``(state, not_used)``: tensors keyed by torchvision names, and the keys left out (other prefix, not tensors).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a state dict of tensors, or no ``conv1.weight`` (the message suggests the prefix to use).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained backbone file not found (the bundle downloads nothing).")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors of many types: name the file and the likely cause
        raise ValueError(
            f"{path}: not a state dict that torch.load(weights_only=True) reads ({type(error).__name__}); save the "
            "model's state_dict(), not the pickled model."
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
    if not isinstance(content, Mapping):
        raise ValueError(f"{path}: holds a {type(content).__name__}, not a state dict (name -> tensor).")
    state, not_used = {}, []
    for key, value in content.items():
        if isinstance(value, torch.Tensor) and str(key).startswith(prefix):
            state[str(key)[len(prefix) :]] = value
        else:
            not_used.append(str(key))
    if "conv1.weight" not in state:
        found = sorted((str(k) for k in content if str(k).endswith("conv1.weight") and "layer" not in str(k)), key=len)
        hint = (
            f"; its stem is at {found[0]!r}: set pretrained_prefix to {found[0][: -len('conv1.weight')]!r}"
            if found
            else ""
        )
        raise ValueError(
            f"{path}: no 'conv1.weight' after the prefix {prefix!r}: not a torchvision-layout ResNet{hint}."
        )
    return state, not_used


def resnet_description(state: Mapping[str, torch.Tensor]) -> str:
    """Block type, blocks per stage and stage widths of a torchvision-layout ResNet state dict, in words."""
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    layers, widths = [], []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        layers.append(max(blocks) + 1 if blocks else 0)
        first = state.get(f"layer{stage}.0.conv1.weight")
        widths.append(int(first.shape[0]) if first is not None else 0)
    name = KNOWN.get((block, tuple(layers))) if widths == [64, 128, 256, 512] else None
    return f"{block} blocks {layers}, widths {widths}" + (f" ({name})" if name else "")


def _to_network(key: str) -> str | None:
    for source, target in KEY_MAP:
        if key.startswith(source):
            return target + key[len(source) :]
    return None


def _to_torchvision(key: str) -> str | None:
    for source, target in KEY_MAP:
        if key.startswith(target):
            return source + key[len(target) :]
    return None


def load_pretrained_backbone(network: nn.Module, path: str | Path, prefix: str = "") -> nn.Module:
    """Copy a torchvision-layout ResNet state dict into ``network``'s backbone (``stem``, ``stages``); returns it.

    Args:
        network: a :class:`scripts.model.network.FractureHeatmapNet`, bare or wrapped in ``DistributedDataParallel``.
        path: the state dict file.
        prefix: key prefix to strip (see :func:`read_resnet_state_dict`).

    Logs one line with the tensors loaded, the network's backbone tensors not in the file (only ``num_batches_tracked``
    and the shortcut-convolution biases may be, set to 0) and the file's tensors not used (``fc.*``, other prefixes).

    Raises:
        ValueError: in one line, when the file's architecture does not fit the backbone (a tensor missing, extra or
            of another shape, other than ``conv1``'s colour channels).
    """
    bare = _unwrap(network)
    state, not_used = read_resnet_state_dict(path, prefix)
    current = bare.state_dict()
    backbone = [key for key in current if key.startswith(BACKBONE_PREFIXES)]
    mapped: dict[str, torch.Tensor] = {}
    summed = False
    for key, value in state.items():
        name = _to_network(key)
        if name is None:
            not_used.append(key)
            continue
        if name == "stem.0.weight" and value.shape[1] == 3 and current[name].shape[1] == 1:
            value, summed = value.sum(dim=1, keepdim=True), True
        mapped[name] = value
    wrong = sorted(name for name in mapped if name not in current or mapped[name].shape != current[name].shape)
    missing = [key for key in backbone if key not in mapped]
    zeroed = [key for key in missing if key.endswith("num_batches_tracked") or key.endswith("downsample.0.bias")]
    absent = sorted(set(missing) - set(zeroed))
    if wrong or absent:
        mine = resnet_description(
            {_to_torchvision(k): v for k, v in current.items() if k.startswith(BACKBONE_PREFIXES)}
        )
        example = (wrong or absent)[0]
        raise ValueError(
            f"{path}: a ResNet of {resnet_description(state)} does not fit this network's backbone ({mine}): "
            f"{len(wrong)} tensors differ in name or shape and {len(absent)} are missing (e.g. {example}); set "
            "network_def#block/layers/widths to the file's architecture or use another file."
        )
    new_state = dict(current)
    new_state.update(mapped)
    for key in zeroed:
        new_state[key] = torch.zeros_like(current[key])
    bare.load_state_dict(new_state)  # strict: every key of the network is given
    logger.info(
        "pretrained backbone from %s (%s): %d tensors loaded%s; %d backbone tensors not in the file, set to 0 (%s); "
        "%d file tensors not used (%s)",
        path,
        resnet_description(state),
        len(mapped),
        ", conv1 summed over its 3 colour channels" if summed else "",
        len(zeroed),
        _names(zeroed),
        len(not_used),
        _names(not_used),
    )
    return network


def _names(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f", ... ({len(keys) - shown} more)" if len(keys) > shown else "") or "none"


def parameter_groups(
    network: nn.Module, learning_rate: float, backbone_lr_factor: float = 1.0
) -> Iterable[nn.Parameter] | list[dict]:
    """Optimizer parameters with the backbone (``stem``, ``stages``) at ``learning_rate * backbone_lr_factor``.

    With the default factor 1 this is ``network.parameters()`` (one parameter group, as before the option existed,
    so older optimizer checkpoints still resume). A factor below 1 trains pretrained layers more gently than the new
    feature pyramid and head, as detection recipes do.
    """
    if backbone_lr_factor == 1.0:
        return network.parameters()
    if backbone_lr_factor < 0:
        raise ValueError(f"backbone_lr_factor must be >= 0, got {backbone_lr_factor}.")
    backbone, rest = [], []
    for name, parameter in _unwrap(network).named_parameters():
        (backbone if name.startswith(BACKBONE_PREFIXES) else rest).append(parameter)
    return [{"params": backbone, "lr": learning_rate * backbone_lr_factor}, {"params": rest, "lr": learning_rate}]
