"""Audit round Y: a broad round across every stage, written after round X, none of the cases
tried in earlier rounds (issue #18).

Inputs as a careless user gives them: outputs over or inside inputs, folders for files and
files for folders, empty and blank files, sizes and counts out of range, devices this machine
lacks, recipe values of the wrong type, a pipeline whose stages collide; see run.py for the
promise each Case states.
"""

from __future__ import annotations

import json
import shutil

from cases_v import clone, quantize_of, text_file
from run import Case, vq

ROUND = "Y"
EVAL = ("--no-vllm", "--max-samples", 2, "--image-samples", 0)


def _eval(fx, d, *flags, base=None, quantized=None, out=None):
    out = out or d / "e.json"
    argv = vq("eval", "--base", base or fx["tiny"], "--quantized", quantized or fx["export"],
              "--out", out, *EVAL, *flags)  # fmt: skip
    return Case(argv, out=out)


# --- make-tiny and calib -----------------------------------------------------------------------


def make_tiny_gguf_is_a_folder(fx, d):
    """make-tiny --lm-gguf names a folder"""
    (d / "g").mkdir()
    return Case(vq("make-tiny", "--lm-gguf", d / "g", "--out", d / "m"), out=d / "m")


def make_tiny_over_the_fixture_checkpoint(fx, d):
    """make-tiny --out over an existing checkpoint it did not make here, without --force"""
    m = clone(fx["tiny"], d, "m")
    (m / "run.json").unlink()  # not a make-tiny record any more: someone's checkpoint
    return Case(vq("make-tiny", "--out", m), inputs=[m])


def calib_more_samples_than_captions(fx, d):
    """calib --demo --num-samples 10000 (the demo lists compose 7200 captions)"""
    out = d / "c.txt"
    return Case(vq("calib", "--demo", "--num-samples", 10000, "--out", out), out=out)


def calib_out_parent_is_a_file(fx, d):
    """calib --out under a path whose parent is a file"""
    f = text_file(d, "afile", "x")
    return Case(vq("calib", "--demo", "--num-samples", 8, "--out", f / "c.txt"), inputs=[f])


def calib_out_jsonl(fx, d):
    """calib --out c.jsonl (the set is its .txt; the .jsonl goes beside it)"""
    out = d / "c.jsonl"
    return Case(vq("calib", "--demo", "--num-samples", 8, "--out", out), out=out)


def calib_coco_zip_without_captions(fx, d):
    """calib --coco-annotations a zip holding no captions file"""
    import zipfile

    z = d / "ann.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("instances_train2017.json", "{}")
    out = d / "c.txt"
    return Case(vq("calib", "--coco-annotations", z, "--out", out), out=out, inputs=[z])


# --- quantize ----------------------------------------------------------------------------------


def quantize_calib_whitespace_only(fx, d):
    """quantize --calib a .txt of spaces and tabs only"""
    c = text_file(d, "c.txt", "  \n\t\n   \n")
    return quantize_of(fx, fx["tiny"], d, calib=c)


def quantize_kv_format_bogus(fx, d):
    """quantize --kv-cache-qformat int4"""
    return quantize_of(fx, fx["tiny"], d, "--kv-cache-qformat", "int4")


def quantize_scope_bogus(fx, d):
    """quantize --scope vision"""
    return quantize_of(fx, fx["tiny"], d, "--scope", "vision")


def quantize_model_config_only(fx, d):
    """quantize --model a folder with config.json and nothing else"""
    m = d / "m"
    m.mkdir()
    shutil.copy(fx["tiny"] / "config.json", m / "config.json")
    return quantize_of(fx, m, d)


def quantize_out_is_the_calib_folder(fx, d):
    """quantize --out the calibration set's folder --force (the set would be replaced)"""
    c = clone(fx["calib"].parent, d, "c")
    case = quantize_of(fx, fx["tiny"], d, "--force", calib=c / fx["calib"].name)
    case.argv[case.argv.index("--out") + 1] = str(c)
    case.out, case.inputs = None, [*case.inputs, c]
    return case


def quantize_device_cuda_here(fx, d):
    """quantize --device cuda on a machine without a CUDA GPU"""
    return quantize_of(fx, fx["tiny"], d, "--device", "cuda")


