"""sensitivity (per-unit KLD cost) and quantize --kld-budget on the tiny model."""

from __future__ import annotations

import json

import pytest

EVAL_SET = ("--max-samples", "12", "--seq-len", "128")


@pytest.fixture(scope="module")
def sens(quantized, tiny_model, demo_calib, tmp_path_factory):
    from vlmquant.cli import main

    out = tmp_path_factory.mktemp("sens") / "sens.json"
    args = ["sensitivity", "--base", tiny_model, "--calib", demo_calib, "--out", out, *EVAL_SET]
    assert main([str(a) for a in args]) == 0
    return out


def test_units_are_vllms_fused_groups_and_the_kv_cache(sens, demo_calib):
    s = json.loads(sens.read_text())
    # the samples the export was calibrated on are recorded beside the --calib-size asked for
    held = len(demo_calib.read_text().splitlines())
    assert s["recipe"]["calib_samples"] == min(held, s["recipe"]["calib_size"]) > 0
    names = [u["unit"] for u in s["units"]]
    assert names == [f"layers.{i}.{g}" for i in (0, 1) for g in ("qkv", "o", "gate_up", "down")] + [
        "kv_cache"
    ]
    qkv = s["units"][0]
    assert qkv["modules"] == [f"model.layers.0.self_attn.{p}_proj" for p in "kqv"]
    assert qkv["weight_bytes_saved"] == (128 + 64 + 64) * 128  # tiny: hidden 128, 64 for k/v
    assert all(u["cost"] > 0 for u in s["units"])
    assert s["units"][-1]["weight_bytes_saved"] == 0
    # the whole export costs more than its linears alone (the FP8 KV cache adds to it)
    assert s["whole_export"]["kld_mean"] > s["linears_fp8_kv_bf16"]["kld_mean"] > 0
    assert 0.5 < s["additivity"] < 1.5
    assert s["eval_set"]["tokens"] > 300


def test_whole_export_cost_is_what_eval_measures(sens, tiny_model, demo_calib, tmp_path, cli):
    """The sensitivity's scoring is eval's: the same export (re-quantized with the same flags
    and seed, so byte-identical) on the same text gives the same KLD."""
    s = json.loads(sens.read_text())
    export = tmp_path / "export"
    assert cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-size", "512",
               "--allow-fewer", "--out", export)[0] == 0  # fmt: skip
    out = tmp_path / "fid.json"
    code, err = cli("eval", "--base", tiny_model, "--quantized", export, "--calib", demo_calib,
                    "--out", out, "--image-samples", "0", "--no-vllm", *EVAL_SET)  # fmt: skip
    assert code == 0, err
    text = json.loads(out.read_text())["groups"]["text"]
    assert text["tokens"] == s["eval_set"]["tokens"]
    assert text["kld_mean"] == pytest.approx(s["whole_export"]["kld_mean"], rel=1e-6)


def test_budget_keeps_the_costliest_units_bf16_and_measures_the_export(
    sens, tiny_model, demo_calib, tmp_path, cli
):
    s = json.loads(sens.read_text())
    target = s["linears_fp8_kv_bf16"]["kld_mean"] * 0.5  # needs the KV cache and some linears
    out = tmp_path / "budget"
    code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-size", "64",
                    "--kld-budget", target, "--sensitivity", sens, "--out", out)  # fmt: skip
    assert code == 0, err
    choice = json.loads((out / "kld_budget.json").read_text())
    kept = [k["unit"] for k in choice["kept_bf16"]]
    assert kept[0] == "kv_cache" and not choice["kv_cache_fp8"] and len(kept) >= 2
    assert choice["predicted_kld"] <= target
    assert choice["measured"]["kld_mean"] > 0 and choice["met"] == (
        choice["measured"]["kld_mean"] <= target
    )
    quant = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
    assert quant["kv_cache_quant_algo"] is None
    pmap = json.loads((out / "precision_map.json").read_text())
    for unit in kept[1:]:
        for name in next(u["modules"] for u in s["units"] if u["unit"] == unit):
            assert pmap["modules"][name]["precision"] == "BF16", name
            assert unit in pmap["modules"][name]["kept_bf16_by"]
    assert cli("check-vllm", out)[0] == 0
    # the report's PTQ section names each unit kept BF16 with its cost (from run.json)
    from vlmquant.quantize.render import budget_lines
    from vlmquant.results.quantize import QuantizeRun

    lines = "\n".join(budget_lines(QuantizeRun.read(out / "run.json").kld_budget))
    assert all(f"`{unit}`, cost KLD" in lines for unit in kept)
    # everything not kept is still FP8
    fp8 = {n for n, m in pmap["modules"].items() if m["precision"] == "FP8_E4M3"}
    kept_modules = {n for u in s["units"] if u["unit"] in kept for n in u["modules"]}
    assert fp8 == {n for u in s["units"] for n in u["modules"]} - kept_modules


def test_bad_budget_inputs(sens, tiny_model, demo_calib, tmp_path, cli):
    s = json.loads(sens.read_text())
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({**s, "base_identity": {"config_sha256": "0", "weights_sha256": "0"}})
    )
    pcpt = tmp_path / "pcpt.json"
    pcpt.write_text(
        json.dumps({**s, "recipe": {**s["recipe"], "qformat": "fp8_per_channel_per_token"}})
    )
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    floor = s["units"][-1]["cost"]  # every linear BF16, the FP8 KV cache kept: KV-only cost
    cases = [
        (["--kld-budget", "0.01"], "needs --sensitivity"),
        (["--sensitivity", sens], "needs --sensitivity"),
        (["--kld-budget", "0", "--sensitivity", sens], "must be above 0"),
        (["--kld-budget", "0.01", "--sensitivity", other], "another model"),
        (["--kld-budget", "0.01", "--sensitivity", pcpt], "measured for --qformat"),
        (["--kld-budget", "0.01", "--sensitivity", junk], "not a vlmquant.sensitivity/1 result"),
        (["--kld-budget", "0.01", "--sensitivity", tmp_path / "none.json"], "no such file"),
        (["--kld-budget", floor * 0.5, "--sensitivity", sens, "--keep-fp8-kv"], "below what"),
        # met only by keeping every unit BF16: ModelOpt had nothing to quantize (a traceback)
        (["--kld-budget", 1e-12, "--sensitivity", sens], "only the BF16 base itself meets it"),
    ]
    for flags, says in cases:
        out = tmp_path / "out"
        code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--out", out,
                        *flags)  # fmt: skip
        assert code == 2 and says in err and err.count("\n") == 1, (flags, err)
        assert not out.exists()


def test_a_measured_export_is_recorded_as_what_it_is(quantized, tiny_model, tmp_path, cli):
    """--quantized PCPT without --qformat: the file says per-channel, so quantize --kld-budget
    with per-tensor flags refuses it."""
    out = tmp_path / "s.json"
    export = quantized("--qformat", "fp8_per_channel_per_token")
    code, err = cli("sensitivity", "--base", tiny_model, "--quantized", export, "--out", out,
                    "--max-samples", "4", "--seq-len", "64")  # fmt: skip
    assert code == 0, err
    recipe = json.loads(out.read_text())["recipe"]
    assert (recipe["qformat"], recipe["kv_cache_qformat"]) == ("fp8_per_channel_per_token", "fp8")
