"""The sensitivity stage's measurements: the KLD of a switchboard's mix against the base, and
each decoder layer's FP8 KV cache alone and in the export."""

from __future__ import annotations


def measure_kv_layers(board, scorer: Scorer, whole_kld: float, progress) -> list[dict]:
    """Per decoder layer with an FP8 KV cache: its cost alone (only that layer's KV cache FP8,
    as the units are measured) and its gain in the export (the export's KLD less the KLD with
    that layer's KV cache BF16, everything else as exported). The FP8 KV cache's error meets
    the linears' (a layer's cost alone need not be what it adds among FP8 linears), so
    `--kld-budget` ranks and shares out the layers by gain."""
    rows = []
    for layer in progress(sorted(board.kv_layers), desc="KV cache per layer"):
        board.set_all(False)
        board.set_kv_layer(layer, True)
        alone = scorer.score()
        board.set_all(True)
        board.set_kv_layer(layer, False)
        gain = whole_kld - scorer.score()["kld_mean"]
        rows.append(
            {
                "layer": layer,
                "cost": alone["kld_mean"],
                "top1_agreement": alone["top1_agreement"],
                "gain": gain,
            }
        )
    board.set_all(True)
    return rows


class Scorer:
    """KLD of the switchboard's current mix against the base, on fixed encoded text."""

    def __init__(self, board, encoded: list[dict], device: str):
        import torch

        self.board, self.encoded, self.device = board, encoded, device
        board.set_all(False)  # all BF16: the base itself, with the same engine arithmetic
        self.base_logp = [torch.log_softmax(self._logits(enc), -1) for enc in encoded]

    def _logits(self, enc):
        import torch

        with torch.no_grad():
            ids = {k: v.to(self.device) for k, v in enc.items()}
            return self.board.model(**ids).logits[0, :-1].float()

    def score(self) -> dict[str, float]:
        import torch

        kld_sum, same, n = 0.0, 0, 0
        for enc, lb in zip(self.encoded, self.base_logp, strict=True):
            lq = torch.log_softmax(self._logits(enc), -1)
            kld_sum += float((lb.exp() * (lb - lq)).sum(-1).clamp_min(0).double().sum())
            same += int((lb.argmax(-1) == lq.argmax(-1)).sum())
            n += lb.shape[0]
        return {"kld_mean": kld_sum / n, "top1_agreement": same / n}
