#!/usr/bin/env python3
"""Write RANDOM MiniGPT-4 / MiniGPT-v2 weights in the original download formats.

Why: we cannot download the real weights, but we need to measure importing and
running a 7B-size model. This script writes files whose formats, containers,
key names, shapes and dtypes are those of the files a user of the original
Vision-CAIR/MiniGPT-4 downloads, filled with random numbers (fixed seed). The
values are NEVER real weights: the model talks nonsense, but the importer, the
memory use and the speed are those of the real thing.

Layouts follow docs/minigpt4-reference.md sections 1-2 and the tiny fixtures in
shared/reference-original/{minigpt4-tiny-hi,minigptv2-tiny-hi} (same containers,
key order, pickle layout and zip archive roots, at full size).

Files written into --out DIR:

  eva_vit_g.pth            EVA ViT-g/14 state dict, every tensor fp16, top level an
                           OrderedDict (with _metadata), no prefix: cls_token,
                           pos_embed [1,257,1408] (224-px grid), patch_embed.proj.*,
                           blocks.0..39 (40 blocks: MiniGPT uses 39 and ignores the
                           last), norm.*, head.* [1024,1408] (ignored by MiniGPT).
  blip2_pretrained_flant5xxl.pth      (--arch minigpt4 only) {"model": OrderedDict},
                           fp32: query_tokens [1,32,768], ln_vision.*, Qformer.bert.*
                           (12 layers, cross-attention on even layers, query FFN
                           only, position_ids buffer), t5_proj.* [4096,768] (ignored).
  llm/                     Hugging Face LLaMA folder, fp16: config.json,
                           generation_config.json, special_tokens_map.json,
                           tokenizer_config.json, tokenizer.model and sharded
                           weights, either pytorch_model-0000N-of-0000M.bin (plain
                           dicts, torch.save) + pytorch_model.bin.index.json, or
                           model-0000N-of-0000M.safetensors + model.safetensors.index.json.
                           minigpt4: Vicuna v0 (vocab 32001, bos 0/eos 1 in the config,
                           rotary_emb.inv_freq buffers in the .bin shards);
                           minigpt4-llama2 / minigptv2: Llama-2-chat (vocab 32000).
  pretrained_minigpt4_7b.pth          (minigpt4; 13b: pretrained_minigpt4.pth)
  pretrained_minigpt4_llama2_7b.pth   (minigpt4-llama2)
  minigptv2_checkpoint.pth            (minigptv2)
                           the training runner's checkpoint {"model", "optimizer",
                           "config", "scaler", "epoch"}, fp32: llama_proj.* (+ kept
                           buffers inv_freq / position_ids; v2: LoRA r 64 / alpha 16
                           lora_A/lora_B of q_proj and v_proj in every layer, peft 0.2
                           names). Zip archive root checkpoint_<epoch> like the real files.
                           The AdamW moments are 1-element placeholders unless
                           --full-optimizer (the real files carry them at full size,
                           which is why they weigh 47 MB / 680 MB).

Tokenizer: tokenizer.model is copied from tests/data/minigpt4-tiny-hi (a tiny
384-piece SentencePiece model; --tokenizer to use another). Its ids are all
below 384, so they are valid rows of the 32000/32001-row embedding: the LLM
just has more embedding rows than the tokenizer has pieces.

Values: each tensor NAME gets its own generator, seeded with
(seed*1000003 + crc32(NAME)) % 2**62, so values do not depend on the shard
size or the LLM format. Weights, biases and embeddings are N(0, std) with std
0.02 (--std); LayerNorm/RMSNorm weights are 1 + N(0, std); position_ids and
inv_freq are built as the models build them. Activations stay finite in fp16
and bf16.

Memory: tensors are generated one at a time in 16M-element fp32 chunks; the
.safetensors shards are streamed tensor by tensor; a .bin shard is held whole
while torch.save writes it (about --shard-gb GB), so keep --shard-gb below
about half the RAM.

--size tiny writes the same layout at a tiny size (ViT width 48, 3 blocks, patch
8, 32 px; Q-Former 32 wide, 2 layers, 4 queries; LLaMA hidden 64, 2 layers,
vocab 384; LoRA r 8) in a second, so the script itself can be checked.

Usage (Debian's python3-torch; on machines where `python3` is a pyenv shim
without torch, run /usr/bin/python3):
  python3 tools/make_original_checkpoints.py --out /data/rand7b --arch minigpt4 --size 7b
  python3 tools/make_original_checkpoints.py --out /tmp/t --arch minigptv2 --size tiny
  python3 tools/make_original_checkpoints.py --out X --arch minigptv2 --size 7b --dry-run
"""

