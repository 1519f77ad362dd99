"""Audit round W: inputs written after round V's fixes, none of them tried before (issue #18).

Flags of every stage at their edges, pipeline and report paths, sensitivity and inspect inputs,
recipe tables of other stages; see run.py for the promise each Case states.
"""

from __future__ import annotations

import json
import shutil

from cases_v import clone, edit_json, prompts_case, text_file
from run import Case, vq

ROUND = "W"


def _out(d, name="o.json"):
    return d / name


def bench_bad_shape(fx, d):
    """bench --shapes 512by256 (not INPUTxOUTPUT)"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--shapes", "512by256", "--out", out), out=out)


def bench_shape_zero(fx, d):
    """bench --shapes 0x256"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--shapes", "0x256", "--out", out), out=out)


def bench_unknown_mode(fx, d):
    """bench --modes turbo"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--modes", "turbo", "--out", out), out=out)


def bench_engine_arg_no_equals(fx, d):
    """bench --engine-arg enforce_eager (no =VALUE)"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--engine-arg", "enforce_eager", "--out", out),
                out=out)  # fmt: skip


def bench_engine_env_no_equals(fx, d):
    """bench --engine-env VLLM_X (no =VALUE)"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--engine-env", "VLLM_X", "--out", out),
                out=out)  # fmt: skip


def bench_concurrency_zero(fx, d):
    """bench --concurrency 0"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--concurrency", 0, "--out", out), out=out)


def bench_gpu_util_above_one(fx, d):
    """bench --gpu-memory-utilization 1.5"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--gpu-memory-utilization", 1.5, "--out", out),
                out=out)  # fmt: skip


def bench_timeout_negative(fx, d):
    """bench --timeout -5"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--timeout", -5, "--out", out), out=out)


def bench_resume_not_bench(fx, d):
    """bench --resume on a file that is some other JSON"""
    out = text_file(d, "o.json", '{"theme": "dark"}')
    return Case(vq("bench", "--model", fx["export"], "--resume", "--out", out), inputs=[out])


def bench_image_sizes_zero(fx, d):
    """bench --serve --image-sizes 0"""
    out = _out(d)
    return Case(vq("bench", "--model", fx["export"], "--serve", "--image-sizes", 0, "--out", out),
                out=out)  # fmt: skip


def sens_kernels_bad(fx, d):
    """sensitivity --kernels tpu"""
    out = _out(d)
    return Case(vq("sensitivity", "--base", fx["tiny"], "--calib", fx["calib"], "--kernels", "tpu",
                   "--out", out), out=out)  # fmt: skip


def sens_base_is_export(fx, d):
    """sensitivity --base an FP8 export"""
    out = _out(d)
    return Case(vq("sensitivity", "--base", fx["export"], "--calib", fx["calib"], "--out", out),
                out=out)  # fmt: skip


def sens_quantized_is_bf16(fx, d):
    """sensitivity --quantized a BF16 checkpoint"""
    out = _out(d)
    return Case(vq("sensitivity", "--base", fx["tiny"], "--quantized", fx["tiny"], "--calib",
                   fx["calib"], "--out", out), out=out)  # fmt: skip


def sens_out_is_calib_manifest(fx, d):
    """sensitivity --out the calibration set's manifest, with --force"""
    c = d / "calib"
    shutil.copytree(fx["calib"].parent, c)
    manifest = c / "demo_captions.manifest.json"
    return Case(vq("sensitivity", "--base", fx["tiny"], "--calib", c / "demo_captions.txt",
                   "--out", manifest, "--force"), out=manifest, inputs=[c])  # fmt: skip


def eval_out_is_calib_jsonl(fx, d):
    """eval --out the calibration set's .jsonl (not .json), with --force"""
    c = d / "calib"
    shutil.copytree(fx["calib"].parent, c)
    out = c / "demo_captions.jsonl"
    return Case(vq("eval", "--base", fx["tiny"], "--quantized", fx["export"], "--calib",
                   c / "demo_captions.txt", "--out", out, "--force"),
                out=out, inputs=[c])  # fmt: skip


def eval_image_samples_negative(fx, d):
    """eval --image-samples -1"""
    out = _out(d)
    return Case(vq("eval", "--base", fx["tiny"], "--quantized", fx["export"], "--image-samples", -1,
                   "--out", out), out=out)  # fmt: skip


