"""SAM 2's memory modules (video path): memory attention conditions a frame's features on past
frames' memories and object pointers; the memory encoder turns a frame's features and predicted
mask into a memory. Their settings are the same for every released variant."""

import copy
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine
from .transformer import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    """Pre-norm layer: RoPE self-attention, RoPE cross-attention to memories (keys carry their
    position encoding, queries do not), ReLU feed-forward."""

    def __init__(self, d_model: int = 256, dim_feedforward: int = 2048, mem_dim: int = 64) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, num_heads=1)
        self.cross_attn_image = RoPEAttention(d_model, num_heads=1, kv_in_dim=mem_dim, rope_k_repeat=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, memory_pos: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory + memory_pos, memory, num_k_exclude_rope=num_k_exclude_rope)
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class MemoryAttention(nn.Module):
    """Stack of :class:`MemoryAttentionLayer` and a final LayerNorm. Batch-first tensors:
    curr BxNxC with curr_pos BxNxC; memory BxMx``mem_dim`` with memory_pos alike, whose last
    ``num_obj_ptr_tokens`` entries are object pointers (not rotated)."""

    def __init__(self, d_model: int = 256, num_layers: int = 4, mem_dim: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, mem_dim=mem_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, curr: Tensor, memory: Tensor, curr_pos: Tensor, memory_pos: Tensor, num_obj_ptr_tokens: int = 0
    ) -> Tensor:
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens)
        return self.norm(x)


class MaskDownSampler(nn.Module):
    """Downsamples a mask 16x with four stride-2 convolutions (channels x4 each), LayerNorm2d
    and GELU after each, then a 1x1 projection to ``embed_dim``."""

    def __init__(self, embed_dim: int = 256, num_layers: int = 4) -> None:
        super().__init__()
        layers = []
        chans = 1
        for _ in range(num_layers):
            conv = nn.Conv2d(chans, chans * 4, kernel_size=3, stride=2, padding=1)
            layers += [conv, LayerNorm2d(chans * 4), nn.GELU()]
            chans *= 4
        layers.append(nn.Conv2d(chans, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, LayerNorm2d, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int = 256, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """Two CXBlocks applied to the sum of projected pixel features and the downsampled mask."""

    def __init__(self, layer: CXBlock, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Frame features BxCx64x64 and mask logits Bx1x1024x1024 -> memory features
    Bx``out_dim``x64x64 and their sine position encoding."""

    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(CXBlock(in_dim))
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, pix_feat: Tensor, masks: Tensor, skip_mask_sigmoid: bool = False) -> Dict[str, Tensor]:
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        return {"vision_features": x, "vision_pos_enc": self.position_encoding(x).to(x.dtype)}