import argparse
import collections
import json
import math
import os
import shutil
import struct
import sys
import time
import zlib

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("make_original_checkpoints.py needs torch (Debian: apt-get install python3-torch; "
             "if `python3` is a pyenv shim, run /usr/bin/python3)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOKENIZER = os.path.join(REPO, "tests", "data", "minigpt4-tiny-hi", "tokenizer.model")
CHUNK = 1 << 24  # elements generated per fp32 chunk

# ----------------------------------------------------------------------------------------------
# Sizes

VIT = {
    # width, blocks in the file (the model uses blocks-1), mlp hidden, patch, image, head out
    "full": dict(width=1408, blocks=40, mlp=6144, patch=14, image=224, head_out=1024),
    "tiny": dict(width=48, blocks=3, mlp=96, patch=8, image=32, head_out=32),
}
QFORMER = {
    "full": dict(hidden=768, layers=12, inter=3072, queries=32, cross_freq=2, max_pos=512, t5_dim=4096),
    "tiny": dict(hidden=32, layers=2, inter=64, queries=4, cross_freq=2, max_pos=512, t5_dim=64),
}
LLAMA = {
    "7b": dict(hidden=4096, layers=32, heads=32, inter=11008),
    "13b": dict(hidden=5120, layers=40, heads=40, inter=13824),
    "tiny": dict(hidden=64, layers=2, heads=4, inter=128),
}
LORA = {"full": dict(r=64, alpha=16), "tiny": dict(r=8, alpha=16)}


def llm_config(arch, size):
    d = dict(LLAMA[size])
    tiny = size == "tiny"
    if arch == "minigpt4":  # Vicuna v0
        d.update(kind="vicuna", vocab=384 if tiny else 32001, eps=1e-6, max_pos=256 if tiny else 2048)
    else:  # Llama-2-chat
        d.update(kind="llama2", vocab=384 if tiny else 32000, eps=1e-5, max_pos=256 if tiny else 4096)
    d["head_dim"] = d["hidden"] // d["heads"]
    return d


# ----------------------------------------------------------------------------------------------
# Tensor specs: (name, shape, dtype, kind). kind: "w" N(0,std), "norm" 1+N(0,std),
# "posids" arange, ("invfreq", head_dim), "zero".

def seed_for(seed, name):
    return (seed * 1000003 + zlib.crc32(name.encode())) % 2 ** 62


def make_tensor(name, shape, dtype, kind, seed, std):
    if kind == "posids":
        return torch.arange(shape[-1], dtype=torch.int64).reshape(shape)
    if isinstance(kind, tuple) and kind[0] == "invfreq":
        hd = kind[1]
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        return inv.to(dtype)
    if kind == "zero":
        return torch.zeros(shape, dtype=dtype)
    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1)
    g = torch.Generator().manual_seed(seed_for(seed, name))
    n = flat.numel()
    buf = torch.empty(min(n, CHUNK), dtype=torch.float32)
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        b = buf[: e - s]
        b.normal_(0.0, std, generator=g)
        if kind == "norm":
            b.add_(1.0)
        flat[s:e].copy_(b)
    return out


def numel(shape):
    return math.prod(shape) if shape else 1


def nbytes(spec):
    _, shape, dtype, _ = spec
    return numel(shape) * torch.empty((), dtype=dtype).element_size()


def vit_specs(vsize):
    v = VIT[vsize]
    w, m, p = v["width"], v["mlp"], v["patch"]
    grid = v["image"] // p
    h = torch.float16
    s = [("cls_token", [1, 1, w], h, "w"),
         ("pos_embed", [1, grid * grid + 1, w], h, "w"),
         ("patch_embed.proj.weight", [w, 3, p, p], h, "w"),
         ("patch_embed.proj.bias", [w], h, "w")]
    for i in range(v["blocks"]):
        b = "blocks.%d." % i
        s += [(b + "norm1.weight", [w], h, "norm"), (b + "norm1.bias", [w], h, "w"),
              (b + "attn.q_bias", [w], h, "w"), (b + "attn.v_bias", [w], h, "w"),
              (b + "attn.qkv.weight", [3 * w, w], h, "w"),
              (b + "attn.proj.weight", [w, w], h, "w"), (b + "attn.proj.bias", [w], h, "w"),
              (b + "norm2.weight", [w], h, "norm"), (b + "norm2.bias", [w], h, "w"),
              (b + "mlp.fc1.weight", [m, w], h, "w"), (b + "mlp.fc1.bias", [m], h, "w"),
              (b + "mlp.fc2.weight", [w, m], h, "w"), (b + "mlp.fc2.bias", [w], h, "w")]
    s += [("norm.weight", [w], h, "norm"), ("norm.bias", [w], h, "w"),
          ("head.weight", [v["head_out"], w], h, "w"), ("head.bias", [v["head_out"]], h, "w")]
    return s