def quantize_recipe_calib_size_float(fx, d):
    """quantize --recipe: [quantize] calib_size = 1.5"""
    r = text_file(d, "r.toml", "[quantize]\ncalib_size = 1.5\n")
    case = quantize_of(fx, fx["tiny"], d, "--recipe", r)
    case.argv.remove("--calib-size")
    case.argv.remove("8")
    return case


# --- sensitivity and eval ------------------------------------------------------------------------


def sensitivity_out_inside_base(fx, d):
    """sensitivity --out inside the base checkpoint folder"""
    base = clone(fx["tiny"], d, "b")
    return Case(vq("sensitivity", "--base", base, "--calib", fx["calib"], "--calib-size", 8,
                   "--out", base / "sens.json"), out=base / "sens.json", inputs=[base])  # fmt: skip


def sensitivity_max_samples_zero(fx, d):
    """sensitivity --max-samples 0 (nothing to measure on)"""
    out = d / "s.json"
    return Case(vq("sensitivity", "--base", fx["tiny"], "--calib", fx["calib"], "--calib-size", 8,
                   "--max-samples", 0, "--out", out), out=out)  # fmt: skip


def eval_out_is_the_base_config(fx, d):
    """eval --out the base checkpoint's config.json"""
    base = clone(fx["tiny"], d, "b")
    case = _eval(fx, d, base=base, out=base / "config.json")
    case.inputs = [base]
    return case


def eval_text_blank_lines_only(fx, d):
    """eval --text a file of blank lines only"""
    t = text_file(d, "t.txt", "\n\n   \n")
    case = _eval(fx, d, "--text", t)
    case.inputs = [t]
    return case


def eval_export_without_tokenizer_json(fx, d):
    """eval --quantized an export whose tokenizer.json was deleted"""
    q = clone(fx["export"], d)
    (q / "tokenizer.json").unlink()
    return _eval(fx, d, quantized=q)


def eval_base_is_the_export(fx, d):
    """eval --base the FP8 export (the roles swapped)"""
    return _eval(fx, d, base=fx["export"], quantized=fx["export"])


def eval_calib_not_a_set(fx, d):
    """eval --calib a .txt that no calib run wrote (no manifest)"""
    t = text_file(d, "mine.txt", "a caption\nanother caption\n")
    return _eval(fx, d, "--calib", t)


# --- infer, serve, bench -----------------------------------------------------------------------


def infer_prompt_image_is_a_folder(fx, d):
    """infer --prompts: an image that is a folder"""
    (d / "pics").mkdir()
    p = text_file(d, "p.jsonl", json.dumps({"text": "hi", "image": str(d / "pics")}) + "\n")
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--prompts", p, "--out-dir", out), out=out)


def infer_prompts_empty_file(fx, d):
    """infer --prompts an empty file"""
    p = text_file(d, "p.jsonl", "")
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--prompts", p, "--out-dir", out), out=out)


