"""Audit round V: careless and hostile inputs not tried in rounds D-U (issue #18).

Each case gets its own folder `d` and the shared fixtures `fx` (see run.py); what it promises is
in its Case: exit 2 with one line and nothing written, or exit 0 with a check of the output.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

from run import Case, vq

ROUND = "V"
EVAL = ("--image-samples", 0, "--max-samples", 2, "--no-vllm")


# --- helpers ------------------------------------------------------------------------------


def clone(src: Path, d: Path, name: str = "ck") -> Path:
    dst = d / name
    shutil.copytree(src, dst, symlinks=True)
    return dst


def retensor(folder: Path, edit) -> Path:
    """Rewrite folder/model.safetensors through edit(tensors) (edits the dict in place)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return folder


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def text_file(d: Path, name: str, data: bytes | str) -> Path:
    p = d / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def first(tensors: dict, suffix: str) -> str:
    return sorted(k for k in tensors if k.endswith(suffix))[0]


def eval_of(fx, quantized: Path, d: Path, *more) -> Case:
    out = d / "e.json"
    argv = vq("eval", "--base", fx["tiny"], "--quantized", quantized, "--calib", fx["calib"],
              *EVAL, "--out", out, *more)  # fmt: skip
    return Case(argv, out=out, inputs=[quantized])


def quantize_of(fx, model: Path, d: Path, *more, calib: Path | None = None) -> Case:
    out = d / "q"
    argv = vq("quantize", "--model", model, "--calib", calib or fx["calib"], "--calib-size", 8,
              "--out", out, *more)  # fmt: skip
    return Case(argv, out=out, inputs=[model, *([calib] if calib else [])])


def recipe_case(fx, d: Path, body: str) -> Case:
    r = text_file(d, "r.toml", body)
    out = d / "q"
    argv = vq("quantize", "--recipe", r, "--model", fx["tiny"], "--calib", fx["calib"],
              "--out", out)  # fmt: skip
    return Case(argv, out=out, inputs=[r])


def prompts_case(fx, d: Path, name: str, body: str) -> Case:
    """infer on the export with a prompts file holding `body`."""
    p = text_file(d, name, body)
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--prompts", p, "--out-dir", out), out=out,
                inputs=[p])  # fmt: skip


# --- checkpoints ----------------------------------------------------------------------------


def ck_float32_weight(fx, d):
    """an FP8 export with one FP8 weight stored as float32"""
    ck = clone(fx["export"], d)

    def edit(t):
        k = first(t, "mlp.down_proj.weight")
        t[k] = t[k].float()

    retensor(ck, edit)
    return Case(vq("check-vllm", ck), inputs=[ck])


