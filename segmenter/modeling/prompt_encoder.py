"""SAM's prompt encoder: points (boxes arrive as two corner points) and low-res masks."""

from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingRandom

# Point labels understood by the prompt encoder.
PADDING_LABEL, NEGATIVE_LABEL, POSITIVE_LABEL, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Embeds point prompts as sparse tokens and a mask prompt as a dense map."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Added to a point's encoding by label: 0 negative, 1 positive, 2/3 box corners.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: 1xCxHxW."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BxNx2 (x, y) coordinates in the model's input frame (pixels of the 1024 square) and BxN
        labels -> Bx(N+1)xC tokens. A padding point (label -1) is always appended, as SAM 2 does
        for prompts given without a separate box."""
        coords = coords + 0.5  # centre of the pixel
        b = coords.shape[0]
        coords = torch.cat([coords, torch.zeros((b, 1, 2), device=coords.device)], dim=1)
        labels = torch.cat([labels, torch.full((b, 1), PADDING_LABEL, device=labels.device, dtype=labels.dtype)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        label_table = torch.cat([e.weight for e in self.point_embeddings])  # 4xC
        label_embedding = label_table[labels.clamp(min=0).long()]
        embedding = embedding + label_embedding
        is_padding = (labels == PADDING_LABEL).unsqueeze(-1)
        return torch.where(is_padding, self.not_a_point_embed.weight.expand_as(embedding), embedding)

    def forward(
        self, points: Optional[Tuple[torch.Tensor, torch.Tensor]], masks: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """points: (BxNx2 coordinates, BxN labels) or None; masks: Bx1x256x256 logits or None.

        Returns sparse tokens Bx(N+1)xC (Bx0xC without points) and dense embeddings BxCx64x64."""
        if points is not None:
            batch = points[0].shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        device = self.no_mask_embed.weight.device
        if points is not None:
            sparse = self.embed_points(*points)
        else:
            sparse = torch.empty((batch, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense
