"""Int8 weight storage for checkpoints: half the bytes of float16 for the large matrices of a model.

A floating tensor of at least `min_elements` entries and two or more axes is stored as int8 with one float32
scale per row (per output unit of a Linear or convolution, per entry of an embedding table): `w ~= q * scale`,
`scale = max |row| / 127`, so each weight is off by at most half a step of its own row. Small tensors (biases,
norms, scalars) keep their dtype. The scales sit beside the weights under `<name>` + `SCALE_SUFFIX`;
`dequantize_state` turns such a file back into float tensors (`codec.common.checkpoints.load_safetensors` does it
on every load, so a reader never sees int8).
"""
from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_row_scale"
MIN_ELEMENTS = 4096


def quantize_state(state: dict[str, torch.Tensor], min_elements: int = MIN_ELEMENTS) -> dict[str, torch.Tensor]:
    """Int8 copies with row scales of the large floating matrices of `state`; other tensors unchanged.

    Args:
        state: name -> tensor (a `state_dict`).
        min_elements: smaller tensors are kept as they are.
    Returns:
        A new dict: for each quantised `name`, `name` holds int8 `[R, ...]` and `name + SCALE_SUFFIX` float32 `[R]`.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"tensor name '{name}' ends with the reserved suffix {SCALE_SUFFIX}")
        if not tensor.is_floating_point() or tensor.dim() < 2 or tensor.numel() < min_elements:
            out[name] = tensor
            continue
        rows = tensor.detach().float().reshape(tensor.shape[0], -1)  # [R, C]
        scale = rows.abs().amax(dim=1) / 127.0  # [R]
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stays zero
        out[name] = torch.round(rows / safe[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
        out[name + SCALE_SUFFIX] = scale
    return out


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `quantize_state`: every int8 tensor with a row scale becomes float32 `q * scale`; a state
    without scales is returned as it is."""
    scaled = [name for name in state if name.endswith(SCALE_SUFFIX)]
    if not scaled:
        return state
    out = {name: tensor for name, tensor in state.items() if not name.endswith(SCALE_SUFFIX)}
    for key in scaled:
        name = key[: -len(SCALE_SUFFIX)]
        q, scale = out.get(name), state[key]
        if q is None or q.dtype != torch.int8 or scale.dim() != 1 or scale.shape != q.shape[:1]:
            raise ValueError(f"'{key}' has no int8 tensor '{name}' with {scale.numel()} rows beside it")
        out[name] = (q.float().reshape(q.shape[0], -1) * scale.float()[:, None]).reshape(q.shape)
    return out
