"""Image encoder: the Hiera trunk followed by a feature-pyramid neck."""

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine


class FpnNeck(nn.Module):
    """Projects every trunk level to ``d_model`` channels with a 1x1 conv and adds a nearest x2
    top-down path into ``top_down_levels`` only. ``convs[0]`` projects the lowest-resolution level."""

    def __init__(
        self, d_model: int, backbone_channel_list: Sequence[int], top_down_levels: Sequence[int] = (2, 3)
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(level)
        self.top_down_levels = list(top_down_levels)
        self.position_encoding = PositionEmbeddingSine(d_model)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        """xs: trunk levels, highest resolution first. Returns the same levels with d_model
        channels, in the same order."""
        n = len(xs) - 1
        out: List[torch.Tensor] = [None] * len(xs)
        prev = None
        for i in range(n, -1, -1):  # lowest resolution first
            lateral = self.convs[n - i](xs[i])
            if prev is not None and i in self.top_down_levels:
                top_down = F.interpolate(prev.to(dtype=torch.float32), scale_factor=2.0, mode="nearest")
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the ``scalp`` lowest-resolution levels.

    Input Bx3xSxS normalised RGB. Output dict: ``backbone_fpn`` (levels at stride 4, 8, 16 for
    scalp=1, each Bx256xhxw), ``vision_features`` (the stride-16 level) and ``vision_pos_enc``
    (the neck's sine encoding of each level)."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(f"trunk channels {trunk.channel_list} != neck channels {neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, images: torch.Tensor) -> Dict[str, object]:
        features = self.neck(self.trunk(images))
        if self.scalp > 0:
            features = features[: -self.scalp]
        positions = [self.neck.position_encoding(f).to(f.dtype) for f in features]
        return {"vision_features": features[-1], "vision_pos_enc": positions, "backbone_fpn": features}
