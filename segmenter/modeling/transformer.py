"""Attention layers: SAM's two-way transformer (mask decoder) and rotary attention (memory)."""

import math
from typing import Dict, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP
from .position_encoding import apply_rope, axial_rope_angles


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by ``downsample_rate``.

    Inputs are batch-first: q BxNqxC, k and v BxNkx``kv_in_dim``; output BxNqxC."""

    def __init__(
        self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int = None
    ) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim / downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (self._split_heads(p(t)) for p, t in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v)))
        return self._attend(q, k, v)


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position encoding on a square query grid.

    With ``rope_k_repeat`` the keys may be several grids of the query's size (memories of several
    frames) and each gets the same rotation; the last ``num_k_exclude_rope`` keys (object
    pointers) are not rotated."""

    def __init__(self, *args, rope_theta: float = 10000.0, rope_k_repeat: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self._angles: Dict[Tuple[int, torch.device], Tuple[Tensor, Tensor]] = {}

    def _rope_cos_sin(self, n: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        """Cosines and sines of the rotation angles of an n-token square grid, computed once."""
        key = (n, device)
        if key not in self._angles:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"RoPE attention needs a square token grid, got {n} tokens")
            head_dim = self.internal_dim // self.num_heads
            angles = axial_rope_angles(head_dim, side, side, self.rope_theta).to(device)
            self._angles[key] = (angles.cos(), angles.sin())
        return self._angles[key]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        q, k, v = (self._split_heads(p(t)) for p, t in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v)))
        n = q.shape[-2]
        cos, sin = self._rope_cos_sin(n, q.device)
        q = apply_rope(q, cos, sin)
        num_k_rope = k.shape[-2] - num_k_exclude_rope
        if num_k_rope > 0:
            if num_k_rope != n and not self.rope_k_repeat:
                raise ValueError("keys and queries differ in length; this layer has rope_k_repeat=False")
            # keys of several grids (memories of several frames) get the same rotation: broadcast
            grids = k[:, :, :num_k_rope].unflatten(2, (num_k_rope // n, n))
            rotated = apply_rope(grids, cos, sin).flatten(2, 3)
            k = rotated if num_k_rope == k.shape[-2] else torch.cat([rotated, k[:, :, num_k_rope:]], dim=2)
        return self._attend(q, k, v)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token
    cross-attention; post-norm after each."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> Tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """SAM's mask-decoder transformer: prompt tokens and image tokens attend to each other."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate, skip_first_layer_pe=(i == 0)
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor) -> Tuple[Tensor, Tensor]:
        """image_embedding and image_pe BxCxHxW, point_embedding BxNxC.
        Returns the processed tokens BxNxC and image tokens Bx(HW)xC."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