def vit_metadata(vsize):
    md = [""] + ["patch_embed", "patch_embed.proj", "pos_drop", "blocks"]
    for i in range(VIT[vsize]["blocks"]):
        b = "blocks.%d" % i
        md += [b] + [b + "." + x for x in (
            "norm1", "attn", "attn.qkv", "attn.attn_drop", "attn.proj", "attn.proj_drop", "drop_path",
            "norm2", "mlp", "mlp.fc1", "mlp.act", "mlp.fc2", "mlp.drop")]
    md += ["norm", "head"]
    return md


def blip2_specs(vsize):
    q, vw = QFORMER[vsize], VIT[vsize]["width"]
    H, I = q["hidden"], q["inter"]
    f = torch.float32
    s = [("query_tokens", [1, q["queries"], H], f, "w"),
         ("ln_vision.weight", [vw], f, "norm"), ("ln_vision.bias", [vw], f, "w"),
         ("Qformer.bert.embeddings.position_ids", [1, q["max_pos"]], torch.int64, "posids"),
         ("Qformer.bert.embeddings.LayerNorm.weight", [H], f, "norm"),
         ("Qformer.bert.embeddings.LayerNorm.bias", [H], f, "w")]

    def lin(prefix, o, i):
        return [(prefix + ".weight", [o, i], f, "w"), (prefix + ".bias", [o], f, "w")]

    def ln(prefix):
        return [(prefix + ".weight", [H], f, "norm"), (prefix + ".bias", [H], f, "w")]

    for n in range(q["layers"]):
        L = "Qformer.bert.encoder.layer.%d." % n
        s += lin(L + "attention.self.query", H, H) + lin(L + "attention.self.key", H, H)
        s += lin(L + "attention.self.value", H, H) + lin(L + "attention.output.dense", H, H)
        s += ln(L + "attention.output.LayerNorm")
        if n % q["cross_freq"] == 0:
            s += lin(L + "crossattention.self.query", H, H)
            s += lin(L + "crossattention.self.key", H, vw) + lin(L + "crossattention.self.value", H, vw)
            s += lin(L + "crossattention.output.dense", H, H) + ln(L + "crossattention.output.LayerNorm")
        s += lin(L + "intermediate_query.dense", I, H) + lin(L + "output_query.dense", H, I)
        s += ln(L + "output_query.LayerNorm")
    s += lin("t5_proj", q["t5_dim"], H)
    return s


