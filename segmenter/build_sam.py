"""Builders: a SAM 2 model from a variant config, optionally with its checkpoint loaded."""

import dataclasses
from pathlib import Path
from typing import Union

import torch

from .checkpoint import detect_variant, load_checkpoint, load_state_dict_into, resolve_checkpoint
from .config import ConfigError, SAM2Config, resolve_config
from .device import resolve_device
from .modeling.hiera import Hiera
from .modeling.image_encoder import FpnNeck, ImageEncoder
from .modeling.mask_decoder import MaskDecoder
from .modeling.memory import MemoryAttention, MemoryEncoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.sam2 import SAM2Model
from .modeling.transformer import TwoWayTransformer

# Settings shared by every released variant.
HIDDEN_DIM = 256
MEM_DIM = 64
BACKBONE_STRIDE = 16


def build_model(config: SAM2Config, apply_postprocessing: bool = True) -> SAM2Model:
    """A randomly initialised :class:`SAM2Model` for ``config``.

    ``apply_postprocessing`` turns on the mask decoder's dynamic fallback to the most stable
    multimask answer for single-mask requests (Meta's ``apply_postprocessing``)."""
    t = config.trunk
    trunk = Hiera(
        embed_dim=t.embed_dim,
        num_heads=t.num_heads,
        stages=t.stages,
        global_att_blocks=t.global_att_blocks,
        window_spec=t.window_spec,
        window_pos_embed_bkg_spatial_size=t.window_pos_embed_bkg_spatial_size,
    )
    image_encoder = ImageEncoder(trunk, FpnNeck(HIDDEN_DIM, config.backbone_channel_list), scalp=1)
    embedding_size = config.image_size // BACKBONE_STRIDE
    prompt_encoder = PromptEncoder(
        HIDDEN_DIM, (embedding_size, embedding_size), (config.image_size, config.image_size), mask_in_chans=16
    )
    mask_decoder = MaskDecoder(
        transformer_dim=HIDDEN_DIM,
        transformer=TwoWayTransformer(depth=2, embedding_dim=HIDDEN_DIM, num_heads=8, mlp_dim=2048),
        dynamic_multimask_via_stability=apply_postprocessing,
    )
    return SAM2Model(
        image_encoder,
        prompt_encoder,
        mask_decoder,
        MemoryAttention(HIDDEN_DIM, num_layers=4, mem_dim=MEM_DIM),
        MemoryEncoder(HIDDEN_DIM, MEM_DIM),
        image_size=config.image_size,
        mem_dim=MEM_DIM,
        no_obj_embed_spatial=config.no_obj_embed_spatial,
        add_tpos_enc_to_obj_ptrs=config.add_tpos_enc_to_obj_ptrs,
        proj_tpos_enc_in_obj_ptrs=config.proj_tpos_enc_in_obj_ptrs,
        use_signed_tpos_enc_to_obj_ptrs=config.use_signed_tpos_enc_to_obj_ptrs,
    )


def build_sam2(
    config_file: Union[str, Path, SAM2Config, None] = None,
    ckpt_path: Union[str, Path, None] = None,
    device: Union[str, torch.device, None] = None,
    mode: str = "eval",
    apply_postprocessing: bool = True,
) -> SAM2Model:
    """Build SAM 2, Meta-compatible.

    Arguments:
      config_file: the variant: Meta's config name (``"sam2_hiera_l.yaml"``,
        ``"configs/sam2.1/sam2.1_hiera_t.yaml"``), a variant name (``"sam2.1_hiera_tiny"``), a hub
        id, a config YAML path, or None to detect the variant from the checkpoint.
      ckpt_path: a local ``.pt`` file in Meta's format (``{"model": state_dict}``), or a hub id
        (``"facebook/sam2.1-hiera-large"``) or variant name, downloaded once through the
        Hugging Face cache. None leaves the weights randomly initialised.
      device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...; None picks CUDA, then MPS, then CPU.
      mode: ``"eval"`` (default) or ``"train"``.
      apply_postprocessing: Meta's switch for the dynamic multimask fallback.

    Raises:
      ConfigError: unknown variant, or a checkpoint of another variant than ``config_file``.
      CheckpointError: unreadable, unsafe or mismatched checkpoint, or one that cannot be found
        (the message says how to download it).
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    config = resolve_config(config_file) if config_file is not None else None
    state_dict = None
    if ckpt_path is not None:
        path = resolve_checkpoint(ckpt_path)
        state_dict, image_size = load_checkpoint(path)
        detected = detect_variant(state_dict, source=path)
        if config is None:
            config = detected
        elif (config.num_trunk_blocks, config.trunk.embed_dim, config.version) != (
            detected.num_trunk_blocks, detected.trunk.embed_dim, detected.version
        ):
            raise ConfigError(f"checkpoint {path} holds {detected.name}, but the config asks for {config.name}")
        if image_size is not None:  # the checkpoint names its input size (tiny smoke-test models)
            config = dataclasses.replace(config, image_size=image_size)
    elif config is None:
        raise ConfigError("build_sam2 needs a config, a checkpoint, or both")

    model = build_model(config, apply_postprocessing=apply_postprocessing)
    if state_dict is not None:
        load_state_dict_into(model, state_dict, source=path)
    model = model.to(resolve_device(device))
    return model.train(mode == "train")


def build_sam2_hf(model_id: str, **kwargs) -> SAM2Model:
    """Build SAM 2 from a hub id such as ``"facebook/sam2.1-hiera-large"`` (Meta's ``build_sam2_hf``)."""
    return build_sam2(model_id, model_id, **kwargs)
