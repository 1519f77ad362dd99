"""Quantizable units: the groups of linears vLLM runs as one layer, and the FP8 KV cache.

vLLM fuses q/k/v into one `qkv_proj` and gate/up into one `gate_up_proj`, and a fused layer has
one precision; so a decoder layer has four units (qkv, o, gate_up, down), and the FP8 KV cache
is one more unit for the whole model (vLLM's KV-cache dtype is one setting per engine), which
vLLM's --kv-cache-dtype-skip-layers splits per decoder layer (`Switchboard.set_kv_layer`).

`Switchboard` holds an emulated FP8 export (`vlmquant.eval.emulate`) beside the BF16 linears of
its base and sets each unit to FP8 or BF16 in place, so one loaded model measures any mix.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from torch import nn

GROUPS = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}
KV_UNIT = "kv_cache"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


@dataclasses.dataclass
class Unit:
    name: str  # e.g. "layers.3.gate_up" or "kv_cache"
    modules: list[str]  # hub names of the linears (empty for the KV cache)
    params: int  # weights the unit stores in FP8 (1 byte each instead of 2)

    @property
    def bytes_saved(self) -> int:
        """Weight bytes FP8 saves over BF16 for this unit (the scales are negligible)."""
        return self.params


def units_of(precision: dict[str, str], params: dict[str, int]) -> list[Unit]:
    """The language model's FP8 linears grouped as vLLM fuses them, in layer order."""
    by_unit: dict[tuple[int, str], list[str]] = {}
    for name, prec in precision.items():
        m = _LAYER.match(name)
        if prec != "FP8" or m is None:
            continue
        layer, leaf = int(m.group(1)), m.group(2)
        group = next((g for g, leaves in GROUPS.items() if leaf in leaves), None)
        if group is None:
            raise ValueError(f"{name}: an FP8 linear outside the known fused groups")
        by_unit.setdefault((layer, group), []).append(name)
    order = list(GROUPS)
    units = [
        Unit(f"layers.{layer}.{group}", sorted(mods), sum(params[m] for m in mods))
        for (layer, group), mods in sorted(
            by_unit.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))
        )
    ]
    return units


def modelopt_patterns(unit: str) -> list[str]:
    """ModelOpt quantizer-name patterns that select a unit's linears (`layers.1.` does not match
    `layers.10.`)."""
    m = re.fullmatch(r"layers\.(\d+)\.(\w+)", unit)
    if m is None or m.group(2) not in GROUPS:
        raise ValueError(f"{unit}: not a linear unit")
    return [f"*layers.{m.group(1)}.{leaf}.*" for leaf in GROUPS[m.group(2)]]


class Switchboard:
    """An emulated FP8 export whose units can be set to FP8 or BF16 one by one."""

    def __init__(self, model: nn.Module, base: Path, precision: dict[str, str]):
        from vlmquant.checkpoint.names import hub_name
        from vlmquant.eval.emulate import load_state

        self.model = model
        self.parents: dict[str, tuple[nn.Module, str]] = {}
        self.fp8: dict[str, nn.Module] = {}
        self.bf16: dict[str, nn.Module] = {}
        names = {hub_name(n): n for n, _ in model.named_modules()}
        base_state = load_state(base)
        for key, prec in precision.items():
            if prec != "FP8":
                continue
            full = names[key]
            parent_name, _, leaf = full.rpartition(".")
            parent = model.get_submodule(parent_name)
            fp8 = getattr(parent, leaf)
            w = base_state[f"{key}.weight"]
            bias = base_state.get(f"{key}.bias")
            linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=w.dtype)
            linear.weight.data.copy_(w)
            if bias is not None:
                linear.bias.data.copy_(bias)
            self.parents[key] = (parent, leaf)
            self.fp8[key] = fp8
            self.bf16[key] = linear.to(fp8.weight.device).eval()
        self.kv_scales = {
            m: m._vlmquant_kv_scales
            for m in model.modules()
            if getattr(m, "_vlmquant_kv_scales", None) is not None
        }
        self.kv_layers = {  # decoder layer index -> its attention module with KV scales
            int(m.group(1)): module
            for name, module in model.named_modules()
            if module in self.kv_scales and (m := re.search(r"layers\.(\d+)\.", name))
        }

    def params(self) -> dict[str, int]:
        return {k: m.weight.numel() for k, m in self.bf16.items()}

    def set_linears(self, names: list[str], fp8: bool) -> None:
        for key in names:
            parent, leaf = self.parents[key]
            setattr(parent, leaf, self.fp8[key] if fp8 else self.bf16[key])

    def set_kv(self, fp8: bool) -> None:
        for module, scales in self.kv_scales.items():
            module._vlmquant_kv_scales = scales if fp8 else None

    def set_kv_layer(self, layer: int, fp8: bool) -> None:
        module = self.kv_layers[layer]
        module._vlmquant_kv_scales = self.kv_scales[module] if fp8 else None

    def set_all(self, fp8: bool) -> None:
        self.set_linears(list(self.fp8), fp8)
        self.set_kv(fp8)

    def set_unit(self, unit: Unit, fp8: bool) -> None:
        if unit.name == KV_UNIT:
            self.set_kv(fp8)
        else:
            self.set_linears(unit.modules, fp8)
