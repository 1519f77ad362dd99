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
    # each layer's FP8 KV cache: alone (only it FP8) and its gain in the export
    layers = s["kv_layers"]
    assert [r["layer"] for r in layers] == [0, 1]
    assert all(r["cost"] > 0 and 0 < r["top1_agreement"] <= 1 for r in layers)
    assert all(abs(r["gain"]) < s["whole_export"]["kld_mean"] for r in layers)


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
    # a layer's KV gain is what eval measures on an export that keeps that layer's KV BF16
    skip = tmp_path / "skip1"
    assert cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-size", "512",
               "--allow-fewer", "--kv-cache-bf16-layers", "1", "--out", skip)[0] == 0  # fmt: skip
    out = tmp_path / "fid_skip1.json"
    code, err = cli("eval", "--base", tiny_model, "--quantized", skip, "--calib", demo_calib,
                    "--out", out, "--image-samples", "0", "--no-vllm", *EVAL_SET)  # fmt: skip
    assert code == 0, err
    measured = json.loads(out.read_text())
    assert measured["kv_cache_bf16_layers"] == [1]
    gain = s["whole_export"]["kld_mean"] - measured["groups"]["text"]["kld_mean"]
    assert gain == pytest.approx(s["kv_layers"][1]["gain"], rel=1e-5, abs=1e-9)


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
    # the KV cache first (no weight bytes), layer by layer from the largest gain, then linears
    kv = [k for k in kept if k.endswith(".kv")]
    gains = {f"layers.{r['layer']}.kv": r["gain"] for r in s["kv_layers"]}
    assert kv and kept[: len(kv)] == sorted(kv, key=lambda k: -gains[k]) and len(kept) > len(kv)
    assert choice["predicted_kld"] <= target
    assert choice["measured"]["kld_mean"] > 0 and choice["met"] == (
        choice["measured"]["kld_mean"] <= target
    )
    quant = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
    pmap = json.loads((out / "precision_map.json").read_text())
    positive = [k for k, g in gains.items() if g > 0]
    if len(kv) == len(gains):  # every layer BF16: the export has no FP8 KV cache at all
        assert quant["kv_cache_quant_algo"] is None and not choice["kv_cache_fp8"]
        assert pmap["kv_cache_bf16_layers"] == {} and choice["kv_cache_bytes_vs_fp8"] == 2.0
    else:  # vLLM keeps the chosen layers' KV cache BF16 (precision_map.json tells it)
        assert quant["kv_cache_quant_algo"] == "FP8" and choice["kv_cache_fp8"]
        layers = sorted(int(k.split(".")[1]) for k in kv)
        assert choice["kv_cache_bf16_layers"] == layers and set(kv) <= set(positive)
        assert sorted(map(int, pmap["kv_cache_bf16_layers"])) == layers
        assert all("--kld-budget" in why for why in pmap["kv_cache_bf16_layers"].values())
        assert choice["kv_cache_bytes_vs_fp8"] == (2 + len(layers)) / 2
    for unit in kept[len(kv) :]:
        for name in next(u["modules"] for u in s["units"] if u["unit"] == unit):
            assert pmap["modules"][name]["precision"] == "BF16", name
            assert unit in pmap["modules"][name]["kept_bf16_by"]
    assert cli("check-vllm", out)[0] == 0
    # the report's PTQ section names each unit kept BF16 with its cost (from run.json)
    from vlmquant.quantize.render import budget_lines
    from vlmquant.results.quantize import QuantizeRun

    lines = "\n".join(budget_lines(QuantizeRun.read(out / "run.json").kld_budget))
    assert all(f"`{unit}`, cost KLD" in lines for unit in kept[len(kv) :])
    assert all(f"`{unit}`, its KV cache BF16 gains KLD" in lines for unit in kv)
    # everything not kept is still FP8
    fp8 = {n for n, m in pmap["modules"].items() if m["precision"] == "FP8_E4M3"}
    kept_modules = {n for u in s["units"] if u["unit"] in kept for n in u["modules"]}
    assert fp8 == {n for u in s["units"] for n in u["modules"]} - kept_modules