def infer_max_tokens_beyond_model_len(fx, d):
    """infer --max-tokens 100000 (beyond --max-model-len)"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--max-tokens", 100000, "--out-dir", out),
                out=out)  # fmt: skip


def infer_out_dir_inside_model(fx, d):
    """infer --out-dir inside the checkpoint it runs"""
    m = clone(fx["export"], d, "m")
    return Case(vq("infer", "--model", m, "--out-dir", m / "samples"), out=m / "samples",
                inputs=[m])  # fmt: skip


def serve_host_not_an_address(fx, d):
    """serve --host 256.1.1.1"""
    return Case(vq("serve", "--model", fx["export"], "--host", "256.1.1.1", "--port", 18124))


def bench_out_inside_model(fx, d):
    """bench --out inside the checkpoint it measures"""
    m = clone(fx["export"], d, "m")
    return Case(vq("bench", "--model", m, "--out", m / "bench.json"), out=m / "bench.json",
                inputs=[m])  # fmt: skip


def bench_model_is_a_file(fx, d):
    """bench --model names a file"""
    f = text_file(d, "model.bin", "x")
    out = d / "bench-x.json"
    return Case(vq("bench", "--model", f, "--out", out), out=out, inputs=[f])


def bench_single_stream_zero(fx, d):
    """bench --single-stream 0 0"""
    out = d / "bench-x.json"
    return Case(vq("bench", "--model", fx["export"], "--single-stream", 0, 0, "--out", out),
                out=out)  # fmt: skip


# --- report, inspect, check-vllm ---------------------------------------------------------------


def report_partial_variant_beside_a_finished_one(fx, d):
    """report: quantized/ holds a finished variant and one without run.json (cut short)"""
    root = d / "m"
    shutil.copytree(fx["tiny"], root / "checkpoints" / "tiny")
    shutil.copytree(fx["export"], root / "quantized" / "v")
    half = shutil.copytree(fx["export"], root / "quantized" / "half")
    (half / "run.json").unlink()

    def check():
        index = (d / "reports" / "index.md").read_text()
        return "the unfinished variant is listed" if "| half |" in index else None

    return Case(vq("report", "--model-root", root, "--index", d / "reports" / "index.md"),
                expect=0, check=check)  # fmt: skip


def report_index_is_a_folder(fx, d):
    """report --index names an existing folder"""
    root = d / "m"
    shutil.copytree(fx["export"], root / "quantized" / "v")
    (d / "idx").mkdir()
    return Case(vq("report", "--model-root", root, "--index", d / "idx"), out=root / "reports")


def inspect_missing_weights(fx, d):
    """inspect a checkpoint whose model.safetensors was deleted"""
    m = clone(fx["tiny"], d)
    (m / "model.safetensors").unlink()
    return Case(vq("inspect", m))


def inspect_index_names_a_missing_shard(fx, d):
    """inspect a checkpoint whose index lists a shard that is not there"""
    m = clone(fx["tiny"], d)
    names = json.loads(json.dumps(_header_names(m / "model.safetensors")))
    index = {"metadata": {}, "weight_map": {n: "model-00002-of-00002.safetensors" for n in names}}
    (m / "model.safetensors.index.json").write_text(json.dumps(index))
    return Case(vq("inspect", m))


def _header_names(path) -> list[str]:
    import struct

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return [k for k in json.loads(f.read(n)) if k != "__metadata__"]


def check_vllm_bf16_passes(fx, d):
    """check-vllm on the BF16 tiny checkpoint (a BF16 checkpoint vLLM loads) passes"""
    return Case(vq("check-vllm", fx["tiny"]), expect=0)


def check_vllm_folder_without_config(fx, d):
    """check-vllm on an empty folder"""
    (d / "empty").mkdir()
    return Case(vq("check-vllm", d / "empty"))


# --- pipeline, parity, recipes -----------------------------------------------------------------


def pipeline_two_stages_one_output(fx, d):
    """pipeline: [quantize] out is [calib]'s out (one path, two stages)"""
    c = d / "c.txt"
    r = text_file(d, "r.toml", f'[calib]\ndemo = true\nnum_samples = 8\nout = "{c}"\n'
                  f'[quantize]\nmodel = "{fx["tiny"]}"\ncalib = "{c}"\nout = "{c}"\n'
                  "calib_size = 8\n")  # fmt: skip
    return Case(vq("pipeline", "--recipe", r), out=c)


def pipeline_eval_base_is_the_export(fx, d):
    """pipeline: [eval] takes the [quantize] export as its base (roles swapped)"""
    q = d / "q"
    r = text_file(d, "r.toml", f'[quantize]\nmodel = "{fx["tiny"]}"\ncalib = "{fx["calib"]}"\n'
                  f'out = "{q}"\ncalib_size = 8\n[eval]\nbase = "{q}"\nquantized = "{q}"\n'
                  f'out = "{d / "e.json"}"\nvllm = false\n')  # fmt: skip
    return Case(vq("pipeline", "--recipe", r), out=d / "e.json")


def parity_calib_jsonl_without_text(fx, d):
    """parity --calib a .jsonl whose rows have no "text" key"""
    c = text_file(d, "c.jsonl", '{"caption": "a"}\n{"caption": "b"}\n')
    return Case(vq("parity", "--model", fx["tiny"], "--calib", c, "--out", d / "p"), out=d / "p")


def recipe_bench_model_string(fx, d):
    """bench --recipe: [bench] model = "x" (a string for a list, naming no checkpoint)"""
    r = text_file(d, "r.toml", '[bench]\nmodel = "no-such-checkpoint"\n')
    out = d / "bench-x.json"
    return Case(vq("bench", "--recipe", r, "--out", out), out=out)


def recipe_eval_seed_bool(fx, d):
    """eval --recipe: [eval] seed = true"""
    r = text_file(d, "r.toml", "[eval]\nseed = true\n")
    case = _eval(fx, d, "--recipe", r)
    case.inputs = [r]
    return case
