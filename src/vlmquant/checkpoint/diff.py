"""Tensor-by-tensor comparison of two checkpoints, and of their configs.

    vlmquant inspect A --diff B [--json]

Reads one tensor pair at a time (a 7 GB checkpoint needs no more memory than its largest
tensor). Tensors are compared by their stored bytes, so "identical" means bit-identical; a
difference is described by kind (dtype, shape, values), and values by how many elements differ,
the largest absolute difference, and for a scalar (a scale) the ratio B / A. Configs:
`hf_quant_config.json` and `config.json`, compared key by key (nested keys dotted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmquant.checkpoint.headers import read_json, tensors

CONFIG_FILES = ("hf_quant_config.json", "config.json")
TEXT_ROWS = 20  # changed tensors listed in the text form (all of them are in --json)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_differences(a: Path, b: Path) -> dict[str, list[dict[str, Any]]]:
    """Per config file: the keys whose values differ (a missing file or key is `None`)."""
    out = {}
    for name in CONFIG_FILES:
        fa, fb = (_flatten(read_json(d / name)) if (d / name).is_file() else {} for d in (a, b))
        out[name] = [
            {"key": k, "a": fa.get(k), "b": fb.get(k)}
            for k in sorted(fa.keys() | fb.keys())
            if fa.get(k) != fb.get(k)
        ]
    return out


def _tensor_change(name: str, x, y) -> dict[str, Any] | None:
    import torch

    change: dict[str, Any] = {"name": name}
    if x.dtype != y.dtype or x.shape != y.shape:
        change.update(
            kind="dtype" if x.dtype != y.dtype else "shape",
            a=f"{x.dtype} {list(x.shape)}".replace("torch.", ""),
            b=f"{y.dtype} {list(y.shape)}".replace("torch.", ""),
        )
        return change
    if torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)):
        return None
    xf, yf = x.float(), y.float()
    differ = xf != yf
    change.update(
        kind="values",
        elements_differ=int(differ.sum()),
        elements=x.numel(),
        max_abs_diff=float((xf - yf).abs().max()),
    )
    if x.numel() == 1:
        change.update(a=float(xf), b=float(yf), ratio=float(yf) / float(xf) if float(xf) else None)
    return change


def diff_checkpoints(a: Path, b: Path) -> dict[str, Any]:
    from safetensors import safe_open

    files_a = {t.name: t.file for t in tensors(a)}
    files_b = {t.name: t.file for t in tensors(b)}
    common = sorted(files_a.keys() & files_b.keys())
    changed = []
    handles: dict[Path, Any] = {}

    def get(folder: Path, file: str, name: str):
        path = folder / file
        if path not in handles:
            handles[path] = safe_open(str(path), framework="pt")
        return handles[path].get_tensor(name)

    for name in common:
        change = _tensor_change(name, get(a, files_a[name], name), get(b, files_b[name], name))
        if change:
            changed.append(change)
    configs = config_differences(a, b)
    only_a, only_b = (
        sorted(files_a.keys() - files_b.keys()),
        sorted(files_b.keys() - files_a.keys()),
    )
    return {
        "a": str(a),
        "b": str(b),
        "identical": not (changed or only_a or only_b or any(configs.values())),
        "tensors": {
            "compared": len(common),
            "bit_identical": len(common) - len(changed),
            "only_in_a": only_a,
            "only_in_b": only_b,
            "changed": changed,
        },
        "configs": configs,
    }


def _describe(c: dict[str, Any]) -> str:
    if c["kind"] != "values":
        return f"{c['kind']}: {c['a']} -> {c['b']}"
    if "ratio" in c:
        ratio = f"{c['ratio']:.6f}" if c["ratio"] is not None else "n/a"
        return f"{c['a']:.9g} -> {c['b']:.9g} (B/A {ratio})"
    return (
        f"{c['elements_differ']:,} of {c['elements']:,} elements differ, "
        f"max |diff| {c['max_abs_diff']:.4g}"
    )


def render_diff(d: dict[str, Any]) -> str:
    t = d["tensors"]
    lines = [
        f"A: {d['a']}",
        f"B: {d['b']}",
        f"tensors: {t['compared']} in both, {t['bit_identical']} bit-identical, "
        f"{len(t['changed'])} differ; {len(t['only_in_a'])} only in A, "
        f"{len(t['only_in_b'])} only in B",
    ]
    for label, names in (("only in A", t["only_in_a"]), ("only in B", t["only_in_b"])):
        lines += [f"  {label}: {n}" for n in names[:TEXT_ROWS]]
    for c in t["changed"][:TEXT_ROWS]:
        lines.append(f"  {c['name']}: {_describe(c)}")
    if len(t["changed"]) > TEXT_ROWS:
        lines.append(f"  ... {len(t['changed']) - TEXT_ROWS} more (--json lists all)")
    for name, diffs in d["configs"].items():
        lines.append(f"{name}: " + ("equal" if not diffs else f"{len(diffs)} keys differ"))
        lines += [f"  {x['key']}: {x['a']!r} -> {x['b']!r}" for x in diffs[:TEXT_ROWS]]
    lines.append("verdict: " + ("identical" if d["identical"] else "different"))
    return "\n".join(lines)