def llm_specs(cfg, with_inv_freq):
    h = torch.float16
    H, I, V = cfg["hidden"], cfg["inter"], cfg["vocab"]
    s = [("model.embed_tokens.weight", [V, H], h, "w")]
    for n in range(cfg["layers"]):
        L = "model.layers.%d." % n
        s += [(L + "self_attn.%s_proj.weight" % x, [H, H], h, "w") for x in "qkvo"]
        if with_inv_freq:
            s += [(L + "self_attn.rotary_emb.inv_freq", [cfg["head_dim"] // 2], h, ("invfreq", cfg["head_dim"]))]
        if cfg["kind"] == "vicuna":  # transformers 4.28 LlamaMLP order
            s += [(L + "mlp.gate_proj.weight", [I, H], h, "w"), (L + "mlp.down_proj.weight", [H, I], h, "w"),
                  (L + "mlp.up_proj.weight", [I, H], h, "w")]
        else:  # transformers >= 4.31
            s += [(L + "mlp.gate_proj.weight", [I, H], h, "w"), (L + "mlp.up_proj.weight", [I, H], h, "w"),
                  (L + "mlp.down_proj.weight", [H, I], h, "w")]
        s += [(L + "input_layernorm.weight", [H], h, "norm"), (L + "post_attention_layernorm.weight", [H], h, "norm")]
    s += [("model.norm.weight", [H], h, "norm"), ("lm_head.weight", [V, H], h, "w")]
    return s


def ckpt_specs(arch, size, cfg, v2_ln_vision):
    """The MiniGPT checkpoint's "model" entries (trainable params + buffers), in state-dict order."""
    vsize = "tiny" if size == "tiny" else "full"
    f = torch.float32
    H, hd = cfg["hidden"], cfg["head_dim"]
    s = []
    if arch == "minigpt4":
        s.append(("Qformer.bert.embeddings.position_ids", [1, QFORMER[vsize]["max_pos"]], torch.int64, "posids"))
        for n in range(cfg["layers"]):
            s.append(("llama_model.model.layers.%d.self_attn.rotary_emb.inv_freq" % n, [hd // 2], f, ("invfreq", hd)))
        proj_in = QFORMER[vsize]["hidden"]
    elif arch == "minigpt4-llama2":
        for n in range(cfg["layers"]):
            s.append(("llama_model.model.layers.%d.self_attn.rotary_emb.inv_freq" % n, [hd // 2], f, ("invfreq", hd)))
        proj_in = 4 * VIT[vsize]["width"]
    else:
        r = LORA[vsize]["r"]
        for n in range(cfg["layers"]):
            L = "llama_model.base_model.model.model.layers.%d.self_attn." % n
            for x in ("q", "v"):
                s += [(L + "%s_proj.lora_A.weight" % x, [r, H], f, "w"), (L + "%s_proj.lora_B.weight" % x, [H, r], f, "w")]
            s.append((L + "rotary_emb.inv_freq", [hd // 2], f, ("invfreq", hd)))
        if v2_ln_vision:
            vw = VIT[vsize]["width"]
            s += [("ln_vision.weight", [vw], f, "norm"), ("ln_vision.bias", [vw], f, "w")]
        proj_in = 4 * VIT[vsize]["width"]
    s += [("llama_proj.weight", [H, proj_in], f, "w"), ("llama_proj.bias", [H], f, "w")]
    return s


def trainable(name):
    return name.startswith("llama_proj.") or ".lora_" in name


# ----------------------------------------------------------------------------------------------
# Container contents that mirror the fixtures

def vicuna_files(cfg, dtype_name):
    config = collections.OrderedDict([
        ("architectures", ["LlamaForCausalLM"]), ("bos_token_id", 0), ("eos_token_id", 1),
        ("hidden_act", "silu"), ("hidden_size", cfg["hidden"]), ("initializer_range", 0.02),
        ("intermediate_size", cfg["inter"]), ("max_position_embeddings", cfg["max_pos"]),
        ("max_sequence_length", cfg["max_pos"]), ("model_type", "llama"),
        ("num_attention_heads", cfg["heads"]), ("num_hidden_layers", cfg["layers"]), ("pad_token_id", -1),
        ("rms_norm_eps", cfg["eps"]), ("tie_word_embeddings", False), ("torch_dtype", dtype_name),
        ("transformers_version", "4.28.0.dev0"), ("use_cache", True), ("vocab_size", cfg["vocab"])])
    gen = collections.OrderedDict([("_from_model_config", True), ("bos_token_id", 0), ("eos_token_id", 1),
                                   ("pad_token_id", -1), ("transformers_version", "4.28.0.dev0")])
    tok = lambda c: collections.OrderedDict([("content", c), ("lstrip", False), ("normalized", True),
                                             ("rstrip", False), ("single_word", False)])
    added = lambda c: collections.OrderedDict([("__type", "AddedToken")] + list(tok(c).items()))
    special = collections.OrderedDict([("bos_token", tok("<s>")), ("eos_token", tok("</s>")), ("unk_token", tok("<unk>"))])
    tcfg = collections.OrderedDict([
        ("add_bos_token", True), ("add_eos_token", False), ("bos_token", added("<s>")),
        ("clean_up_tokenization_spaces", False), ("eos_token", added("</s>")), ("model_max_length", 2048),
        ("pad_token", None), ("sp_model_kwargs", {}), ("tokenizer_class", "LlamaTokenizer"),
        ("unk_token", added("<unk>"))])
    return config, gen, special, tcfg


def llama2_files(cfg, dtype_name):
    config = collections.OrderedDict([
        ("architectures", ["LlamaForCausalLM"]), ("bos_token_id", 1), ("eos_token_id", 2),
        ("hidden_act", "silu"), ("hidden_size", cfg["hidden"]), ("initializer_range", 0.02),
        ("intermediate_size", cfg["inter"]), ("max_position_embeddings", cfg["max_pos"]),
        ("model_type", "llama"), ("num_attention_heads", cfg["heads"]), ("num_hidden_layers", cfg["layers"]),
        ("num_key_value_heads", cfg["heads"]), ("pad_token_id", 0), ("pretraining_tp", 1),
        ("rms_norm_eps", cfg["eps"]), ("rope_scaling", None), ("rope_theta", 10000.0),
        ("tie_word_embeddings", False), ("torch_dtype", dtype_name), ("transformers_version", "4.32.0.dev0"),
        ("use_cache", True), ("vocab_size", cfg["vocab"])])
    gen = collections.OrderedDict([("bos_token_id", 1), ("do_sample", True), ("eos_token_id", 2),
                                   ("max_length", 4096), ("pad_token_id", 0), ("temperature", 0.6),
                                   ("top_p", 0.9), ("transformers_version", "4.32.0.dev0")])
    tok = lambda c: collections.OrderedDict([("content", c), ("lstrip", False), ("normalized", False),
                                             ("rstrip", False), ("single_word", False)])
    added = lambda c: collections.OrderedDict([("__type", "AddedToken")] + list(tok(c).items()))
    special = collections.OrderedDict([("bos_token", tok("<s>")), ("eos_token", tok("</s>")), ("unk_token", tok("<unk>"))])
    tcfg = collections.OrderedDict([
        ("add_bos_token", True), ("add_eos_token", False), ("bos_token", added("<s>")),
        ("clean_up_tokenization_spaces", False), ("eos_token", added("</s>")), ("legacy", False),
        ("model_max_length", 1000000000000000019884624838656), ("pad_token", None), ("padding_side", "right"),
        ("sp_model_kwargs", {}), ("tokenizer_class", "LlamaTokenizer"), ("unk_token", added("<unk>"))])
    return config, gen, special, tcfg


def run_config(arch, size):
    """The training run's config as MiniGPT's runner saves it (structure of the tiny fixtures)."""
    tiny = size == "tiny"
    img = VIT["tiny" if tiny else "full"]["image"]
    vis = lambda name, s: {"name": name, "image_size": s}
    if arch in ("minigpt4", "minigpt4-llama2"):
        run = collections.OrderedDict([
            ("task", "image_text_pretrain"), ("lr_sched", "linear_warmup_cosine_lr"), ("init_lr", 3e-05),
            ("min_lr", 1e-05), ("warmup_lr", 1e-06), ("weight_decay", 0.05), ("max_epoch", 5),
            ("iters_per_epoch", 200), ("batch_size_train", 12), ("batch_size_eval", 12), ("num_workers", 4),
            ("warmup_steps", 200), ("seed", 42), ("output_dir", "output/minigpt4_stage2_finetune"), ("amp", True),
            ("resume_ckpt_path", None), ("evaluate", False), ("train_splits", ["train"]), ("device", "cuda"),
            ("world_size", 1), ("dist_url", "env://"), ("distributed", True), ("rank", 0), ("gpu", 0),
            ("dist_backend", "nccl")])
        if arch == "minigpt4":
            model = collections.OrderedDict([
                ("arch", "mini_gpt4"), ("image_size", img), ("drop_path_rate", 0), ("use_grad_checkpoint", False),
                ("vit_precision", "fp16"), ("freeze_vit", True), ("freeze_qformer", True),
                ("num_query_token", QFORMER["tiny" if tiny else "full"]["queries"]),
                ("llama_model", "/path/to/vicuna/weights/"), ("prompt", ""), ("model_type", "pretrain_vicuna"),
                ("max_txt_len", 160), ("end_sym", "###"), ("prompt_path", "prompts/alignment.txt"),
                ("prompt_template", "###Human: {} ###Assistant: "), ("ckpt", "/path/to/stage1/checkpoint/")])
        else:
            model = collections.OrderedDict([
                ("arch", "minigpt4"), ("model_type", "pretrain_llama2"), ("image_size", img),
                ("drop_path_rate", 0), ("use_grad_checkpoint", False), ("vit_precision", "fp16"),
                ("freeze_vit", True), ("has_qformer", False), ("llama_model", "/path/to/llama2/weight"),
                ("prompt", ""), ("max_txt_len", 160), ("end_sym", "</s>"), ("prompt_path", "prompts/alignment.txt"),
                ("prompt_template", "[INST] {} [/INST] "), ("ckpt", "/path/to/stage1/checkpoint/")])
        datasets = {"cc_sbu_align": {"data_type": "images", "build_info": {"storage": "/path/to/cc_sbu_align/"},
                                     "vis_processor": {"train": vis("blip2_image_train", 224)},
                                     "text_processor": {"train": {"name": "blip_caption"}}}}
        pre = 224
        lr = 1.1909830056250527e-05
    else:
        img2 = 2 * img  # MiniGPT-v2 runs at 448 px (tiny: 64) and interpolates the 224-px pos_embed
        run = collections.OrderedDict([
            ("task", "image_text_pretrain"), ("lr_sched", "linear_warmup_cosine_lr"), ("init_lr", 1e-05),
            ("min_lr", 1e-06), ("warmup_lr", 1e-06), ("weight_decay", 0.05), ("max_epoch", 50),
            ("iters_per_epoch", 1000), ("num_workers", 6), ("warmup_steps", 1000), ("seed", 42),
            ("output_dir", "/path/to/save_checkpoint"), ("amp", True), ("resume_ckpt_path", None),
            ("evaluate", False), ("train_splits", ["train"]), ("device", "cuda"), ("world_size", 1),
            ("dist_url", "env://"), ("distributed", True), ("rank", 0), ("gpu", 0), ("dist_backend", "nccl"),
            ("wandb_log", True), ("job_name", "minigptv2_finetune")])
        lora = LORA["tiny" if tiny else "full"]
        model = collections.OrderedDict([
            ("arch", "minigpt_v2"), ("model_type", "pretrain"), ("max_txt_len", 1024), ("end_sym", "</s>"),
            ("ckpt", "/path/to/pretrained_checkpoint"), ("use_grad_checkpoint", True), ("chat_template", True),
            ("lora_r", lora["r"]), ("lora_alpha", lora["alpha"]), ("image_size", img2), ("drop_path_rate", 0),
            ("vit_precision", "fp16"), ("freeze_vit", True), ("llama_model", "/path/to/llama_checkpoint"),
            ("prompt", "")])
        ds = lambda bi, bs, sr: {"batch_size": bs, "vis_processor": {"train": vis("blip2_image_train", 448)},
                                 "text_processor": {"train": {"name": "blip_caption"}}, "sample_ratio": sr,
                                 "data_type": "images", "build_info": bi}
        datasets = {"multitask_conversation": ds({"image_path": "/path/to/image/",
                                                  "ann_path": "/path/to/multitask_conversation.json"}, 2, 50),
                    "refvg": ds({"data_dir": "/path/to/filtered_refcoco"}, 6, 40)}
        pre = 448
        lr = 1.008879722072778e-06
    config = {"run": run, "model": model,
              "preprocess": {"vis_processor": {"train": vis("blip2_image_train", pre), "eval": vis("blip2_image_eval", pre)},
                             "text_processor": {"train": {"name": "blip_caption"}, "eval": {"name": "blip_caption"}}},
              "datasets": datasets}
    return config, lr


# ----------------------------------------------------------------------------------------------
# Writers

def fmt_bytes(n):
    return "%.3f GB" % (n / 1e9) if n >= 1e8 else "%.3f MB" % (n / 1e6)


class Progress:
    def __init__(self):
        self.t0 = time.time()
        self.total = 0

    def file(self, path, nb, t_file):
        self.total += nb
        print("  wrote %-44s %11s in %6.1f s   (total %11s, %6.1f s)" % (
            os.path.relpath(path, ARGS.out), fmt_bytes(nb), time.time() - t_file, fmt_bytes(self.total),
            time.time() - self.t0), flush=True)


def build_state(specs, seed, std, ordered=True, metadata=None):
    sd = collections.OrderedDict() if ordered else {}
    for name, shape, dtype, kind in specs:
        sd[name] = make_tensor(name, shape, dtype, kind, seed, std)
    if metadata is not None:
        sd._metadata = collections.OrderedDict((m, {"version": 1}) for m in metadata)
    return sd


def prefixes_metadata(names, extra=()):
    seen = collections.OrderedDict([("", None)])
    for n in names:
        parts = n.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            seen.setdefault(".".join(parts[:i]), None)
    for e in extra:
        seen.setdefault(e, None)
    return list(seen)


def torch_save(obj, path, archive_root=None):
    """torch.save (zip, protocol 2). The zip's root folder is the stem of the name saved under, so
    write under archive_root + '.pth' and rename when the real file was renamed after saving."""
    if archive_root is None:
        torch.save(obj, path)
        return
    tmp = os.path.join(os.path.dirname(path), archive_root + ".pth")
    if os.path.exists(tmp) and os.path.abspath(tmp) != os.path.abspath(path):
        sys.exit("refusing to overwrite %s (used as a temporary name)" % tmp)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_safetensors(path, specs, seed, std):
    st_dtype = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}
    specs = sorted(specs, key=lambda s: s[0])
    header = collections.OrderedDict([("__metadata__", collections.OrderedDict([("format", "pt")]))])
    off = 0
    for sp in specs:
        nb = nbytes(sp)
        header[sp[0]] = collections.OrderedDict([("dtype", st_dtype[sp[2]]), ("shape", list(sp[1])),
                                                 ("data_offsets", [off, off + nb])])
        off += nb
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, dtype, kind in specs:
            t = make_tensor(name, shape, dtype, kind, seed, std).contiguous()
            f.write(memoryview(t.view(-1).view(torch.uint8).numpy()))
            del t
    return 8 + len(hb) + off


def plan_shards(specs, max_bytes):
    """transformers' shard_checkpoint: start a new shard when the next tensor would overflow."""
    shards, cur, cur_b = [], [], 0
    for sp in specs:
        nb = nbytes(sp)
        if cur and cur_b + nb > max_bytes:
            shards.append(cur)
            cur, cur_b = [], 0
        cur.append(sp)
        cur_b += nb
    if cur:
        shards.append(cur)
    return shards


def write_json(path, obj, sort_keys=False):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


# ----------------------------------------------------------------------------------------------

def file_plan(args):
    """[(relative path, kind, specs or None)] without generating anything."""
    vsize = "tiny" if args.size == "tiny" else "full"
    cfg = llm_config(args.arch, args.size)
    plan = [("eva_vit_g.pth", "eva", vit_specs(vsize))]
    if args.arch == "minigpt4":
        plan.append(("blip2_pretrained_flant5xxl.pth", "blip2", blip2_specs(vsize)))
    with_inv = args.arch == "minigpt4" and args.llm_format == "bin"
    lspecs = llm_specs(cfg, with_inv)
    total = sum(nbytes(s) for s in lspecs)
    if args.shard_gb is not None:
        max_b = int(args.shard_gb * 1e9)
    elif args.size == "tiny":  # two shards, like the tiny fixtures
        max_b = total // 2
        while len(plan_shards(lspecs, max_b)) > 2:
            max_b += max(1, total // 100)
    else:
        max_b = int(10e9)
    shards = plan_shards(lspecs, max_b)
    M = len(shards)
    for i, sh in enumerate(shards):
        if args.llm_format == "bin":
            name = "pytorch_model-%05d-of-%05d.bin" % (i + 1, M)
        else:
            name = "model-%05d-of-%05d.safetensors" % (i + 1, M)
        plan.append(("llm/" + name, "shard", sh))
    if args.arch == "minigpt4":
        ck = "pretrained_minigpt4.pth" if args.size == "13b" else "pretrained_minigpt4_7b.pth"
    elif args.arch == "minigpt4-llama2":
        ck = "pretrained_minigpt4_llama2_%s.pth" % ("13b" if args.size == "13b" else "7b")
    else:
        ck = "minigptv2_checkpoint.pth"
    plan.append((ck, "ckpt", ckpt_specs(args.arch, args.size, cfg, args.v2_ln_vision)))
    return plan, cfg, lspecs, total


def main():
    global ARGS
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Random values only; never real weights.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The LLM folder's tokenizer.model is a tiny 384-piece model (tests/data/minigpt4-tiny-hi): "
               "every id it produces is a valid row of the 32000/32001-row embedding, the LLM simply has more "
               "rows than the tokenizer has pieces. See the module docstring for the full layout.")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--arch", required=True, choices=["minigpt4", "minigpt4-llama2", "minigptv2"])
    ap.add_argument("--size", required=True, choices=["tiny", "7b", "13b"])
    ap.add_argument("--llm-format", choices=["bin", "safetensors"],
                    help="LLM shards (default: bin for minigpt4 = Vicuna v0, safetensors for Llama-2)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--std", type=float, default=0.02, help="std of the random values (default 0.02)")
    ap.add_argument("--shard-gb", type=float, default=None,
                    help="max LLM shard size in GB (1e9 bytes) like save_pretrained's max_shard_size "
                         "(default 10; tiny: half the LLM, i.e. 2 shards)")
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer.model to copy (default: %(default)s)")
    ap.add_argument("--only", default="eva,blip2,llm,ckpt",
                    help="comma list of parts to write: eva,blip2,llm,ckpt (default all)")
    ap.add_argument("--full-optimizer", action="store_true",
                    help="write the AdamW moments at full size (fp32, small random values), as the real checkpoints "
                         "have them (47 MB / 680 MB files); default: 1-element placeholders")
    ap.add_argument("--v2-ln-vision", action="store_true",
                    help="minigptv2: also put ln_vision.* into the checkpoint, as the tiny fixture does "
                         "(the real file has none)")
    ap.add_argument("--dry-run", action="store_true", help="print the files and sizes, write nothing")
    args = ap.parse_args()
    ARGS = args
    if args.llm_format is None:
        args.llm_format = "bin" if args.arch == "minigpt4" else "safetensors"
    only = set(x.strip() for x in args.only.split(",") if x.strip())
    bad = only - {"eva", "blip2", "llm", "ckpt"}
    if bad:
        ap.error("unknown --only parts: %s" % ",".join(sorted(bad)))
    if args.size == "13b" and args.arch != "minigpt4":
        print("note: the original %s exists at 7B only; writing a 13B-shaped variant anyway" % args.arch)

    plan, cfg, lspecs, llm_total = file_plan(args)
    part_of = {"eva": "eva", "blip2": "blip2", "shard": "llm", "ckpt": "ckpt"}
    plan = [p for p in plan if part_of[p[1]] in only]
    est = sum(sum(nbytes(s) for s in p[2]) for p in plan)

    print("make_original_checkpoints: arch %s, size %s, LLM %s (%s, hidden %d, %d layers, vocab %d), seed %d, "
          "std %g -> %s" % (args.arch, args.size, args.llm_format, cfg["kind"], cfg["hidden"], cfg["layers"],
                            cfg["vocab"], args.seed, args.std, args.out))
    for rel, kind, specs in plan:
        print("  %-44s %6d tensors %11s" % (rel, len(specs), fmt_bytes(sum(nbytes(s) for s in specs))))
    print("  total tensor data %s (the files add a few KB of headers)" % fmt_bytes(est))
    if args.dry_run:
        return

    os.makedirs(args.out, exist_ok=True)
    free = shutil.disk_usage(args.out).free
    if free < est * 1.01 + 1e7:
        sys.exit("not enough disk space in %s: %.2f GB free, %.2f GB needed" % (args.out, free / 1e9, est / 1e9))
    if "llm" in only and not os.path.isfile(args.tokenizer):
        sys.exit("tokenizer not found: %s (use --tokenizer)" % args.tokenizer)

    llm_dir = os.path.join(args.out, "llm")
    if "llm" in only and os.path.isdir(llm_dir):
        planned = {os.path.basename(p[0]) for p in plan if p[1] == "shard"}
        stale = [f for f in os.listdir(llm_dir) if (f.startswith("pytorch_model") or f.startswith("model-") or
                                                     f.startswith("model.safetensors")) and f not in planned
                 and not f.endswith(".index.json")]
        if stale:
            print("warning: %s holds other shard files that this run does not write: %s" % (llm_dir, ", ".join(sorted(stale))))

    prog = Progress()
    vsize = "tiny" if args.size == "tiny" else "full"
    weight_map = {}
    for rel, kind, specs in plan:
        path = os.path.join(args.out, rel)
        t = time.time()
        if kind == "eva":
            sd = build_state(specs, args.seed, args.std, metadata=vit_metadata(vsize))
            torch_save(sd, path)
            del sd
        elif kind == "blip2":
            names = [s[0] for s in specs]
            sd = build_state(specs, args.seed, args.std,
                             metadata=prefixes_metadata(names, extra=("visual_encoder", "t5_model")))
            torch_save({"model": sd}, path)
            del sd
        elif kind == "shard":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if args.llm_format == "bin":
                sd = build_state(specs, args.seed, args.std, ordered=False)  # HF shards are plain dicts
                torch_save(sd, path)
                del sd
            else:
                write_safetensors(path, specs, args.seed, args.std)
            for s in specs:
                weight_map[s[0]] = os.path.basename(path)
        elif kind == "ckpt":
            write_ckpt(path, args, specs)
        prog.file(path, os.path.getsize(path), t)

    if "llm" in only:
        llm = os.path.join(args.out, "llm")
        index = {"metadata": {"total_size": llm_total},
                 "weight_map": weight_map}
        idx_name = "pytorch_model.bin.index.json" if args.llm_format == "bin" else "model.safetensors.index.json"
        write_json(os.path.join(llm, idx_name), index, sort_keys=True)
        files = vicuna_files if cfg["kind"] == "vicuna" else llama2_files
        config, gen, special, tcfg = files(cfg, "float16")
        write_json(os.path.join(llm, "config.json"), config, sort_keys=True)
        write_json(os.path.join(llm, "generation_config.json"), gen, sort_keys=True)
        write_json(os.path.join(llm, "special_tokens_map.json"), special)
        write_json(os.path.join(llm, "tokenizer_config.json"), tcfg)
        shutil.copyfile(args.tokenizer, os.path.join(llm, "tokenizer.model"))
        print("  wrote llm/%s, config.json, generation_config.json, special_tokens_map.json, "
              "tokenizer_config.json, tokenizer.model" % idx_name)
    print("done: %s in %.1f s" % (fmt_bytes(prog.total), time.time() - prog.t0))


def write_ckpt(path, args, specs):
    names = [s[0] for s in specs]
    sd = build_state(specs, args.seed, args.std, metadata=prefixes_metadata(names))
    config, lr = run_config(args.arch, args.size)
    params = [n for n in names if trainable(n)]
    epoch = 49 if args.arch == "minigptv2" else 4
    step = float(50000 if args.arch == "minigptv2" else 1000)
    state = {}
    for i, n in enumerate(params):
        if args.full_optimizer:
            shape = list(sd[n].shape)
            m = make_tensor("exp_avg." + n, shape, torch.float32, "w", args.seed, 1e-4)
            v = make_tensor("exp_avg_sq." + n, shape, torch.float32, "w", args.seed, 1e-9).abs_()
        else:  # placeholders: the importer must ignore "optimizer"
            m, v = torch.zeros(1), torch.zeros(1)
        state[i] = {"step": torch.tensor(step), "exp_avg": m, "exp_avg_sq": v}
    group = lambda wd, idx: {"weight_decay": wd, "lr": lr, "betas": (0.9, 0.999), "eps": 1e-08, "amsgrad": False,
                             "foreach": None, "maximize": False, "capturable": False, "params": idx}
    decay = [i for i, n in enumerate(params) if sd[n].dim() >= 2 and not n.endswith(".bias")]
    no_decay = [i for i in range(len(params)) if i not in decay]
    ckpt = {"model": sd,
            "optimizer": {"state": state, "param_groups": [group(0.05, decay), group(0, no_decay)]},
            "config": config,
            "scaler": {"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 1187},
            "epoch": epoch}
    torch_save(ckpt, path, archive_root="checkpoint_%d" % epoch)


ARGS = None

if __name__ == "__main__":
    main()