def eval_text_binary(fx, d):
    """eval --text a binary file"""
    t = text_file(d, "t.txt", bytes(range(256)) * 4)
    out = _out(d)
    return Case(vq("eval", "--base", fx["tiny"], "--quantized", fx["export"], "--text", t,
                   "--image-samples", 0, "--no-vllm", "--out", out),
                out=out, inputs=[t])  # fmt: skip


def eval_base_not_folder(fx, d):
    """eval --base the base's config.json"""
    out = _out(d)
    return Case(vq("eval", "--base", fx["tiny"] / "config.json", "--quantized", fx["export"],
                   "--out", out), out=out)  # fmt: skip


def eval_tp_zero(fx, d):
    """eval --tensor-parallel-size 0"""
    out = _out(d)
    return Case(vq("eval", "--base", fx["tiny"], "--quantized", fx["export"],
                   "--tensor-parallel-size", 0, "--out", out), out=out)  # fmt: skip


def infer_compare_is_export(fx, d):
    """infer --compare the FP8 export itself (the base must be BF16)"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--compare", fx["export"], "--out-dir", out),
                out=out)  # fmt: skip


def infer_prompts_not_jsonl(fx, d):
    """infer --prompts a CSV file"""
    return prompts_case(fx, d, "p.csv", "text,image\nhello,\n")


def infer_kv_dtype_bad(fx, d):
    """infer --kv-cache-dtype int8"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--kv-cache-dtype", "int8", "--out-dir", out),
                out=out)  # fmt: skip


def infer_out_dir_is_file(fx, d):
    """infer --out-dir an existing file"""
    f = text_file(d, "notes.txt", "mine\n")
    return Case(vq("infer", "--model", fx["export"], "--out-dir", f, "--force"), out=f)


def serve_port_privileged_string(fx, d):
    """serve --port http"""
    return Case(vq("serve", "--model", fx["export"], "--port", "http"), timeout=120)


def serve_model_missing(fx, d):
    """serve --model a folder that does not exist"""
    return Case(vq("serve", "--model", d / "nope"), timeout=120)


def serve_vllm_args_model(fx, d):
    """serve --vllm-args naming a second --model"""
    return Case(vq("serve", "--model", fx["export"], "--vllm-args", f"--model {fx['tiny']}",
                   "--print-command"), timeout=120)  # fmt: skip


def make_tiny_bad_shape(fx, d):
    """make-tiny --shape 13b"""
    out = d / "t"
    return Case(vq("make-tiny", "--shape", "13b", "--out", out), out=out)


def make_tiny_out_is_file(fx, d):
    """make-tiny --out an existing file, with --force"""
    f = text_file(d, "notes.txt", "mine\n")
    return Case(vq("make-tiny", "--out", f, "--force"), out=f)


def calib_seed_string(fx, d):
    """calib --seed abc"""
    out = d / "c.txt"
    return Case(vq("calib", "--demo", "--seed", "abc", "--out", out), out=out)


def calib_two_sources(fx, d):
    """calib --demo and --coco-annotations together"""
    a = text_file(d, "a.json", json.dumps({"annotations": [{"caption": "a dog"}]}))
    out = d / "c.txt"
    return Case(vq("calib", "--demo", "--coco-annotations", a, "--out", out), out=out, inputs=[a])


def calib_out_over_its_images(fx, d):
    """calib --out over an existing set with --force from a recipe with another seed: it is
    calib's own output, so it is replaced (exit 0) and its manifest says the new seed"""
    c = d / "calib"
    shutil.copytree(fx["calib"].parent, c)
    out = c / "demo_captions.txt"
    case = Case(vq("calib", "--demo", "--num-samples", 64, "--seed", 7, "--out", out, "--force"),
                expect=0, out=out)  # fmt: skip

    def check():
        manifest = json.loads((c / "demo_captions.manifest.json").read_text())
        return None if manifest.get("seed") == 7 else f"manifest seed {manifest.get('seed')}"

    case.check = check
    return case


def inspect_diff_self(fx, d):
    """inspect EXPORT --diff EXPORT (a checkpoint against itself): exit 0, no differences"""
    case = Case(vq("inspect", fx["export"], "--diff", fx["export"], "--json"), expect=0)
    return case


def inspect_broken_config(fx, d):
    """inspect a checkpoint whose config.json is not JSON"""
    ck = clone(fx["export"], d)
    (ck / "config.json").write_text("{oops")
    return Case(vq("inspect", ck), inputs=[ck])


def check_vllm_tp_three(fx, d):
    """check-vllm --tensor-parallel-size 3 (the tiny model's heads do not split in three)"""
    return Case(vq("check-vllm", fx["export"], "--tensor-parallel-size", 3))


