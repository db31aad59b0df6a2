"""SAM2ImagePredictor: encode images once, then decode masks for point, box and mask prompts.

Same methods, arguments and return conventions as Meta's ``sam2.sam2_image_predictor``, with:
- ``set_image_batch`` encodes images of any sizes in one forward pass;
- every prompt of an image is decoded in one mask-decoder call, and ``predict_torch`` with one
  image index per prompt decodes prompts on several of the images set in one call;
- ``predict_torch`` keeps results on the device; ``predict``/``predict_batch`` are numpy adapters;
- images may be numpy arrays, PIL images or paths (see :mod:`segmenter.image_io`);
- bfloat16 autocast on CUDA by default (``bf16=False`` for full float32).

Coordinates are (x, y) pixels of the original image unless ``normalize_coords=False`` (then
relative, in [0, 1]); boxes are XYXY.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .device import autocast_context
from .image_io import ImageInput, load_rgb
from .modeling.prompt_encoder import BOX_BOTTOM_RIGHT_LABEL, BOX_TOP_LEFT_LABEL, NEGATIVE_LABEL, POSITIVE_LABEL
from .modeling.sam2 import SAM2Model
from .transforms import postprocess_masks, preprocess, to_tensor, transform_coords

ArrayLike = Union[np.ndarray, Sequence, torch.Tensor]


@dataclass
class ImageFeatures:
    """Cached embeddings of the images set on a predictor (I images)."""

    image_embed: torch.Tensor  # Ix256x64x64
    high_res_feats: List[torch.Tensor]  # [Ix32x256x256, Ix64x128x128]
    orig_hw: List[Tuple[int, int]]  # (H, W) of each original image


class SAM2ImagePredictor:
    """Predicts masks for prompts on images, computing each image's embedding once."""

    def __init__(
        self,
        sam_model: SAM2Model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        bf16: bool = True,
    ) -> None:
        """
        Arguments:
          sam_model: the model, from :func:`segmenter.build_sam2`.
          mask_threshold: logit threshold that turns mask logits into binary masks.
          max_hole_area: fill background holes of up to this many pixels of the 256x256 logits.
          max_sprinkle_area: remove foreground specks of up to this many pixels (256x256 logits).
          bf16: use bfloat16 autocast when the model is on CUDA (ignored on CPU and MPS).
        """
        self.model = sam_model
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.bf16 = bf16
        self._features: Optional[ImageFeatures] = None
        self._is_batch = False
        self._dense_pe: Optional[torch.Tensor] = None

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs) -> "SAM2ImagePredictor":
        """Predictor for a hub id such as ``"facebook/sam2.1-hiera-large"``. Keyword arguments go
        to :func:`segmenter.build_sam2` (device, apply_postprocessing) or to the predictor."""
        from .build_sam import build_sam2_hf

        build_keys = {"device", "mode", "apply_postprocessing"}
        model = build_sam2_hf(model_id, **{k: v for k, v in kwargs.items() if k in build_keys})
        return cls(model, **{k: v for k, v in kwargs.items() if k not in build_keys})

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def orig_hw(self) -> List[Tuple[int, int]]:
        """(H, W) of every image set."""
        return self._require_features().orig_hw

    def reset_predictor(self) -> None:
        """Forget the images set."""
        self._features = None
        self._is_batch = False

    @torch.no_grad()
    def set_image(self, image: ImageInput) -> None:
        """Compute and cache the embedding of one image: an HxWx3 RGB numpy array (uint8, or float
        in [0, 1]), a PIL image or an image path. Masks then come from :meth:`predict`."""
        self._set_images([image])
        self._is_batch = False

    @torch.no_grad()
    def set_image_batch(self, image_list: Sequence[ImageInput], images_per_pass: Optional[int] = None) -> None:
        """Compute and cache the embeddings of several images, of any sizes, in one forward
        pass (or in passes of at most ``images_per_pass`` images, to bound the encoder's
        activation memory). Masks then come from :meth:`predict_batch`."""
        if not isinstance(image_list, (list, tuple)) or not image_list:
            raise TypeError("set_image_batch expects a non-empty list of images")
        if images_per_pass is not None and images_per_pass < 1:
            raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
        self._set_images(list(image_list), images_per_pass or len(image_list))
        self._is_batch = True

    def _set_images(self, images: List[ImageInput], images_per_pass: int = 1) -> None:
        self.reset_predictor()
        arrays = [load_rgb(image) for image in images]
        # Antialiased resizing exists on MPS only from torch 2.7: resize on the CPU there.
        resize_device = torch.device("cpu") if self.device.type == "mps" else self.device
        embeds, high_res = [], []
        for start in range(0, len(arrays), images_per_pass):
            tensors = [to_tensor(a, resize_device) for a in arrays[start : start + images_per_pass]]
            batch = preprocess(tensors, self.model.image_size).to(self.device)
            with autocast_context(self.device, self.bf16):
                embed, levels = self.model.encode_images(batch)
            embeds.append(embed)
            high_res.append(levels)
        if len(embeds) == 1:
            features = ImageFeatures(embeds[0], high_res[0], [a.shape[:2] for a in arrays])
        else:
            levels = [torch.cat(level) for level in zip(*high_res)]
            features = ImageFeatures(torch.cat(embeds), levels, [a.shape[:2] for a in arrays])
        self._features = features

    def get_image_embedding(self) -> torch.Tensor:
        """Embeddings of the images set: Ix256x64x64."""
        return self._require_features().image_embed

    def _require_features(self) -> ImageFeatures:
        if self._features is None:
            raise RuntimeError(
                "An image must be set with .set_image(...) or .set_image_batch(...) before mask prediction."
            )
        return self._features

    def _image_pe(self) -> torch.Tensor:
        if self._dense_pe is None or self._dense_pe.device != self.device:
            self._dense_pe = self.model.sam_prompt_encoder.get_dense_pe()
        return self._dense_pe

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
        img_idx: Union[int, torch.Tensor] = 0,
    ) -> Tuple[Union[torch.Tensor, List[torch.Tensor]], torch.Tensor, torch.Tensor]:
        """Decode B prompts in one mask-decoder call, all on image ``img_idx`` or each on its own
        image; results stay on the device.

        Arguments:
          point_coords: BxNx2 (x, y) points, or None.
          point_labels: BxN labels: 1 positive, 0 negative.
          boxes: Bx4 XYXY boxes, or None. A box is given to the model as two corner points,
            placed before the clicks of the same prompt.
          mask_input: Bx1x256x256 low-resolution logits from a previous prediction, or None.
          multimask_output: 3 candidate masks per prompt instead of 1.
          return_logits: return float logits instead of boolean masks.
          normalize_coords: coordinates are original-image pixels (True) or relative in [0, 1].
          img_idx: which of the images set to use: one index for every prompt, or a B long
            tensor with the image of each prompt (its coordinates are then pixels of that image).

        Returns:
          masks BxCxHxW (bool, or float logits) at the original size, iou_predictions BxC, and
          low-res logits BxCx256x256 clamped to +-32; C is 3 with multimask_output, else 1. With
          a tensor ``img_idx`` the images may differ in size, so masks is a list with one entry
          per image set: the B_ixCxH_ixW_i masks of the prompts on image i, in prompt order
          (0xCxH_ixW_i for an image without prompts). IoUs and low-res logits keep prompt order.
        """
        features = self._require_features()
        points = self._prompt_points(point_coords, point_labels, boxes)
        num_prompts = 1  # the prompt encoder's batch size: from the points, else the masks, else 1
        if points is not None or mask_input is not None:
            num_prompts = (points[0] if points is not None else mask_input).shape[0]
        image_ids = self._image_ids(img_idx, num_prompts, len(features.orig_hw))
        if points is not None:
            coords, labels = points
            points = self._to_model_input(coords, image_ids, features.orig_hw, normalize_coords), labels
        if mask_input is not None:
            mask_input = mask_input.to(self.device, torch.float32)
        with autocast_context(self.device, self.bf16):
            sparse, dense = self.model.sam_prompt_encoder(points=points, masks=mask_input)
            low_res, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=features.image_embed,
                image_pe=self._image_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                image_ids=image_ids,
                high_res_features=features.high_res_feats,
            )
        if isinstance(img_idx, torch.Tensor):
            masks = [
                self._postprocess(low_res[image_ids == i], hw, return_logits) for i, hw in enumerate(features.orig_hw)
            ]
        else:
            masks = self._postprocess(low_res, features.orig_hw[img_idx], return_logits)
        return masks, iou.float(), torch.clamp(low_res.float(), -32.0, 32.0)

    def _image_ids(self, img_idx: Union[int, torch.Tensor], num_prompts: int, num_images: int) -> torch.Tensor:
        """The image of each prompt: ``img_idx`` checked and made a ``num_prompts`` long tensor."""
        if not isinstance(img_idx, torch.Tensor):
            if not 0 <= img_idx < num_images:
                raise IndexError(f"img_idx {img_idx} out of range for {num_images} image(s)")
            return torch.full((num_prompts,), img_idx, dtype=torch.long, device=self.device)
        if img_idx.shape != (num_prompts,):
            shape = tuple(img_idx.shape)
            raise ValueError(f"img_idx needs one image index per prompt ({num_prompts}), got shape {shape}")
        image_ids = img_idx.to(self.device, torch.long)
        if not bool(((image_ids >= 0) & (image_ids < num_images)).all()):
            raise IndexError(f"img_idx values must lie in [0, {num_images}) for {num_images} image(s)")
        return image_ids

    def _to_model_input(
        self, coords: torch.Tensor, image_ids: torch.Tensor, orig_hw: List[Tuple[int, int]], normalize: bool
    ) -> torch.Tensor:
        """BxNx2 prompt coordinates -> pixels of the model input, each prompt scaled from its own
        image (``image_ids``: B image indices into ``orig_hw``)."""
        resolution = self.model.image_size
        out = torch.empty_like(coords)
        for i in image_ids.unique().tolist():
            rows = image_ids == i
            out[rows] = transform_coords(coords[rows], orig_hw[i], resolution, normalize)
        return out

    def _postprocess(self, low_res: torch.Tensor, orig_hw: Tuple[int, int], return_logits: bool) -> torch.Tensor:
        """BxCx256x256 logits -> BxCxHxW masks at the original size (bool unless ``return_logits``)."""
        masks = postprocess_masks(low_res, orig_hw, self.mask_threshold, self.max_hole_area, self.max_sprinkle_area)
        return masks if return_logits else masks > self.mask_threshold

    def _prompt_points(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
    ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Boxes and clicks as one BxNx2 point prompt (coordinates as given), box corners first."""
        coords, labels = [], []
        if boxes is not None:
            boxes = boxes.to(self.device, torch.float32).reshape(-1, 2, 2)
            coords.append(boxes)
            corner_labels = torch.tensor([[BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL]], dtype=torch.int32)
            labels.append(corner_labels.to(self.device).expand(boxes.shape[0], 2))
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied.")
            point_coords = point_coords.to(self.device, torch.float32)
            point_labels = point_labels.to(self.device, torch.int32)
            if point_coords.ndim == 2:
                point_coords, point_labels = point_coords[None], point_labels[None]
            if point_coords.ndim != 3 or point_coords.shape[-1] != 2 or point_labels.shape != point_coords.shape[:2]:
                raise ValueError(
                    f"point_coords must be Nx2 or BxNx2 with labels N or BxN; got {tuple(point_coords.shape)} "
                    f"and {tuple(point_labels.shape)}"
                )
            valid = (point_labels == POSITIVE_LABEL) | (point_labels == NEGATIVE_LABEL)
            if not bool(valid.all()):
                raise ValueError("point_labels must be 1 (positive) or 0 (negative)")
            if coords and coords[0].shape[0] != point_coords.shape[0]:
                if point_coords.shape[0] != 1:
                    raise ValueError(f"{coords[0].shape[0]} boxes but {point_coords.shape[0]} point sets")
                point_coords = point_coords.expand(coords[0].shape[0], -1, -1)
                point_labels = point_labels.expand(coords[0].shape[0], -1)
            coords.append(point_coords)
            labels.append(point_labels)
        if not coords:
            return None
        return torch.cat(coords, dim=1), torch.cat(labels, dim=1)

    def predict(
        self,
        point_coords: Optional[ArrayLike] = None,
        point_labels: Optional[ArrayLike] = None,
        box: Optional[ArrayLike] = None,
        mask_input: Optional[ArrayLike] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the image set with :meth:`set_image` (numpy in, numpy out).

        Arguments:
          point_coords: Nx2 (x, y) points (or BxNx2 with several boxes).
          point_labels: N labels, 1 positive and 0 negative.
          box: one XYXY box (4,) or several (Bx4): all decoded in one call.
          mask_input: 1x256x256 (or Bx1x256x256) low-res logits from a previous prediction.
          multimask_output, return_logits, normalize_coords: see :meth:`predict_torch`.

        Returns:
          masks CxHxW (BxCxHxW for several boxes) as float32 0/1 (or logits), IoU predictions
          C (BxC) and low-res logits Cx256x256 (BxCx256x256).
        """
        masks, iou, low_res = self._predict_numpy(
            0, point_coords, point_labels, box, mask_input, multimask_output, return_logits, normalize_coords
        )
        return masks, iou, low_res

    def predict_batch(
        self,
        point_coords_batch: Optional[List[ArrayLike]] = None,
        point_labels_batch: Optional[List[ArrayLike]] = None,
        box_batch: Optional[List[ArrayLike]] = None,
        mask_input_batch: Optional[List[ArrayLike]] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
        """:meth:`predict` for every image set with :meth:`set_image_batch`; each argument is a
        list with one entry per image (an entry may be None). Returns lists of masks, IoUs and
        low-res logits, one entry per image."""
        if not self._is_batch:
            raise RuntimeError("predict_batch needs images set with .set_image_batch(...)")
        num_images = len(self._require_features().orig_hw)
        results: Tuple[List, List, List] = ([], [], [])

        def entry(batch, i):
            if batch is None:
                return None
            if len(batch) != num_images:
                raise ValueError(f"expected one prompt entry per image ({num_images}), got {len(batch)}")
            return batch[i]

        for i in range(num_images):
            out = self._predict_numpy(
                i, entry(point_coords_batch, i), entry(point_labels_batch, i), entry(box_batch, i),
                entry(mask_input_batch, i), multimask_output, return_logits, normalize_coords,
            )
            for store, value in zip(results, out):
                store.append(value)
        return results

    def _predict_numpy(
        self, img_idx, point_coords, point_labels, box, mask_input, multimask_output, return_logits, normalize_coords
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        def tensor(x, dtype):
            return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)

        mask = tensor(mask_input, torch.float32)
        if mask is not None and mask.ndim == 3:
            mask = mask[None]
        masks, iou, low_res = self.predict_torch(
            tensor(point_coords, torch.float32), tensor(point_labels, torch.int32), tensor(box, torch.float32),
            mask, multimask_output, return_logits, normalize_coords, img_idx,
        )

        def to_numpy(x: torch.Tensor) -> np.ndarray:
            x = x.float().cpu().numpy()
            return x[0] if x.shape[0] == 1 else x  # Meta's squeeze(0): one prompt -> CxHxW

        return to_numpy(masks), to_numpy(iou), to_numpy(low_res)
