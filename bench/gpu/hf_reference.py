"""Writes a random-weight HuggingFace model and its reference logits for keg's GPU comparison.

Run on a machine with torch + transformers (the lent GPU machine has them; ../shared does not travel
there, so the model is made here):

    python3 bench/gpu/hf_reference.py OUT_DIR [--arch llama|gpt2] [--hidden 2048] [--layers 16] ...

OUT_DIR gets config.json + model.safetensors (save_pretrained, float32) and reference.json: for a few
token-id prompts, the float32 logits of the last position (transformers' eager forward, on CUDA when
available) and the time per forward of transformers in float32 and float16 (after warm-up).
bench/gpu/hf_compare.ts then loads OUT_DIR in keg, checks the logits and times keg's forward.
"""
import argparse
import json
import os
import time

import torch
import transformers


def build(args):
    if args.arch == "llama":
        cfg = transformers.LlamaConfig(
            hidden_size=args.hidden, intermediate_size=args.inter, num_hidden_layers=args.layers,
            num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
            max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)
        return transformers.LlamaForCausalLM(cfg)
    cfg = transformers.GPT2Config(n_embd=args.hidden, n_layer=args.layers, n_head=args.heads,
                                  vocab_size=args.vocab, n_positions=1024)
    return transformers.GPT2LMHeadModel(cfg)


def timed(model, ids, reps):
    with torch.no_grad():
        model(ids)
        if ids.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            model(ids)
        if ids.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--inter", type=int, default=5504)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv_heads", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build(args).eval()
    # scale the random init down so logits stay O(1) (keeps the comparison meaningful in f16)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(0.5)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    m32 = model.to(dev)
    with torch.no_grad():
        logits = m32(ids.to(dev)).logits[:, -1].float().cpu()
    t32 = timed(m32, ids.to(dev), args.reps)
    t16 = timed(m32.half(), ids.to(dev), args.reps) if dev == "cuda" else None
    ref = {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "input_ids": ids.tolist(), "last_logits": logits.tolist(),
        "hf_forward_s": {"f32": t32, "f16": t16}, "tokens": args.batch * args.seq,
    }
    json.dump(ref, open(os.path.join(args.out, "reference.json"), "w"))
    print(json.dumps({k: v for k, v in ref.items() if k not in ("input_ids", "last_logits")}))


if __name__ == "__main__":
    main()
