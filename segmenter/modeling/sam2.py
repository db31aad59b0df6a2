"""The SAM 2 model: a thin module that holds its components under Meta's checkpoint names."""

from typing import List, Tuple

import torch
from torch import nn

from .common import MLP
from .image_encoder import ImageEncoder
from .mask_decoder import MaskDecoder
from .memory import MemoryAttention, MemoryEncoder
from .prompt_encoder import PromptEncoder


class SAM2Model(nn.Module):
    """SAM 2: image encoder, prompt encoder and mask decoder (the image path), plus the memory
    modules and parameters of the video path.

    Parameter names equal the keys of Meta's checkpoints, so an official state dict loads
    strictly without remapping. Build it with :func:`segmenter.build_sam2`.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        memory_attention: MemoryAttention,
        memory_encoder: MemoryEncoder,
        image_size: int = 1024,
        num_maskmem: int = 7,
        mem_dim: int = 64,
        no_obj_embed_spatial: bool = False,
        add_tpos_enc_to_obj_ptrs: bool = False,
        proj_tpos_enc_in_obj_ptrs: bool = False,
        use_signed_tpos_enc_to_obj_ptrs: bool = False,
    ) -> None:
        super().__init__()
        hidden_dim = image_encoder.neck.d_model
        self.image_size = image_size
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder

        # Video path (see segmenter.tracking): settings that differ between SAM 2 and SAM 2.1...
        self.num_maskmem = num_maskmem
        self.mem_dim = mem_dim
        self.add_tpos_enc_to_obj_ptrs = add_tpos_enc_to_obj_ptrs
        self.use_signed_tpos_enc_to_obj_ptrs = use_signed_tpos_enc_to_obj_ptrs
        # ...and its parameters.
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden_dim))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(hidden_dim, hidden_dim, hidden_dim, 3)
        if no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))
        if proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(hidden_dim, mem_dim)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    def forward_image(self, images: torch.Tensor) -> dict:
        """Encode a batch of preprocessed images Bx3xSxS. Returns the image encoder's dict with the
        stride-4 and stride-8 levels of ``backbone_fpn`` already projected by the mask decoder's
        ``conv_s0``/``conv_s1`` (Bx32xS/4xS/4 and Bx64xS/8xS/8), as Meta's ``forward_image`` does."""
        out = self.image_encoder(images)
        fpn = list(out["backbone_fpn"])
        fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        out["backbone_fpn"] = fpn
        return out

    def encode_images(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Image-path embeddings of Bx3xSxS preprocessed images: the image embedding
        Bx256xS/16xS/16 (with ``no_mem_embed`` added, as for a frame without memory) and the
        high-resolution features [Bx32xS/4xS/4, Bx64xS/8xS/8] for the mask decoder."""
        fpn = self.forward_image(images)["backbone_fpn"]
        image_embed = fpn[-1] + self.no_mem_embed.view(1, -1, 1, 1)
        return image_embed, fpn[:-1]
