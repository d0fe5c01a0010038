"""Dense fracture-probability network: a MONAI ResNet encoder with a feature pyramid, one heatmap per class.

The paper (Wang et al., IPMI 2021) uses ResNet-50 + FPN and reads the finest pyramid level (stride 4) as a
per-pixel fracture probability map. MONAI has both pieces (``monai.networks.nets.ResNet`` and
``monai.networks.blocks.FeaturePyramidNetwork``) but no module that joins them without torchvision, so this
file only wires them together and adds a small prediction head.

Every state dict of the network records its definition and the bundle version (:mod:`scripts.model.record`), and
loading weights of another definition fails in one line that names both and the fix.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from monai.networks.nets.resnet import ResNet
from torch import nn

from scripts.model.record import (
    RECORD_KEY,
    NetworkMismatchError,
    decode_record,
    definition_from_weights,
    encode_record,
    mismatch_message,
)

__all__ = ["FractureHeatmapNet", "OUTPUT_STRIDE"]

logger = logging.getLogger(__name__)

#: Spatial down-sampling between the network input and its heatmap (conv1 stride 2, max-pool stride 2).
OUTPUT_STRIDE = 4


class FractureHeatmapNet(nn.Module):
    """ResNet + FPN that maps a radiograph to fracture logits at stride 4.

    Args:
        num_classes: number of heatmap channels, one per fracture class (rib, clavicle).
        block: ResNet block type, ``"basic"`` (ResNet-10/18/34) or ``"bottleneck"`` (ResNet-50 and deeper).
        layers: number of blocks in each of the four ResNet stages, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        widths: channels of the four stages before block expansion, e.g. ``(64, 128, 256, 512)``.
        fpn_channels: width of the feature pyramid and of the prediction head.
        in_channels: image channels (1 for a radiograph).
        prior_probability: initial fracture probability everywhere; the last bias is set to its logit so that
            training starts from the low fracture prevalence instead of 0.5 (as in RetinaNet).

    Shapes:
        input ``(B, in_channels, H, W)`` with H and W multiples of 32;
        output ``(B, num_classes, H / 4, W / 4)`` logits (apply a sigmoid for probabilities).

    State dict: besides the weights, ``_extra_state`` holds the record of the network (the arguments above that
    decide the weights' shapes, and the bundle version; :mod:`scripts.model.record`). ``load_state_dict`` refuses a
    record or weights of another definition with :class:`scripts.model.record.NetworkMismatchError` (one line), and
    loads a state dict without a record (earlier releases) with a warning.
    """

    def __init__(
        self,
        num_classes: int = 2,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        fpn_channels: int = 256,
        in_channels: int = 1,
        prior_probability: float = 0.01,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"layers and widths need 4 entries (one per ResNet stage), got {layers} and {widths}.")
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}.")
        encoder = ResNet(
            block=block,
            layers=list(layers),
            block_inplanes=list(widths),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
        )
        # Only the convolutional trunk is kept: the classifier's pooling layers are not needed.
        self.stem = nn.Sequential(encoder.conv1, encoder.bn1, encoder.act, encoder.maxpool)
        self.stages = nn.ModuleList([encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4])
        expansion = 4 if block == "bottleneck" else 1
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=2, in_channels_list=[w * expansion for w in widths], out_channels=fpn_channels
        )
        # The head reads only the finest pyramid level (stride 4). The 3x3 output convolutions of the coarser
        # levels would be dead weights: wasted compute, and parameters without gradient, which
        # DistributedDataParallel refuses. The top-down path (lateral 1x1 convolutions) is unaffected.
        for level in range(1, len(self.fpn.layer_blocks)):
            self.fpn.layer_blocks[level] = nn.Identity()
        self.head = nn.Sequential(
            nn.Conv2d(fpn_channels, fpn_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(fpn_channels, num_classes, kernel_size=1),
        )
        nn.init.constant_(self.head[-1].bias, math.log(prior_probability / (1.0 - prior_probability)))
        self.num_classes = num_classes
        # JSON text, not a dict attribute: TorchScript scripts module attributes and has no type for a mixed dict
        self._definition_json = json.dumps(
            {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", "block": block,
             "layers": [int(v) for v in layers], "widths": [int(v) for v in widths], "fpn_channels": int(fpn_channels),
             "num_classes": int(num_classes), "in_channels": int(in_channels)}
        )  # fmt: skip

    @torch.jit.unused
    def network_definition(self) -> dict[str, Any]:
        """The ``network_def`` of this network: ``_target_`` and the arguments that decide the weights' shapes."""
        return json.loads(self._definition_json)

    @torch.jit.unused
    def get_extra_state(self) -> torch.Tensor:
        """The network record saved in every state dict (:func:`scripts.model.record.encode_record`)."""
        return encode_record(self.network_definition())

    @torch.jit.unused
    def set_extra_state(self, state: Any) -> None:
        """Check the record of the weights being loaded against this network (called by ``load_state_dict``)."""
        record = decode_record(state)
        saved, built = record.get("network_def", {}), self.network_definition()
        keys = ("block", "layers", "widths", "fpn_channels", "num_classes", "in_channels")
        if any(saved.get(key) != built[key] for key in keys):
            source = "this checkpoint"
            raise NetworkMismatchError(mismatch_message(saved, built, source, str(record.get("bundle_version"))))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A state dict without the record (earlier releases): read its network from the weights' shapes, so that a
        # mismatch is one line here instead of PyTorch's list of size mismatches; then load it with a warning.
        has_record = prefix + RECORD_KEY in state_dict
        if not has_record:
            saved = definition_from_weights(state_dict, prefix)
            built = self.network_definition()
            if saved is not None and any(saved[key] != built[key] for key in saved):
                raise NetworkMismatchError(mismatch_message(saved, built, "this checkpoint", None))
            logger.warning(
                "loading weights without a network record (saved by a bundle release before the record existed); "
                "their shapes fit the network built from the config"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if not has_record and prefix + RECORD_KEY in missing_keys:
            missing_keys.remove(prefix + RECORD_KEY)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return fracture logits ``(B, num_classes, H / 4, W / 4)`` for ``image`` ``(B, C, H, W)``."""
        features: dict[str, torch.Tensor] = {}  # insertion-ordered, finest level first, as the FPN expects
        x = self.stem(image)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[f"c{index + 2}"] = x
        pyramid = self.fpn(features)
        return self.head(pyramid["c2"])
