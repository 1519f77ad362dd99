"""What quantize puts beside ModelOpt's export: the source's processor and tokenizer files, and the
check-vllm verdict against the installed vLLM (check_vllm.json)."""

from __future__ import annotations

from pathlib import Path

# What a VLM checkpoint needs beside its weights and config to tokenize and preprocess.
PROCESSOR_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.*",
    "*preprocessor_config.json",
    "processor_config.json",
)


def copy_processor_files(src: Path, dst: Path, processor) -> None:
    """The source's tokenizer and processor files, byte for byte. Not `save_pretrained`: the
    calibration loop tokenized with truncation at --calib-seq and left padding, a fast
    tokenizer keeps that state, and a re-saved tokenizer.json would truncate every prompt of
    the export at --calib-seq tokens (an image of more than that many tokens then fails)."""
    import shutil

    files = sorted({f for pattern in PROCESSOR_FILES for f in src.glob(pattern) if f.is_file()})
    for f in files:
        shutil.copy2(f, dst / f.name)
    if not files:  # a source without them loaded its processor some other way: save that
        processor.save_pretrained(dst)


def record_check_vllm(export: Path) -> dict | str:
    """check-vllm against the installed vLLM, recorded as check_vllm.json in the export (the
    report shows it); a summary for run.json, or why it did not run."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "not run: vLLM is not importable here"
    from vlmquant.checkpoint import check_vllm

    verdict = check_vllm.check(export)
    verdict.checkpoint = "(this export)"  # the temporary path it was checked at means nothing
    (export / "check_vllm.json").write_text(verdict.text())
    return {k: getattr(verdict, k) for k in ("ok", "vllm_version", "vllm_build", "tensors_checked")}