def test_a_measured_miss_makes_another_export_that_keeps_more(
    sens, tiny_model, demo_calib, tmp_path, cli
):
    """A prediction that reads low (here a sensitivity file with every measured KLD scaled to
    0.4x, as the trained model's came out optimistic where many units stay BF16) misses in
    export 1; export 2 aims lower by the miss and keeps more units BF16."""
    s = json.loads(sens.read_text())
    low = tmp_path / "optimistic.json"
    for k in ("whole_export", "linears_fp8_kv_bf16"):
        s[k]["kld_mean"] *= 0.4
    for u in s["units"]:
        u["cost"] *= 0.4
    for r in s["kv_layers"]:
        r["cost"], r["gain"] = r["cost"] * 0.4, r["gain"] * 0.4
    low.write_text(json.dumps(s))
    target = json.loads(sens.read_text())["linears_fp8_kv_bf16"]["kld_mean"] * 0.5
    flags = ("quantize", "--model", tiny_model, "--calib", demo_calib, "--calib-size", "64",
             "--kld-budget", target, "--sensitivity", low)  # fmt: skip
    out = tmp_path / "refined"
    code, err = cli(*flags, "--out", out)
    assert code == 0, err
    choice = json.loads((out / "kld_budget.json").read_text())
    rounds = choice["rounds"]
    assert len(rounds) >= 2 and not rounds[0]["met"] and rounds[0]["aim"] == target
    for a, b in zip(rounds, rounds[1:], strict=False):
        assert not a["met"]  # only a miss makes another export
        assert b["aim"] == pytest.approx(target * a["predicted_kld"] / a["measured_kld"])
        assert b["aim"] < a["aim"] and b["units_bf16"] > a["units_bf16"]
        assert b["predicted_kld"] <= b["aim"]
    last = rounds[-1]
    assert choice["measured"]["kld_mean"] == last["measured_kld"] and choice["met"] == last["met"]
    assert len(choice["kept_bf16"]) == last["units_bf16"] and choice["aim"] == last["aim"]
    # the export on disk is the last one: its precision map keeps the last choice's linears
    pmap = json.loads((out / "precision_map.json").read_text())
    kept = {k["unit"] for k in choice["kept_bf16"] if not k["unit"].endswith((".kv", "kv_cache"))}
    bf16 = {n for n, m in pmap["modules"].items() if m.get("kept_bf16_by")}
    assert bf16 == {n for u in s["units"] if u["unit"] in kept for n in u["modules"]}
    assert pmap["kld_budget"]["rounds"] == rounds
    from vlmquant.quantize.budget import verdict_line
    from vlmquant.quantize.render import budget_lines
    from vlmquant.results.quantize import QuantizeRun

    run = QuantizeRun.read(out / "run.json")
    assert run.kld_budget.rounds[-1].measured_kld == last["measured_kld"]
    assert f"export {len(rounds)} of those made" in verdict_line(choice)
    lines = budget_lines(run.kld_budget)
    assert sum(line.startswith("  - export ") for line in lines) == len(rounds)
    # --budget-rounds 1: the prediction's choice only, the same first export
    one = tmp_path / "one"
    assert cli(*flags, "--budget-rounds", "1", "--out", one)[0] == 0
    only = json.loads((one / "kld_budget.json").read_text())
    assert len(only["rounds"]) == 1 and not only["met"]
    assert only["rounds"][0] == rounds[0]  # same flags and seed: the same export


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
        (["--budget-rounds", "2"], "only with --kld-budget"),
        (["--kld-budget", "0.01", "--sensitivity", sens, "--budget-rounds", "0"], "at least 1"),
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


def test_kv_bf16_layers_reach_every_engine_and_bad_ones_are_refused(
    quantized, tiny_model, demo_calib, tmp_path, cli, capsys
):
    """quantize --kv-cache-bf16-layers: recorded in the precision map, passed to vLLM as
    --kv-cache-dtype-skip-layers (LLM kwargs and the printed `vllm serve` command), checked by
    check-vllm; impossible layer lists are refused before anything is written."""
    import shutil

    from vlmquant.engine.args import engine_kwargs, server_flags

    export = quantized("--kv-cache-bf16-layers", "0")
    pmap = json.loads((export / "precision_map.json").read_text())
    assert pmap["kv_cache_bf16_layers"] == {"0": "--kv-cache-bf16-layers"}
    kwargs = engine_kwargs(export)
    assert kwargs["kv_cache_dtype_skip_layers"] == ["0"]
    flags = server_flags(kwargs)
    assert flags[flags.index("--kv-cache-dtype-skip-layers") + 1] == "0"
    assert "kv_cache_dtype_skip_layers" not in engine_kwargs(quantized())
    from vlmquant.cli import main

    assert main(["serve", "--model", str(export), "--print-command"]) == 0
    assert "--kv-cache-dtype-skip-layers 0 " in capsys.readouterr().out
    # a precision map naming a layer the model lacks fails check-vllm
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    (broken / "precision_map.json").write_text(
        json.dumps({**pmap, "kv_cache_bf16_layers": {"7": "hand-edited"}})
    )
    code, err = cli("check-vllm", broken)
    assert code == 2 and "[kv-skip-layers]" in err and "layer 7" in err
    # sensitivity measures exports whose units are each as quantized
    code, err = cli("sensitivity", "--base", tiny_model, "--quantized", export,
                    "--out", tmp_path / "s.json")  # fmt: skip
    assert code == 2 and "keeps some layers' KV cache BF16" in err
    cases = [
        (["--kv-cache-bf16-layers", "5"], "has decoder layers 0-1"),
        (["--kv-cache-bf16-layers", "0", "1"], "that is every layer"),
        (["--kv-cache-bf16-layers", "0", "--kv-cache-qformat", "none"], "keeps every layer"),
        (["--kv-cache-bf16-layers", "-1"], "--kv-cache-bf16-layers"),
        (
            [
                "--kv-cache-bf16-layers",
                "0",
                "--kld-budget",
                "0.1",
                "--sensitivity",
                tmp_path / "s.json",
            ],
            "chooses the BF16 KV-cache layers itself",
        ),  # fmt: skip
    ]
    for flags, says in cases:
        out = tmp_path / "out"
        code, err = cli("quantize", "--model", tiny_model, "--calib", demo_calib, "--out", out,
                        *flags)  # fmt: skip
        assert code == 2 and says in err and err.count("\n") == 1, (flags, err)
        assert not out.exists()
