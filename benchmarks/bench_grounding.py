"""Benchmark the grounding stage per backend: ``grounder.ground(images, prompts)`` at the real model sizes.

For each backend (``florence2``, ``grounding-dino``, ``mm-grounding-dino``, ``owlv2``) the script
builds, in a temporary directory, a model of the released checkpoint's architecture and size with
random weights (seed ``--seed``), and the processor that checkpoint uses (its real input size),
saves both with ``save_pretrained`` and loads them back through the package's own loading code,
``build_grounder(grounder_config("<backend>:<dir>"), device)``. The architectures:

- ``florence2``: Florence-2-base (florence-community/Florence-2-base): DaViT vision encoder
  (embed_dim 128/256/512/1024, depths 1/1/9/1, window 12, projection 768), BART d_model 768 with
  6 + 6 layers; 768x768 input, 577 image tokens.
- ``grounding-dino``: grounding-dino-tiny (transformers' ``GroundingDinoConfig()`` defaults: Swin-T
  backbone, BERT-base text encoder, 900 queries); images resized to shortest edge 800, longest 1333.
- ``mm-grounding-dino``: MM-Grounding-DINO tiny (``MMGroundingDinoConfig()`` defaults), same processor.
- ``owlv2``: google/owlv2-base-patch16-ensemble (ViT-B/16 at 960x960, CLIP text encoder).

Tokenizers are offline stand-ins with small vocabularies (``grounded_sam2.tiny_models``) that
spell the prompts as whole words, as the released tokenizers do; the models keep the released
vocabulary sizes. A random Florence-2 ends its answer at once, so, as the tiny test model does,
its generation config forces a fixed answer through ``sequence_bias``: two phrases with a box each,
``FLORENCE_ANSWER`` (13 decoded tokens with <s> and </s>), about what a real answer to a
five-prompt caption with two objects in view is. The Grounding DINO family and OWLv2 run a fixed
amount of work per image whatever the weights; the boxes their random heads keep are reported
but meaningless.

Each backend is timed on ``--images`` deterministic synthetic 480x640 RGB images (default 4, one
``ground`` call for all of them) with an ontology of five prompts, after one untimed warm-up call;
``--repeats`` calls (default 3) are timed and the median is reported as seconds per image and
images/s, with the model's parameter count and the CPU cores this process and all other processes
used during the timed calls (above 0.25 cores for other processes, the timings are flagged: the
machine was shared). On CUDA the weights are bfloat16 (``bf16=True``) and the device is
synchronized around every timed call.

Run from the repository root (no installation needed)::

    python benchmarks/bench_grounding.py

Options::

    --backends a,b        comma-separated backends (default: all four)
    --device cpu|cuda     default cpu; cuda uses bfloat16 weights
    --threads N           torch.set_num_threads(N) (default: torch's default)
    --images 4            images per ground() call
    --repeats 3           timed calls per backend (median reported)
    --seed 0              seed of the random weights
    --json PATH           also write the results as JSON
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_common import machine_busy_seconds, own_cpu_seconds, synthetic_image  # puts the repository on sys.path

BACKENDS = ("florence2", "grounding-dino", "mm-grounding-dino", "owlv2")
IMAGE_HW = (480, 640)
PROMPTS = ("dog", "red car", "person riding a bicycle", "table", "blue truck")
# what the benchmark's Florence-2 answers for every image: two of the prompts, one box each
FLORENCE_ANSWER = "dog<loc_100><loc_150><loc_600><loc_700>red car<loc_220><loc_310><loc_540><loc_860>"
FLORENCE_IMAGE_SIZE = 768
OWLV2_IMAGE_SIZE = 960
BUSY_CORES = 0.25  # other processes using more CPU than this during the timed calls: timings flagged


def make_torchvision_importable() -> None:
    """transformers imports torchvision whenever it is installed; where the installed wheel is a
    CUDA-only build that does not import with the CPU torch, define the ops it expects first
    (``tests/meta_reference.py``). Not needed where torchvision is absent or working."""
    try:
        from meta_reference import register_torchvision_ops
    except ImportError:
        return
    register_torchvision_ops()


# --------------------------------------------------------------------------------------------
# Real-size random models, saved with save_pretrained
# --------------------------------------------------------------------------------------------


def _bart_bpe(words):
    """A GPT-2/BART byte-level BPE vocabulary and merges that spell each of ``words`` as one token,
    both at the start of a text (``word``) and after a space (``Ġword``), as BART's tokenizer
    does for common words; any other text still tokenizes, byte by byte."""
    from grounded_sam2.tiny_models import _byte_alphabet

    alphabet = _byte_alphabet()
    space = alphabet[ord(" ")]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in alphabet:
        vocab.setdefault(c, len(vocab))
    merges = []
    # the spaced forms first: every merge of theirs starts with "Ġ" and ranks before the bare
    # forms' merges, so that " car" becomes one token, not "Ġ" + "car"
    for form in [space + w for w in words] + list(words):
        pieces = list(form)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab, merges


def make_florence2_base(directory: Path, seed: int) -> dict:
    """Florence-2-base with random weights and its processor (768x768, 577 image tokens), built
    the way :func:`grounded_sam2.tiny_models.make_tiny_florence2` builds the tiny one."""
    import torch
    from transformers import (
        AddedToken,
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    from grounded_sam2.grounding.florence2 import TASKS
    from grounded_sam2.tiny_models import _BANNED_GROUNDING_TOKENS, _TASK_TOKENS, _WORDS

    template_words = {w.strip(":.{}") for _, template in TASKS.values() for w in template.split()}
    vocab, merges = _bart_bpe(sorted(set(_WORDS) | {w for w in template_words if w}))
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, model_specific_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in _TASK_TOKENS])
    tokenizer.add_tokens([AddedToken(f"<loc_{i}>", special=True, normalized=False) for i in range(1000)])

    strides = (4, 2, 2, 2)
    tokens_per_side = FLORENCE_IMAGE_SIZE // (strides[0] * strides[1] * strides[2] * strides[3])  # 24
    image_processor = CLIPImageProcessor(
        size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE},
        crop_size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE},
        do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    image_processor.image_seq_length = tokens_per_side**2 + 1  # 577
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
    text_config = dict(
        model_type="bart", vocab_size=51289, d_model=768, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        max_position_embeddings=1024, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        decoder_start_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2,
    )
    vision_config = dict(
        embed_dim=[128, 256, 512, 1024], depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=list(strides),
        patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True], num_heads=[4, 8, 16, 32],
        num_groups=[4, 8, 16, 32], window_size=12, projection_dim=768,
    )
    config = Florence2Config(
        text_config=text_config, vision_config=vision_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    # A random model ends every answer at once; bias each step of a fixed answer instead (as the
    # tiny model does), so that every row decodes an answer of realistic length, then stops.
    answer = [tokenizer.bos_token_id] + tokenizer(FLORENCE_ANSWER, add_special_tokens=False)["input_ids"]
    answer.append(tokenizer.eos_token_id)
    if len({a for a in answer[:-1]}) != len(answer) - 1:
        raise RuntimeError(f"the forced answer repeats a token, so its bigram biases conflict: {answer}")
    model.generation_config.sequence_bias = [[[a, b], 100.0] for a, b in zip(answer[:-1], answer[1:])]
    model.generation_config.forced_bos_token_id = tokenizer.bos_token_id
    model.generation_config.forced_eos_token_id = tokenizer.eos_token_id
    processor.save_pretrained(directory)
    model.save_pretrained(directory)
    return {
        "model": "Florence-2-base architecture: DaViT embed_dim [128, 256, 512, 1024], depths [1, 1, 9, 1], "
        "heads/groups [4, 8, 16, 32], window 12, projection 768; BART d_model 768, 6+6 layers, 12 heads, "
        "ffn 3072, 1024 positions, vocab 51289",
        "input": f"{FLORENCE_IMAGE_SIZE}x{FLORENCE_IMAGE_SIZE}, {image_processor.image_seq_length} image tokens",
        "tokenizer_size": len(tokenizer),
        "forced_answer": FLORENCE_ANSWER,
        "forced_answer_tokens": len(answer),  # with <s> and </s>
    }


def make_grounding_dino_tiny(directory: Path, seed: int, model_type: str = "grounding-dino") -> dict:
    """grounding-dino-tiny (or MM-Grounding-DINO tiny) with random weights: transformers' config
    defaults, the released processor sizes, and the tiny BERT WordPiece vocabulary."""
    import torch
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    from grounded_sam2.tiny_models import _bert_vocab

    vocab = _bert_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    config_class, model_class = {
        "grounding-dino": (GroundingDinoConfig, GroundingDinoForObjectDetection),
        "mm-grounding-dino": (MMGroundingDinoConfig, MMGroundingDinoForObjectDetection),
    }[model_type]
    config = config_class()  # the released tiny architecture; text vocab 30522 covers the tiny vocab
    if len(vocab) > config.text_config.vocab_size:
        raise RuntimeError(f"tiny vocabulary ({len(vocab)}) larger than the text encoder's")
    torch.manual_seed(seed)
    model = model_class(config).eval()
    image_processor = GroundingDinoImageProcessorPil()  # shortest edge 800, longest 1333
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    (directory / "vocab.txt").unlink()  # the processor saved its own copy
    model.save_pretrained(directory)
    swin = config.backbone_config
    return {
        "model": f"{config_class.__name__}() defaults: Swin embed_dim {swin.embed_dim}, depths {list(swin.depths)}, "
        f"window {swin.window_size}; BERT {config.text_config.num_hidden_layers} layers x "
        f"{config.text_config.hidden_size}; d_model {config.d_model}, {config.encoder_layers}+{config.decoder_layers} "
        f"layers, {config.num_queries} queries, max_text_len {config.max_text_len}",
        "input": f"shortest edge {image_processor.size['shortest_edge']}, "
        f"longest {image_processor.size['longest_edge']}",
        "tokenizer_size": len(tokenizer),
    }


def make_owlv2_base(directory: Path, seed: int) -> dict:
    """google/owlv2-base-patch16-ensemble's architecture with random weights (ViT-B/16 at 960x960)
    and the tiny CLIP BPE tokenizer (16-token queries)."""
    import torch
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    from grounded_sam2.tiny_models import _clip_bpe

    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=16)
    config = Owlv2Config(
        text_config=dict(vocab_size=49408, max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["!"]),
        vision_config=dict(image_size=OWLV2_IMAGE_SIZE, patch_size=16),
    )
    if len(vocab) > config.text_config.vocab_size:
        raise RuntimeError(f"tiny vocabulary ({len(vocab)}) larger than the text encoder's")
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    image_processor = Owlv2ImageProcessorPil(size={"height": OWLV2_IMAGE_SIZE, "width": OWLV2_IMAGE_SIZE})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    model.save_pretrained(directory)
    v, t = config.vision_config, config.text_config
    return {
        "model": f"Owlv2Config(): ViT {v.num_hidden_layers} layers x {v.hidden_size}, patch {v.patch_size} at "
        f"{v.image_size}; text {t.num_hidden_layers} layers x {t.hidden_size}, vocab {t.vocab_size}, "
        f"{t.max_position_embeddings} positions; projection {config.projection_dim}",
        "input": f"padded to a square, {OWLV2_IMAGE_SIZE}x{OWLV2_IMAGE_SIZE}, "
        f"{(v.image_size // v.patch_size) ** 2} boxes",
        "tokenizer_size": len(tokenizer),
    }


MAKERS = {
    "florence2": make_florence2_base,
    "grounding-dino": make_grounding_dino_tiny,
    "mm-grounding-dino": lambda directory, seed: make_grounding_dino_tiny(directory, seed, "mm-grounding-dino"),
    "owlv2": make_owlv2_base,
}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def run_backend(name: str, args, images) -> dict:
    """Build, save and load backend ``name``, then time ``ground`` on ``images``."""
    import torch

    from grounded_sam2.grounding.registry import build_grounder, grounder_config

    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory(prefix=f"bench_grounding_{name}_") as tmp:
        directory = Path(tmp) / name
        directory.mkdir()
        print(f"[{name}] building a random real-size model ...", flush=True)
        start = time.perf_counter()
        built = MAKERS[name](directory, args.seed)
        build_s = time.perf_counter() - start
        checkpoint_mib = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20

        start = time.perf_counter()
        grounder = build_grounder(grounder_config(f"{name}:{directory}"), device=device, bf16=cuda)
        load_s = time.perf_counter() - start
    params = sum(p.numel() for p in grounder.model.parameters())
    print(
        f"[{name}] {params / 1e6:.1f} M parameters, built in {build_s:.1f} s, checkpoint {checkpoint_mib:.0f} MiB, "
        f"loaded in {load_s:.1f} s; warm-up ...",
        flush=True,
    )

    prompts = list(PROMPTS)
    sync()
    start = time.perf_counter()
    warm = grounder.ground(images, prompts)
    sync()
    warmup_s = time.perf_counter() - start
    boxes = [len(found) for found in warm]

    seconds = []
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        grounder.ground(images, prompts)
        sync()
        seconds.append(time.perf_counter() - start)
        print(f"[{name}]   {seconds[-1]:.2f} s ({seconds[-1] / len(images):.2f} s/image)", flush=True)
    own_cpu = own_cpu_seconds() - own_before
    other_cpu = machine_busy_seconds() - busy_before - own_cpu
    total = sum(seconds)
    median = statistics.median(seconds)
    result = {
        "backend": name,
        **built,
        "parameters": params,
        "checkpoint_mib": checkpoint_mib,
        "dtype": str(grounder.model.dtype).replace("torch.", ""),
        "build_s": build_s,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "seconds": seconds,
        "median_s": median,
        "seconds_per_image": median / len(images),
        "images_per_s": len(images) / median,
        "boxes_per_image": boxes,
        "found_prompts": sorted({box.prompt for found in warm for box in found}),
        "own_cpu_cores": own_cpu / total,  # average cores this process used during the timed calls
        "other_cpu_cores": max(other_cpu, 0.0) / total,  # ... and all other processes together
    }
    print(
        f"[{name}] median {median:.2f} s for {len(images)} images: {result['seconds_per_image']:.2f} s/image, "
        f"{result['images_per_s']:.3f} images/s; boxes per image {boxes}; CPU cores used: this run "
        f"{result['own_cpu_cores']:.2f}, other processes {result['other_cpu_cores']:.2f}",
        flush=True,
    )
    del grounder
    return result


def print_table(results, count: int) -> None:
    header = (
        f"{'backend':<18} {'params M':>9} {'s/image':>8} {'images/s':>9} {'median s':>9} {'warm-up s':>9} "
        f"{'boxes/image':>11} {'own CPU':>8} {'other CPU':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        boxes = r["boxes_per_image"]
        box_text = str(boxes[0]) if len(set(boxes)) == 1 else f"{min(boxes)}-{max(boxes)}"
        print(
            f"{r['backend']:<18} {r['parameters'] / 1e6:>9.1f} {r['seconds_per_image']:>8.2f} "
            f"{r['images_per_s']:>9.3f} {r['median_s']:>9.2f} {r['warmup_s']:>9.2f} {box_text:>11} "
            f"{r['own_cpu_cores']:>8.2f} {r['other_cpu_cores']:>9.2f}"
        )
    print()
    print(f"One ground() call with {count} images of {IMAGE_HW[0]}x{IMAGE_HW[1]} and {len(PROMPTS)} prompts; median")
    print("of the timed calls, after one warm-up. own/other CPU: average CPU cores this process / all other")
    print("processes of the machine used during the timed calls. Random weights: the boxes are meaningless")
    print("(Florence-2's are forced).")
    busy = [r["backend"] for r in results if r["other_cpu_cores"] > BUSY_CORES]
    if busy:
        print(f"warning: other processes used more than {BUSY_CORES} CPU core on average while {busy} ran:")
        print("         they shared the CPU and the timings are pessimistic; rerun on a quiet machine")
    florence = [r for r in results if r["backend"] == "florence2"]
    if florence and florence[0]["found_prompts"] != ["dog", "red car"]:
        print(f"warning: Florence-2 did not give its forced answer (found {florence[0]['found_prompts']})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated backends (default {','.join(BACKENDS)})"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; cuda uses bfloat16 weights)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--images", type=int, default=4, help="images per ground() call (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per backend (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or not args.backends:
        parser.error(f"--backends: unknown {unknown}; known: {', '.join(BACKENDS)}")
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    make_torchvision_importable()
    import torch
    import transformers

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    images = [synthetic_image(*IMAGE_HW, seed=i) for i in range(args.images)]
    env = {
        "stage": "grounder.ground(images, prompts), random weights at the released model sizes",
        "backends": args.backends,
        "images": f"{args.images} synthetic {IMAGE_HW[0]}x{IMAGE_HW[1]} RGB, one ground() call",
        "prompts": list(PROMPTS),
        "repeats": args.repeats,
        "device": str(device) + (" (bfloat16 weights)" if device.type == "cuda" else " (float32)"),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": args.seed,
    }
    print("Grounding benchmark: ground() per backend at the real model sizes (random weights)")
    for key, value in env.items():
        if value is not None:
            print(f"  {key}: {value}")
    print(flush=True)

    results = [run_backend(name, args, images) for name in args.backends]
    print_table(results, args.images)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
