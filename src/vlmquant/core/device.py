"""`--device auto|cuda|cpu` -> the device a stage runs on."""

from vlmquant.core.errors import BadInput


def resolve_device(requested: str, prefer_gpu: bool = True) -> str:
    """`auto` takes the GPU when there is one (and `prefer_gpu`); `cuda` without one is bad
    input."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if requested == "auto":
        return "cuda" if prefer_gpu and torch.cuda.is_available() else "cpu"
    return requested
