"""Tiny random models for offline smoke runs and tests.

``make_tiny_models(DIR)`` writes ``DIR/florence2`` (a Florence-2 processor and model directory
that loads with transformers' native classes) and ``DIR/sam2.pt`` (a random SAM 2.1 tiny
checkpoint in Meta's format). Their labels are meaningless: they exist so that the whole
pipeline can run where real weights cannot be downloaded.
"""

from pathlib import Path
from typing import Dict, List, Tuple, Union

# Florence-2's special tokens after the byte-level alphabet (order as in the released tokenizer).
_TASK_TOKENS = (
    "<od> </od> <ocr> </ocr> <cap> </cap> <ncap> </ncap> <dcap> </dcap> <grounding> </grounding> <seg> </seg> "
    "<sep> <region_cap> </region_cap> <region_to_desciption> </region_to_desciption> <proposal> </proposal> "
    "<poly> </poly> <and>"
).split()
_BANNED_GROUNDING_TOKENS = [
    "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "they", "them",
    "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "the image", "a", "an", "the",
]
IMAGE_SIZE = 32  # pixels of the tiny model's square input
SMOKE_ANSWER = "dog<loc_100><loc_150><loc_600><loc_700>"  # what the tiny Florence-2 always answers
_PATCH_STRIDES = (4, 2)


def _byte_level_vocab() -> Tuple[Dict[str, int], List[str]]:
    """GPT-2 style byte-level alphabet: every byte is one token, no merges."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in visible:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab, []


def make_tiny_florence2(directory: Union[str, Path], seed: int = 0) -> Path:
    """Write a tiny random Florence-2 (processor + model) to ``directory``; returns it."""
    import torch
    from transformers import (
        AddedToken,
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = _byte_level_vocab()
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, model_specific_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in _TASK_TOKENS])
    tokenizer.add_tokens([AddedToken(f"<loc_{i}>", special=True, normalized=False) for i in range(1000)])

    tokens_per_side = IMAGE_SIZE // (_PATCH_STRIDES[0] * _PATCH_STRIDES[1])
    image_processor = CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    image_processor.image_seq_length = tokens_per_side**2 + 1
    post_processor_config = {
        "ocr": {"pattern": r"(.+?)" + r"<loc_(\d+)>" * 8, "area_threshold": 0.0},
        "phrase_grounding": {"banned_grounding_tokens": _BANNED_GROUNDING_TOKENS},
        "pure_text": {},
        "description_with_bboxes": {},
        "description_with_polygons": {},
        "polygons": {},
        "bboxes": {},
        "description_with_bboxes_or_polygons": {},
    }
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=post_processor_config
    )
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = Florence2Config(
        text_config=dict(
            model_type="bart", vocab_size=vocab_size, d_model=32, encoder_layers=1, decoder_layers=1,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=1024, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            decoder_start_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2,
        ),
        vision_config=dict(
            embed_dim=[16, 32], depths=[1, 1], patch_size=[7, 3], patch_stride=list(_PATCH_STRIDES),
            patch_padding=[3, 1], patch_prenorm=[False, True], num_heads=[1, 2], num_groups=[1, 2],
            window_size=4, projection_dim=32,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    # A random model ends every answer at once; bias each step of a fixed answer instead, so that
    # smoke runs go through boxes and masks: every image gets one "dog" box, whatever it shows.
    answer = tokenizer(SMOKE_ANSWER, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer = [tokenizer.bos_token_id] + answer
    model.generation_config.sequence_bias = [[[a, b], 100.0] for a, b in zip(answer[:-1], answer[1:])]
    # like the released checkpoints: answers start with <s> (not kept by save_pretrained otherwise)
    model.generation_config.forced_bos_token_id = tokenizer.bos_token_id
    model.generation_config.forced_eos_token_id = tokenizer.eos_token_id
    processor.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


def make_tiny_models(directory: Union[str, Path]) -> Tuple[Path, Path]:
    """Write ``DIR/florence2`` and ``DIR/sam2.pt`` (random SAM 2.1 tiny in Meta's format).
    Returns both paths; pass them as ``florence=`` / ``sam2=`` (or ``--florence`` / ``--sam2``)."""
    from segmenter import save_random_checkpoint

    directory = Path(directory)
    florence = make_tiny_florence2(directory / "florence2")
    sam2 = save_random_checkpoint(directory / "sam2.pt", "sam2.1_hiera_tiny")
    return florence, sam2
