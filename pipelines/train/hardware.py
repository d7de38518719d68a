"""Peak FLOP/s of accelerators, for model FLOPs utilisation (MFU).

Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity). A device not listed has
no MFU unless `train.peak_tflops` says its peak.
"""

from __future__ import annotations

import torch

BF16_PEAK_TFLOPS = {  # matched against torch.cuda.get_device_name(), most specific first
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
}


def peak_flops(device: torch.device, configured_tflops: float | None) -> float | None:
    """The device's peak FLOP/s, from the config or the table; None when unknown."""
    if configured_tflops:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None
