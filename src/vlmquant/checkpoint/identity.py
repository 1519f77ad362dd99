"""Which model a checkpoint is: its weights' identity (config and weights sha256), whether two
checkpoints are the same model (architecture and vocabulary), and the record quantize keeps of
an export's source and calibration set (`export_record`, `check_made_from`,
`check_calibrated_on`)."""

from __future__ import annotations

import json
from pathlib import Path

from vlmquant.checkpoint.headers import read_config, read_json
from vlmquant.core.errors import BadInput

_IDENTITIES: dict[tuple, dict[str, str]] = {}  # per file stamp: the sha256s


def _vocabulary(path: Path) -> tuple | None:
    """What decides token ids: the BPE model and the added tokens (not padding settings)."""
    f = path / "tokenizer.json"
    if not f.is_file():
        return None
    tok = read_json(f)
    return (
        json.dumps(tok.get("model"), sort_keys=True),
        [(t["id"], t["content"]) for t in tok.get("added_tokens", [])],
    )


SAME_MODEL_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
)


def check_same_model(base: Path, other: Path, a: dict | None = None, b: dict | None = None) -> None:
    """`other` (an export) is of `base`'s model: same architecture, language-model shape and
    tokenizer; else bad input (comparing two different models gives numbers for neither)."""
    a = a if a is not None else read_config(base, "--base")
    b = b if b is not None else read_config(other, "--quantized")
    ta, tb = a.get("text_config", a), b.get("text_config", b)
    checks = {"architectures": (a.get("architectures"), b.get("architectures"))}
    checks.update({f"text_config.{k}": (ta.get(k), tb.get(k)) for k in SAME_MODEL_FIELDS})
    for field, (x, y) in checks.items():
        if x != y:
            raise BadInput(
                f"--base and --quantized differ in {field} ({x} vs {y}); compare a "
                "checkpoint with its own base"
            )
    va, vb = _vocabulary(base), _vocabulary(other)
    if va is not None and vb is not None and va != vb:
        raise BadInput(
            "--base and --quantized differ in tokenizer (tokenizer.json vocabulary "
            "or special tokens); compare a checkpoint with its own base"
        )


def weights_identity(path: Path) -> dict[str, str]:
    """What ties a result to the checkpoint it was made from: config.json's sha256 and the
    sha256 of its safetensors files' sha256s (one read of the weights). Remembered per process
    while the files' sizes and mtimes stay the same: a stage that checks a base and then records
    it (sensitivity --quantized, quantize --kld-budget) reads its weights once."""
    import hashlib

    from vlmquant.core.runinfo import sha256_file

    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _IDENTITIES:
        weights = hashlib.sha256()
        for f in files[1:]:
            weights.update(sha256_file(f).encode())
        _IDENTITIES[stamp] = {
            "config_sha256": sha256_file(files[0]),
            "weights_sha256": weights.hexdigest(),
        }
    return dict(_IDENTITIES[stamp])


def export_record(export: Path):
    """The run.json quantize wrote in `export` (`results.quantize.QuantizeRun`), or None for a
    checkpoint without one (an export another tool made, or a make-tiny checkpoint, whose
    run.json is make-tiny's); a run.json of no known schema is bad input."""
    from vlmquant.core.typed import SCHEMA_KEY
    from vlmquant.results.quantize import QuantizeRun

    run = export / "run.json"
    if not run.is_file():
        return None
    data = read_json(run)
    tag = data.get(SCHEMA_KEY) if isinstance(data, dict) else None
    if isinstance(tag, str) and tag.startswith("vlmquant.") and tag != QuantizeRun.schema():
        return None  # another stage's record (make-tiny writes one beside its checkpoint)
    return QuantizeRun.checked(data, run)  # read once above


def check_made_from(export: Path, base: Path, flag: str = "--base") -> None:
    """An export whose run.json records the checkpoint it was made from (quantize writes
    `source_identity`) is compared only with that checkpoint: the same architecture with other
    weights (another fine-tune, another seed) gives numbers for neither. Exports without the
    record are taken as they are."""
    record = export_record(export)
    recorded = record.source_identity if record else None
    if recorded and recorded != weights_identity(base):
        made_from = record.config.get("model", "?")
        raise BadInput(
            f"{flag} {base}: not the checkpoint {export} was quantized from (its config or "
            f"weights differ from those quantize recorded; it was made from {made_from}); pass "
            "that checkpoint"
        )


def check_calibrated_on(export: Path, calib: Path) -> None:
    """eval's --calib names the set held out of its text: it must be the export's own
    calibration set (run.json records the file quantize read and its sha256)."""
    record = export_record(export)
    recorded = (record.inputs.get("calib") if record else None) or {}
    if not recorded.get("sha256"):
        return
    read = Path(recorded["path"])
    mine = calib if read.suffix == calib.suffix else calib.with_suffix(read.suffix)
    from vlmquant.core.runinfo import sha256_file

    if not mine.is_file() or sha256_file(mine) != recorded["sha256"]:
        raise BadInput(
            f"--calib {calib}: not the set {export} was calibrated on ({read}); pass that set, "
            "so that its captions stay out of the evaluation text"
        )
