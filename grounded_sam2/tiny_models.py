"""Tiny random models for offline smoke runs and tests.

``make_tiny_models(DIR)`` writes ``DIR/florence2`` (a Florence-2 processor and model directory
that loads with transformers' native classes) and ``DIR/sam2.pt`` (a random SAM 2.1 tiny
checkpoint in Meta's format); ``grounders=`` adds the other grounding backends
(``DIR/grounding-dino``, ``DIR/mm-grounding-dino``, ``DIR/owlv2``), each loading through the real
loading code with an offline tokenizer built from a small vocabulary. Their labels are
meaningless: they exist so that the whole pipeline can run where real weights cannot be
downloaded.
"""

from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

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


def _byte_alphabet() -> List[str]:
    """GPT-2's byte-level alphabet (BART and CLIP use it): one printable character per byte."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in visible:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _byte_level_vocab() -> Tuple[Dict[str, int], List[str]]:
    """A byte-level vocabulary for the tiny Florence-2: every byte is one token, no merges."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in _byte_alphabet():
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


# Words the tiny tokenizers know whole (the shipped ontologies' and the tests'); any other text
# still tokenizes, letter by letter.
_WORDS = sorted(set(
    "a an the of and on in with dog dogs cat cats car cars red blue big small person persons people riding bicycle "
    "table cafe puppy truck bus bird horse sheep cow tree cyclist object number rather long descriptive name"
    .split()
))


def _bert_vocab() -> List[str]:
    """A BERT WordPiece vocabulary with the specials at their real ids: Grounding DINO hard-codes
    [CLS] 101, [SEP] 102, '.' 1012 and '?' 1029 as phrase delimiters."""
    tokens = [f"[unused{i}]" for i in range(2000)]
    for i, special in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]"), (1012, "."),
                       (1029, "?")):
        tokens[i] = special
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return tokens + _WORDS + list(alphabet) + [f"##{c}" for c in alphabet] + list(",;:!'\"-()/&")


def make_tiny_grounding_dino(directory: Union[str, Path], seed: int = 0, model_type: str = "grounding-dino") -> Path:
    """Write a tiny random Grounding DINO (``model_type="mm-grounding-dino"``: MM-Grounding-DINO)
    with its processor to ``directory``; its text window is 32 tokens, so that long ontologies
    need several chunks. Returns ``directory``."""
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = _bert_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    config_class, model_class = {
        "grounding-dino": (GroundingDinoConfig, GroundingDinoForObjectDetection),
        "mm-grounding-dino": (MMGroundingDinoConfig, MMGroundingDinoForObjectDetection),
    }[model_type]
    config = config_class(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32,
        backbone_config=SwinConfig(window_size=7, embed_dim=8, depths=[1] * 4, num_heads=[1] * 4, image_size=128,
                                   out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=64, vocab_size=len(vocab)),
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():  # MM-Grounding-DINO starts its text logits at -4.6 (1% scores): none would pass
        for name, parameter in model.named_parameters():
            if "class_embed" in name and name.endswith(".bias") and parameter.ndim == 0:
                parameter.fill_(0.0)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    (directory / "vocab.txt").unlink()  # the processor saved its own copy
    model.save_pretrained(directory)
    return directory


def make_tiny_mm_grounding_dino(directory: Union[str, Path], seed: int = 0) -> Path:
    """Write a tiny random MM-Grounding-DINO with its processor to ``directory``."""
    return make_tiny_grounding_dino(directory, seed, model_type="mm-grounding-dino")


def _clip_bpe() -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """A CLIP byte-level BPE vocabulary and merges that spell :data:`_WORDS` as one token each;
    ``<|endoftext|>`` has the highest id (OWLv2 pools the text at the largest input id)."""
    alphabet = _byte_alphabet()
    vocab: Dict[str, int] = {}
    for token in alphabet + [f"{c}</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges: List[Tuple[str, str]] = []
    for word in _WORDS:
        pieces = list(word[:-1]) + [f"{word[-1]}</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def make_tiny_owlv2(directory: Union[str, Path], seed: int = 0) -> Path:
    """Write a tiny random OWLv2 with its processor (128-pixel input, 64 boxes) to ``directory``."""
    import torch
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    directory = Path(directory)
    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=16)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["!"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=128, patch_size=16),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    with torch.no_grad():  # random heads of this width saturate: boxes at the image edges, scores at 0 or 1
        for name in ("box_head.dense2.weight", "class_head.logit_scale.weight", "class_head.logit_shift.weight"):
            model.get_parameter(name).mul_(0.02)
    image_processor = Owlv2ImageProcessorPil(size={"height": 128, "width": 128})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


TINY_GROUNDERS: Dict[str, Callable[..., Path]] = {
    "florence2": make_tiny_florence2,
    "grounding-dino": make_tiny_grounding_dino,
    "mm-grounding-dino": make_tiny_mm_grounding_dino,
    "owlv2": make_tiny_owlv2,
}


TINY_SAM2_IMAGE_SIZE = 256  # the tiny SAM 2's input: 16x less encoder work than 1024


def make_tiny_models(directory: Union[str, Path], grounders: Sequence[str] = ("florence2",)) -> Tuple[Path, Path]:
    """Write a tiny random model for each grounding backend in ``grounders`` (``DIR/<backend>``;
    all of them: ``tuple(TINY_GROUNDERS)``) and ``DIR/sam2.pt`` (random SAM 2.1 tiny in Meta's
    format, also naming a :data:`TINY_SAM2_IMAGE_SIZE` input, which only this project's loader
    reads). Returns ``(DIR/<first backend>, DIR/sam2.pt)``: pass them as ``florence=`` (or
    ``grounder="<backend>:<dir>"``) and ``sam2=``."""
    from segmenter import save_random_checkpoint

    directory = Path(directory)
    written = [TINY_GROUNDERS[name](directory / name) for name in grounders]
    sam2 = save_random_checkpoint(directory / "sam2.pt", "sam2.1_hiera_tiny", image_size=TINY_SAM2_IMAGE_SIZE)
    return written[0], sam2