def check_vllm_vision_weight_fp8_claimed_excluded(fx, d):
    """an export whose exclude_modules drops visual* while the vision tower stays BF16"""
    ck = clone(fx["export"], d)

    def drop(c):
        q = c["quantization"]
        q["exclude_modules"] = [m for m in q["exclude_modules"] if m != "visual*"]

    edit_json(ck / "hf_quant_config.json", drop)
    edit_json(ck / "config.json", lambda c: c["quantization_config"].update(
        ignore=[m for m in c["quantization_config"]["ignore"] if m != "visual*"]))  # fmt: skip
    return Case(vq("check-vllm", ck), inputs=[ck])


def report_index_in_checkpoint(fx, d):
    """report --index inside the export folder"""
    root = d / "m"
    shutil.copytree(fx["tiny"], root / "checkpoints" / "random")
    shutil.copytree(fx["export"], root / "quantized" / "v")
    out = root / "quantized" / "v" / "index.md"
    return Case(vq("report", "--model-root", root, "--index", out), out=out, inputs=[root])


def report_results_not_folder(fx, d):
    """report --results a file"""
    f = text_file(d, "r.json", "{}")
    return Case(vq("report", "--results", f, "--check"), inputs=[f])


def pipeline_unknown_table(fx, d):
    """pipeline --recipe with a [quantize] and an [evaluate] table"""
    r = text_file(d, "r.toml", f'[quantize]\nmodel = "{fx["tiny"]}"\n[evaluate]\nmax_samples = 2\n')
    return Case(vq("pipeline", "--recipe", r), inputs=[r])


def pipeline_force_stage_unknown(fx, d):
    """pipeline --force-stage quantise"""
    r = text_file(d, "r.toml", f'[calib]\ndemo = true\nnum_samples = 4\nout = "{d / "c.txt"}"\n')
    return Case(vq("pipeline", "--recipe", r, "--force-stage", "quantise"), out=d / "c.txt",
                inputs=[r])  # fmt: skip


def recipe_eval_string_int(fx, d):
    """eval's max_samples = "2" (a string) in a recipe"""
    r = text_file(d, "r.toml", '[eval]\nmax_samples = "2"\n')
    out = _out(d)
    return Case(vq("eval", "--recipe", r, "--base", fx["tiny"], "--quantized", fx["export"],
                   "--out", out), out=out, inputs=[r])  # fmt: skip


def recipe_infer_temperature_string(fx, d):
    """infer's temperature = "hot" in a recipe"""
    r = text_file(d, "r.toml", '[infer]\ntemperature = "hot"\n')
    out = d / "s"
    return Case(vq("infer", "--recipe", r, "--model", fx["export"], "--out-dir", out), out=out,
                inputs=[r])  # fmt: skip


def recipe_nested_table(fx, d):
    """a recipe with [quantize.extra] (a table inside the stage table)"""
    r = text_file(d, "r.toml", "[quantize]\ncalib_size = 8\n[quantize.extra]\na = 1\n")
    out = d / "q"
    return Case(vq("quantize", "--recipe", r, "--model", fx["tiny"], "--calib", fx["calib"],
                   "--out", out), out=out, inputs=[r])  # fmt: skip


def quantize_sens_with_bf16kv_flag(fx, d):
    """--keep-fp8-kv without --kld-budget"""
    out = d / "q"
    return Case(vq("quantize", "--model", fx["tiny"], "--calib", fx["calib"], "--calib-size", 8,
                   "--keep-fp8-kv", "--out", out), out=out)  # fmt: skip


def quantize_images_with_text_mode(fx, d):
    """--images with --calib-mode text (the pictures would be ignored)"""
    out = d / "q"
    return Case(vq("quantize", "--model", fx["tiny"], "--calib", fx["calib"], "--calib-size", 8,
                   "--calib-mode", "text", "--images", fx["images"], "--out", out),
                out=out)  # fmt: skip


def quantize_budget_above_all_fp8(fx, d):
    """--kld-budget 5 (looser than the all-FP8 export): exit 0 and an export"""
    out = d / "q"
    case = Case(vq("quantize", "--model", fx["tiny"], "--calib", fx["calib"], "--calib-size", 16,
                   "--kld-budget", 5, "--sensitivity", fx["sens"], "--out", out),
                expect=0, out=out)  # fmt: skip

    def check():
        pm = json.loads((out / "precision_map.json").read_text())
        text = json.dumps(pm)
        return None if (out / "model.safetensors").exists() and text else "no export"

    case.check = check
    return case
