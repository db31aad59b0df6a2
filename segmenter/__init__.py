"""Built-in SAM 2 (Segment Anything 2): Meta's image and video models re-implemented in plain PyTorch.

Loads Meta's official checkpoints (SAM 2 and SAM 2.1, tiny to large) strictly, gives the same
numbers as Meta's code, and needs no torchvision, hydra, CUDA extension or git clone.

    from segmenter import build_sam2, SAM2ImagePredictor
    model = build_sam2("sam2.1_hiera_l.yaml", "checkpoints/sam2.1_hiera_large.pt")
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)             # HxWx3 RGB array, PIL image or path
    masks, scores, logits = predictor.predict(box=[x0, y0, x1, y1], multimask_output=False)

    video = build_sam2_video_predictor("sam2.1_hiera_l.yaml", "checkpoints/sam2.1_hiera_large.pt")
    state = video.init_state("frames/")    # folder of 00000.jpg..., or a video file
    video.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=[x0, y0, x1, y1])
    for frame_idx, obj_ids, mask_logits in video.propagate_in_video(state):
        masks = mask_logits > 0            # N x 1 x H x W, one per object id
"""

from .automatic_mask_generator import SAM2AutomaticMaskGenerator
from .build_sam import build_model, build_sam2, build_sam2_hf
from .checkpoint import CheckpointError, detect_variant, read_checkpoint
from .config import ConfigError, SAM2Config, resolve_config, variants
from .errors import DeviceError, GroundedSAM2Error, SettingsError
from .image_io import ImageError, load_rgb
from .modeling import SAM2Model
from .predictor import SAM2ImagePredictor
from .random_weights import random_state_dict, save_random_checkpoint
from .video_io import VideoError, load_video_frames
from .video_predictor import SAM2VideoPredictor, build_sam2_video_predictor

__all__ = [
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_model",
    "SAM2ImagePredictor",
    "SAM2AutomaticMaskGenerator",
    "SAM2VideoPredictor",
    "load_video_frames",
    "SAM2Model",
    "SAM2Config",
    "variants",
    "resolve_config",
    "detect_variant",
    "read_checkpoint",
    "random_state_dict",
    "save_random_checkpoint",
    "load_rgb",
    "GroundedSAM2Error",
    "SettingsError",
    "DeviceError",
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "VideoError",
]
