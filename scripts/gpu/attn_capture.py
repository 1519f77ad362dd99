"""GPU host: vLLM 0.25's own attention tensors for an FP8-KV export, to check the eval's
emulation of the FP8 KV-cache path kernel by kernel (issue #14).

One in-process engine (enforce_eager, so every call runs in eager PyTorch) scores a few of the
eval's held-out text samples, one at a time; for the chosen text layers it records, per sample:
- `q_in`, `k_in`, `v_in`: the BF16 query, key and value the Attention layer receives (after RoPE);
- `q_fa`: the query FlashAttention receives (FP8 bytes when the layer quantizes it);
- `k_cache`, `v_cache`: the bytes the cache-write kernel stored for the sample's tokens;
- `out`: FlashAttention's output (BF16);
and, per layer, the scales vLLM holds (`_q_scale`, `_k_scale`, `_v_scale`) and the split count.
Held against vlmquant.eval.fp8's fake_fp8 and attention_kernels' fa3_fp8_attention on CPU (by
hand so far: no command reads these files yet).
    usage: python3 scripts/gpu/attn_capture.py --model EXPORT --calib CAPTIONS --out F.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the model lives in this process
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LIMIT = 15 * 2**20  # bytes of tensors per file (the device tool returns files up to 16 MiB)


def as_bytes(t):
    """FP8 tensors as their uint8 bytes; others as they are."""
    import torch

    return t.view(torch.uint8) if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else t


def attach(model, layers: list[int], store: dict, state: dict) -> dict:
    """Wraps the chosen text layers' Attention modules and their FlashAttention impl."""
    info = {}
    attn = [
        (name, m)
        for name, m in model.named_modules()
        if type(m).__name__ == "Attention" and hasattr(m, "impl") and "visual" not in name
    ]
    for index, (name, layer) in enumerate(attn):
        if index not in layers:
            continue
        impl = layer.impl
        info[index] = {
            "module": name,
            "impl": type(impl).__name__,
            "fa_version": getattr(impl, "vllm_flash_attn_version", None),
            "kv_cache_dtype": layer.kv_cache_dtype,
            "query_quant": layer.query_quant is not None,
            "supports_quant_query_input": bool(getattr(impl, "supports_quant_query_input", False)),
            "q_scale": float(layer._q_scale.float()),
            "k_scale": float(layer._k_scale.float()),
            "v_scale": float(layer._v_scale.float()),
            "k_scale_dtype": str(layer._k_scale.dtype),
            "scale": float(impl.scale),
        }

        def key(index=index):
            return f"p{state['sample']}.l{index}"

        def pre_hook(module, args, kwargs, key=key):
            if state["sample"] is not None and f"{key()}.q_in" not in store:
                q, k, v = (args + (None, None, None))[:3]
                q = kwargs.get("query", q)
                k, v = kwargs.get("key", k), kwargs.get("value", v)
                store[f"{key()}.q_in"] = q.detach().cpu().clone()
                store[f"{key()}.k_in"] = k.detach().cpu().clone()
                store[f"{key()}.v_in"] = v.detach().cpu().clone()

        layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
        update, forward = impl.do_kv_cache_update, impl.forward

        def do_kv_cache_update(layer, k, v, kv_cache, slot_mapping, key=key, update=update):
            update(layer, k, v, kv_cache, slot_mapping)
            if state["sample"] is not None and f"{key()}.slots" not in store:
                store[f"{key()}.slots"] = slot_mapping.detach().cpu().clone()

        def wrapped(
            layer,
            query,
            k,
            v,
            kv_cache,
            meta,
            output,
            *a,
            key=key,
            forward=forward,
            index=index,
            **kw,
        ):
            result = forward(layer, query, k, v, kv_cache, meta, output, *a, **kw)
            if state["sample"] is not None and meta is not None and f"{key()}.out" not in store:
                n = meta.num_actual_tokens
                slots = store.get(f"{key()}.slots")
                store[f"{key()}.q_fa"] = as_bytes(query[:n]).detach().cpu().clone()
                store[f"{key()}.out"] = output[:n].detach().cpu().clone()
                if slots is not None and kv_cache.dim() == 5 and kv_cache.shape[1] == 2:
                    for j, part in enumerate(("k_cache", "v_cache")):
                        c = kv_cache[:, j]
                        flat = c.reshape(-1, *c.shape[2:])
                        store[f"{key()}.{part}"] = (
                            as_bytes(flat[slots.to(flat.device)]).cpu().clone()
                        )
                info[index].setdefault("num_splits", []).append(
                    getattr(meta, "max_num_splits", None)
                )
                info[index].setdefault("cache_dtype_seen", str(kv_cache.dtype))
            return result

        impl.do_kv_cache_update = do_kv_cache_update
        impl.forward = wrapped
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument(
        "--calib", type=Path, required=True, help="the caption set the eval holds out from"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", default="0,1,2,5,11,17,23")
    ap.add_argument("--samples", default="0,1,2,3,18,19,20,21", help="indices into the eval set")
    args = ap.parse_args()

    from safetensors.torch import save_file
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from vlmquant.engine.args import engine_kwargs
    from vlmquant.eval.data import build_eval_set, encode
    from vlmquant.eval.eval_stage import EvalConfig

    default = {f.name: f.default for f in dataclasses.fields(EvalConfig)}  # the eval's samples

    layers = [int(x) for x in args.layers.split(",")]
    wanted = [int(x) for x in args.samples.split(",")]
    processor = AutoProcessor.from_pretrained(args.model)
    samples = build_eval_set(args.calib, max(wanted) + 1, 0, default["seed"])
    prompts = [
        encode(processor, samples[i], default["seq_len"])["input_ids"][0].tolist() for i in wanted
    ]
    llm = LLM(
        **engine_kwargs(
            args.model, max_model_len=2048, enforce_eager=True, gpu_memory_utilization=0.3
        )
    )
    store: dict = {}
    state: dict = {"sample": None}
    info = llm.apply_model(lambda model: attach(model, layers, store, state))[0]
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    kept = []
    for i, ids in enumerate(prompts):
        state["sample"] = i
        res = llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)[0]
        state["sample"] = None
        size = sum(t.numel() * t.element_size() for t in store.values())
        if size > LIMIT:
            for k in [k for k in store if k.startswith(f"p{i}.")]:
                del store[k]
            break
        lp = [e[t].logprob for t, e in zip(ids[1:], res.prompt_logprobs[1:], strict=True)]
        kept.append({"eval_index": wanted[i], "ids": ids, "logprobs": lp})
    meta = {
        "model": str(args.model),
        "layers": {str(k): v for k, v in info.items()},
        "samples": kept,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in store.items()},
        str(args.out),
        metadata={"capture": json.dumps(meta)},
    )
    print(f"{args.out}: {len(kept)} samples, {len(store)} tensors, layers {layers}")


if __name__ == "__main__":
    main()