def ck_extra_tensor(fx, d):
    """an export holding a tensor the architecture has no place for"""
    ck = clone(fx["export"], d)

    def edit(t):
        import torch

        t["model.layers.0.mlp.extra_proj.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)

    return eval_of(fx, retensor(ck, edit), d)


def ck_nan_weight_scale(fx, d):
    """an export whose weight_scale is NaN"""
    ck = clone(fx["export"], d)

    def edit(t):
        t[first(t, "mlp.up_proj.weight_scale")].fill_(float("nan"))

    return eval_of(fx, retensor(ck, edit), d)


def ck_negative_weight_scale(fx, d):
    """an export whose weight_scale is negative"""
    ck = clone(fx["export"], d)

    def edit(t):
        t[first(t, "self_attn.o_proj.weight_scale")].fill_(-1.0)

    retensor(ck, edit)
    return Case(vq("check-vllm", ck), inputs=[ck])


def ck_zero_k_scale(fx, d):
    """an export whose k_scale is 0 (every key cached as 0 or inf)"""
    ck = clone(fx["export"], d)

    def edit(t):
        t[first(t, "k_proj.k_scale")].fill_(0.0)

    return eval_of(fx, retensor(ck, edit), d)


def ck_inf_input_scale(fx, d):
    """an export whose input_scale is inf"""
    ck = clone(fx["export"], d)

    def edit(t):
        t[first(t, "q_proj.input_scale")].fill_(float("inf"))

    retensor(ck, edit)
    return Case(vq("check-vllm", ck), inputs=[ck])


def ck_kv_algo_removed(fx, d):
    """k/v scales in the weights but no kv_cache_quant_algo in hf_quant_config.json"""
    ck = clone(fx["export"], d)
    edit_json(ck / "hf_quant_config.json", lambda c: c["quantization"].pop("kv_cache_quant_algo"))
    edit_json(ck / "config.json", lambda c: c["quantization_config"].pop("kv_cache_scheme"))
    return Case(vq("check-vllm", ck), inputs=[ck])


def ck_missing_weight_scale(fx, d):
    """an export with one FP8 weight's weight_scale deleted"""
    ck = clone(fx["export"], d)
    return eval_of(fx, retensor(ck, lambda t: t.pop(first(t, "gate_proj.weight_scale"))), d)


def ck_model_type_llama(fx, d):
    """a Qwen2.5-VL checkpoint whose config says model_type llama"""
    ck = clone(fx["tiny"], d)
    edit_json(ck / "config.json", lambda c: c.update(model_type="llama"))
    return quantize_of(fx, ck, d)


def ck_no_vision_config(fx, d):
    """a checkpoint config without vision_config"""
    ck = clone(fx["tiny"], d)
    edit_json(ck / "config.json", lambda c: c.pop("vision_config"))
    return quantize_of(fx, ck, d)


def ck_hidden_size_mismatch(fx, d):
    """config.json's hidden_size disagrees with the weights"""
    ck = clone(fx["tiny"], d)
    edit_json(ck / "config.json", lambda c: c["text_config"].update(hidden_size=96))
    return quantize_of(fx, ck, d)


def ck_missing_tokenizer_config(fx, d):
    """a checkpoint without tokenizer_config.json"""
    ck = clone(fx["tiny"], d)
    (ck / "tokenizer_config.json").unlink()
    return quantize_of(fx, ck, d)


def ck_lying_header(fx, d):
    """model.safetensors whose header points past the end of the file"""
    ck = clone(fx["tiny"], d)
    path = ck / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    key = sorted(k for k in header if k != "__metadata__")[0]
    header[key]["data_offsets"][1] += 10**9
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    return Case(vq("inspect", ck), inputs=[ck])


def ck_dangling_symlink(fx, d):
    """model.safetensors is a symlink to a file that is gone"""
    ck = clone(fx["tiny"], d)
    (ck / "model.safetensors").unlink()
    os.symlink(d / "gone.safetensors", ck / "model.safetensors")
    return eval_of(fx, ck, d, "--no-expect-quantized")


def ck_config_array(fx, d):
    """config.json holds a JSON array"""
    ck = clone(fx["export"], d)
    (ck / "config.json").write_text("[]")
    return Case(vq("check-vllm", ck), inputs=[ck])


def ck_bf16_claims_fp8(fx, d):
    """a BF16 checkpoint with an FP8 export's hf_quant_config.json copied in"""
    ck = clone(fx["tiny"], d)
    shutil.copy(fx["export"] / "hf_quant_config.json", ck)
    return eval_of(fx, ck, d)


def ck_shape_config_int_as_string(fx, d):
    """config.json's num_hidden_layers is the string "2\""""
    ck = clone(fx["tiny"], d)
    edit_json(ck / "config.json", lambda c: c["text_config"].update(num_hidden_layers="2"))
    return quantize_of(fx, ck, d)


# --- calibration text ---------------------------------------------------------------------


def calib_bom_crlf(fx, d):
    """a calibration .txt saved by a Windows editor (BOM, CRLF): accepted, read as captions"""
    lines = fx["calib"].read_text().splitlines()[:16]
    c = text_file(d, "win.txt", b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    case = quantize_of(fx, fx["tiny"], d, calib=c)
    case.expect = 0

    def check():
        run = json.loads((d / "q" / "run.json").read_text())
        blob = json.dumps(run)
        if "\\r" in blob or "\\ufeff" in blob:
            return "a CR or BOM reached the run record"
        return None if (d / "q" / "model.safetensors").exists() else "no model.safetensors"

    case.check = check
    return case


def calib_utf16(fx, d):
    """a calibration .txt in UTF-16"""
    c = text_file(d, "u16.txt", "a dog on a beach\nа cat on a mat\n".encode("utf-16"))
    return quantize_of(fx, fx["tiny"], d, calib=c)


def calib_nul_bytes(fx, d):
    """a calibration .txt with NUL bytes in it (a binary file renamed)"""
    c = text_file(d, "nul.txt", b"a dog\x00\x00 on a beach\nsecond\x00line\n")
    return quantize_of(fx, fx["tiny"], d, calib=c)


def calib_blank_lines(fx, d):
    """a calibration .txt of blank lines only"""
    c = text_file(d, "blank.txt", "\n \n\t\n\n")
    return quantize_of(fx, fx["tiny"], d, calib=c)


def calib_num_samples_negative(fx, d):
    """calib --num-samples -5"""
    out = d / "c.txt"
    return Case(vq("calib", "--demo", "--num-samples", -5, "--out", out), out=out)


def calib_out_existing_folder(fx, d):
    """calib --out names an existing folder"""
    (d / "data").mkdir()
    (d / "data" / "keep.txt").write_text("mine\n")
    return Case(vq("calib", "--demo", "--num-samples", 4, "--out", d / "data"), out=d / "data")


def calib_coco_no_annotations(fx, d):
    """a COCO captions file whose annotations list is empty"""
    a = text_file(d, "captions_train2017.json", json.dumps({"images": [], "annotations": []}))
    out = d / "c.txt"
    return Case(vq("calib", "--coco-annotations", a, "--out", out), out=out, inputs=[a])


def calib_coco_caption_not_string(fx, d):
    """a COCO captions file whose captions are numbers"""
    ann = [{"id": i, "image_id": i, "caption": i} for i in range(8)]
    a = text_file(d, "captions_train2017.json", json.dumps({"images": [], "annotations": ann}))
    out = d / "c.txt"
    return Case(vq("calib", "--coco-annotations", a, "--num-samples", 4, "--out", out),
                out=out, inputs=[a])  # fmt: skip


def calib_hf_dataset_no_column(fx, d):
    """--hf-dataset whose rows have no caption column"""
    h = d / "h"
    h.mkdir()
    text_file(h, "data.jsonl", "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(8)))
    out = d / "c.txt"
    return Case(vq("calib", "--hf-dataset", h, "--num-samples", 4, "--out", out), out=out,
                inputs=[h])  # fmt: skip


# --- quantize flags and outputs -------------------------------------------------------------


def q_calib_seq_negative(fx, d):
    """quantize --calib-seq -1"""
    return quantize_of(fx, fx["tiny"], d, "--calib-seq", -1)


def q_calib_size_zero(fx, d):
    """quantize --calib-size 0"""
    return quantize_of(fx, fx["tiny"], d, "--calib-size", 0)


def q_batch_size_negative(fx, d):
    """quantize --batch-size -3"""
    return quantize_of(fx, fx["tiny"], d, "--batch-size", -3)


def q_out_inside_model(fx, d):
    """quantize --out inside the source checkpoint"""
    ck = clone(fx["tiny"], d)
    case = quantize_of(fx, ck, d)
    case.argv[case.argv.index("--out") + 1] = str(ck / "fp8")
    case.out = ck / "fp8"
    return case


def q_out_is_calib_images(fx, d):
    """quantize --out names the calib set's image folder, with --force"""
    case = quantize_of(fx, fx["tiny"], d, "--force")
    case.argv[case.argv.index("--out") + 1] = str(fx["images"])
    case.out = fx["images"]
    case.inputs.append(fx["images"])
    return case


def q_out_is_calib_file(fx, d):
    """quantize --out names the calibration .txt itself, with --force"""
    c = d / "c.txt"
    shutil.copy(fx["calib"], c)
    case = quantize_of(fx, fx["tiny"], d, "--force", calib=c)
    case.argv[case.argv.index("--out") + 1] = str(c)
    case.out = c
    return case


def q_images_missing(fx, d):
    """image-text calibration with --images naming a folder that does not exist"""
    return quantize_of(fx, fx["tiny"], d, "--calib-mode", "image-text", "--images", d / "nope")


# --- budgets and sensitivity files --------------------------------------------------------


def budget_negative(fx, d):
    """--kld-budget -0.1"""
    return quantize_of(fx, fx["tiny"], d, "--kld-budget", -0.1, "--sensitivity", fx["sens"])


def budget_nan(fx, d):
    """--kld-budget nan"""
    return quantize_of(fx, fx["tiny"], d, "--kld-budget", "nan", "--sensitivity", fx["sens"])


def budget_without_sensitivity(fx, d):
    """--kld-budget without --sensitivity"""
    return quantize_of(fx, fx["tiny"], d, "--kld-budget", 0.05)


def sens_units_empty(fx, d):
    """a sensitivity file whose unit list was emptied"""
    s = d / "sens.json"
    data = json.loads(fx["sens"].read_text())
    for key in ("units", "costs"):
        if isinstance(data.get(key), (list, dict)):
            data[key] = type(data[key])()
    s.write_text(json.dumps(data))
    case = quantize_of(fx, fx["tiny"], d, "--kld-budget", 0.05, "--sensitivity", s)
    case.inputs.append(s)
    return case


def sens_other_model(fx, d):
    """a sensitivity file measured on another model (its weights digest differs)"""
    s = d / "sens.json"
    data = json.loads(fx["sens"].read_text())
    data["base_identity"]["weights_sha256"] = "0" * 64
    s.write_text(json.dumps(data))
    case = quantize_of(fx, fx["tiny"], d, "--kld-budget", 0.05, "--sensitivity", s)
    case.inputs.append(s)
    return case


def sens_truncated(fx, d):
    """a sensitivity file cut off half way"""
    s = text_file(d, "sens.json", fx["sens"].read_bytes()[: len(fx["sens"].read_bytes()) // 2])
    case = quantize_of(fx, fx["tiny"], d, "--kld-budget", 0.05, "--sensitivity", s)
    case.inputs.append(s)
    return case


def sens_is_eval_json(fx, d):
    """an eval result passed as the sensitivity file"""
    s = text_file(d, "e.json", json.dumps({"run": {"stage": "eval"}, "text": {"kld_mean": 0.1}}))
    case = quantize_of(fx, fx["tiny"], d, "--kld-budget", 0.05, "--sensitivity", s)
    case.inputs.append(s)
    return case


# --- recipes ------------------------------------------------------------------------------


def _recipe(doc: str, body: str):
    def case(fx, d):
        return recipe_case(fx, d, body)

    case.__doc__ = doc
    return case


# a [quantize] table with one bad value each: (what, the TOML)
for _name, (_doc, _body) in {
    "recipe_duplicate_key": ("a recipe with the same key twice in [quantize]",
                             "[quantize]\ncalib_size = 8\ncalib_size = 16\n"),
    "recipe_list_value": ("calib_size = [8, 16] in a recipe", "[quantize]\ncalib_size = [8, 16]\n"),
    "recipe_unknown_qformat": ('qformat = "int4" in a recipe',
                               '[quantize]\nqformat = "int4"\ncalib_size = 8\n'),
    "recipe_bool_for_int": ("calib_size = true in a recipe", "[quantize]\ncalib_size = true\n"),
    "recipe_float_for_int": ("calib_size = 16.5 in a recipe", "[quantize]\ncalib_size = 16.5\n"),
    "recipe_misspelled_key": ("calib_sizes = 8 (a typo) in [quantize]",
                              "[quantize]\ncalib_sizes = 8\n"),
}.items():  # fmt: skip
    globals()[_name] = _recipe(_doc, _body)


def recipe_string_for_path_list(fx, d):
    """bench's model = "a b" (a string where a list of paths goes) in a recipe"""
    r = text_file(d, "r.toml", f'[bench]\nmodel = 3\nout = "{d / "b.json"}"\n')
    return Case(vq("bench", "--recipe", r), out=d / "b.json", inputs=[r])


def recipe_latin1(fx, d):
    """a recipe saved in Latin-1 (a comment with an accented name)"""
    case = recipe_case(fx, d, "")
    r = text_file(d, "r.toml", "# r\xe9glages\n[quantize]\ncalib_size = 8\n".encode("latin-1"))
    case.inputs = [r]
    return case


# --- eval, bench, infer, serve, parity, report, inspect, make-tiny ---------------------------


def eval_out_txt(fx, d):
    """eval --out e.txt (not a .json)"""
    case = eval_of(fx, fx["export"], d)
    case.argv[-1] = str(d / "e.txt")
    case.out = d / "e.txt"
    return case


def eval_max_samples_zero(fx, d):
    """eval --max-samples 0 --image-samples 0 (nothing to score)"""
    out = d / "e.json"
    argv = vq("eval", "--base", fx["tiny"], "--quantized", fx["export"], "--calib", fx["calib"],
              "--image-samples", 0, "--max-samples", 0, "--no-vllm", "--out", out)  # fmt: skip
    return Case(argv, out=out)


def eval_seq_len_one(fx, d):
    """eval --seq-len 1 (no next token to score)"""
    return eval_of(fx, fx["export"], d, "--seq-len", 1)


def eval_text_empty(fx, d):
    """eval --text on an empty file"""
    t = text_file(d, "t.txt", "")
    out = d / "e.json"
    argv = vq("eval", "--base", fx["tiny"], "--quantized", fx["export"], "--text", t,
              "--image-samples", 0, "--no-vllm", "--out", out)  # fmt: skip
    return Case(argv, out=out, inputs=[t])


def eval_export_of_other_model(fx, d):
    """eval --base a different model than the export was made from"""
    other = d / "other"
    case = Case(vq("make-tiny", "--out", other, "--seed", 7))
    import subprocess

    from run import run_env

    subprocess.run([str(a) for a in case.argv], check=True, env=run_env(), capture_output=True)
    out = d / "e.json"
    argv = vq("eval", "--base", other, "--quantized", fx["export"], *EVAL, "--out", out)
    return Case(argv, out=out, inputs=[other])


def bench_out_no_suffix(fx, d):
    """bench --out b (no .json)"""
    out = d / "b"
    return Case(vq("bench", "--model", fx["export"], "--out", out), out=out)


def bench_repeats_zero(fx, d):
    """bench --repeats 0"""
    out = d / "b.json"
    return Case(vq("bench", "--model", fx["export"], "--repeats", 0, "--out", out), out=out)


def bench_same_model_twice(fx, d):
    """bench --model X X (the same checkpoint twice)"""
    out = d / "b.json"
    return Case(vq("bench", "--model", fx["export"], fx["export"], "--out", out), out=out)


def infer_prompt_empty_text(fx, d):
    """a prompts file with an empty prompt"""
    return prompts_case(fx, d, "p.jsonl", '{"text": ""}\n')


def infer_prompt_image_missing(fx, d):
    """a prompt whose image file does not exist"""
    return prompts_case(
        fx, d, "p.jsonl", json.dumps({"text": "What is it?", "image": "nope.png"}) + "\n"
    )


def infer_prompt_text_is_list(fx, d):
    """a prompt whose text is a list of strings"""
    return prompts_case(fx, d, "p.jsonl", json.dumps({"text": ["a", "b"]}) + "\n")


def infer_max_tokens_zero(fx, d):
    """infer --max-tokens 0"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--max-tokens", 0, "--out-dir", out), out=out)


def infer_temperature_negative(fx, d):
    """infer --temperature -1"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--temperature", -1, "--out-dir", out),
                out=out)  # fmt: skip


def infer_top_p_two(fx, d):
    """infer --top-p 2"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--top-p", 2, "--out-dir", out), out=out)


def infer_seed_negative(fx, d):
    """infer --seed -1"""
    out = d / "s"
    return Case(vq("infer", "--model", fx["export"], "--seed", -1, "--out-dir", out), out=out)


def infer_prompts_bom(fx, d):
    """a prompts file with a BOM and CRLF: runs, and the samples hold no BOM"""
    p = text_file(d, "p.jsonl", b'\xef\xbb\xbf{"text": "Say hi."}\r\n')
    out = d / "s"
    case = Case(vq("infer", "--model", fx["export"], "--prompts", p, "--max-tokens", 4,
                   "--out-dir", out), expect=0, out=out, inputs=[p])  # fmt: skip

    def check():
        s = out / "sample_01.txt"
        if not s.exists():
            return "no sample_01.txt"
        return "a BOM reached the sample" if "\ufeff" in s.read_text() else None

    case.check = check
    return case


def serve_port_out_of_range(fx, d):
    """serve --port 70000"""
    return Case(vq("serve", "--model", fx["export"], "--port", 70000), timeout=180)


def serve_host_bad(fx, d):
    """serve --host 'not a host'"""
    return Case(vq("serve", "--model", fx["export"], "--host", "not a host", "--port", 18377),
                timeout=180)  # fmt: skip


def serve_vllm_args_unbalanced(fx, d):
    """serve --vllm-args with an unclosed quote"""
    return Case(vq("serve", "--model", fx["export"], "--vllm-args", '--max-num-seqs "4',
                   "--print-command"), timeout=180)  # fmt: skip


def parity_model_no_config(fx, d):
    """parity --model an empty folder"""
    (d / "empty").mkdir()
    out = d / "p"
    jsonl = fx["calib"].with_suffix(".jsonl")
    return Case(vq("parity", "--model", d / "empty", "--calib", jsonl, "--out", out), out=out)


def parity_hf_ptq_missing(fx, d):
    """parity --hf-ptq naming a folder that does not exist"""
    out = d / "p"
    jsonl = fx["calib"].with_suffix(".jsonl")
    return Case(vq("parity", "--model", fx["tiny"], "--calib", jsonl, "--calib-size", 16,
                   "--hf-ptq", d / "nope", "--out", out), out=out)  # fmt: skip


def parity_calib_txt(fx, d):
    """parity --calib the .txt (hf_ptq reads the .jsonl)"""
    out = d / "p"
    return Case(vq("parity", "--model", fx["tiny"], "--calib", fx["calib"], "--out", out), out=out)


def inspect_diff_not_checkpoint(fx, d):
    """inspect --diff a folder that is no checkpoint"""
    (d / "notes").mkdir()
    (d / "notes" / "a.txt").write_text("x")
    return Case(vq("inspect", fx["export"], "--diff", d / "notes"))


def inspect_file_not_folder(fx, d):
    """inspect the model.safetensors file instead of its folder"""
    return Case(vq("inspect", fx["export"] / "model.safetensors"))


def report_model_root_missing(fx, d):
    """report --model-root naming a folder that does not exist"""
    out = d / "index.md"
    return Case(vq("report", "--model-root", d / "nope", "--index", out), out=out)


def make_tiny_gguf_not_gguf(fx, d):
    """make-tiny --lm-gguf a text file"""
    g = text_file(d, "model.gguf", "not a gguf\n")
    out = d / "t"
    return Case(vq("make-tiny", "--lm-gguf", g, "--out", out), out=out, inputs=[g])


def make_tiny_seed_negative(fx, d):
    """make-tiny --seed -1"""
    out = d / "t"
    return Case(vq("make-tiny", "--seed", -1, "--out", out), out=out)


def pipeline_recipe_empty(fx, d):
    """pipeline --recipe an empty TOML file"""
    r = text_file(d, "r.toml", "")
    return Case(vq("pipeline", "--recipe", r), inputs=[r])
