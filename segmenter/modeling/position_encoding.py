"""Position encodings: 2-D sine (neck and memory encoder), random Fourier features (prompts)
and axial rotary encodings (memory attention)."""

import math
from typing import Dict, Tuple

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """DETR-style sine/cosine encoding of the (y, x) grid of a BxCxHxW map, normalised to
    (0, 2*pi]. Returns Bx``num_pos_feats``xHxW; half the channels encode y, half x."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self._cache: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, device)
        if key not in self._cache:
            eps, scale = 1e-6, 2 * math.pi
            y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
            x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
            y = (y / (y[-1] + eps) * scale)[:, None].expand(h, w)
            x = (x / (x[-1] + eps) * scale)[None, :].expand(h, w)
            dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
            dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)

            def encode(coord: torch.Tensor) -> torch.Tensor:
                angles = coord[..., None] / dim_t
                return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(2)

            self._cache[key] = torch.cat((encode(y), encode(x)), dim=-1).permute(2, 0, 1)
        return self._cache[key]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self._grid(x.shape[-2], x.shape[-1], x.device)
        return grid[None].expand(x.shape[0], -1, -1, -1)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of coordinates normalised to [0, 1] (SAM's prompt encoding)."""

    def __init__(self, num_pos_feats: int = 64) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """...x2 coordinates in [0, 1] -> ...x(2*num_pos_feats) features."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encoding of the centre of every cell of an HxW grid: CxHxW."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones((h, w), device=device, dtype=torch.float32)
        y = (ones.cumsum(dim=0) - 0.5) / h
        x = (ones.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """BxNx2 pixel coordinates (x, y) in an image of ``image_size`` (H, W) -> BxNxC."""
        scale = torch.tensor([image_size[1], image_size[0]], dtype=torch.float32, device=coords.device)
        return self._encode(coords.float() / scale)


def axial_rope_angles(head_dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles of 2-D axial RoPE for a row-major ``end_y`` x ``end_x`` grid:
    (end_x*end_y) x (head_dim/2). The first half of the angle pairs rotate by x, the second by y."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x, t_y = t % end_x, torch.div(t, end_x, rounding_mode="floor")
    return torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (...xNxD) by angles given as their cosines and sines
    (NxD/2, broadcast over x's leading dimensions), in float32.

    Written with real cos/sin (no complex tensors) so it runs on every device, MPS included."""
    dtype = x.dtype
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2).to(dtype)


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sine/cosine encoding of N scalar positions: N -> Nx``dim`` (sines, then cosines)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions.unsqueeze(-1) / dim_t
    return torch.cat((angles.sin(), angles.cos()), dim=-1)
