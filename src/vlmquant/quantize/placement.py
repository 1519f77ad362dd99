"""Where quantize runs the model: the devices its modules were placed on, and the calibration
batch size (ModelOpt's probe on a GPU, a fixed one on CPU)."""

from __future__ import annotations

from typing import Any

CPU_BATCH_SIZE = 16


def devices_of(model, device_map: str) -> dict:
    """Where the loaded model's weights sit: the device_map asked for, and parameter bytes per
    device (with several GPUs, the split accelerate chose)."""
    by_device: dict[str, int] = {}
    for p in model.parameters():
        key = str(p.device)
        by_device[key] = by_device.get(key, 0) + p.numel() * p.element_size()
    return {"device_map": device_map, "parameter_bytes_by_device": by_device}


def auto_batch_size(language_model, cfg: Any, device: str, n: int) -> int:
    """--batch-size, or hf_ptq's automatic one (`--batch_size 0`): ModelOpt's memory probe on
    the language model with 1.1x headroom, at most the number of samples. The probe measures
    CUDA memory, so on CPU the default is a fixed batch."""
    if cfg.batch_size:
        return cfg.batch_size
    if device == "cpu":
        return min(CPU_BATCH_SIZE, n)
    from modelopt.torch.utils.dataset_utils import get_max_batch_size

    probed = get_max_batch_size(
        language_model, max_sample_length=cfg.calib_seq, sample_memory_usage_ratio=1.1
    )
    return min(probed, n)
