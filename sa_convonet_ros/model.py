"""The ConvONet grid model: point encoder -> feature volume -> 3D U-Net -> trilinear lookup -> decoder.

Points live in the unit cube [-0.5, 0.5]^3 of the published model. `encode(points)` returns the feature
volume, `decode(queries, features)` the occupancy logits. Module and parameter names follow the published
`room_grid64.pt`, so that checkpoint loads unchanged; our own checkpoints also carry their architecture.
Pure torch: voxel pooling uses `scatter_reduce`, so no compiled extensions are needed.
"""
from __future__ import annotations

import dataclasses
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .devices import resolve_device

CHECKPOINT_FORMAT = "sa_convonet_ros/checkpoint-v1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "models" / "default.pt"
# room_grid64's resolution is not recorded in its state dict (the U-Net is resolution-agnostic).
PUBLISHED_GRID_RESOLUTION = 64


def normalize_coordinates(points: torch.Tensor, padding: float) -> torch.Tensor:
    """Unit-cube points -> [0, 1): the published model's mapping, clamped just inside the volume."""
    p = points / (1.0 + padding + 1e-3) + 0.5
    p = torch.where(p >= 1.0, torch.full_like(p, 1.0 - 1e-3), p)
    return torch.where(p < 0.0, torch.zeros_like(p), p)


def voxel_index(points: torch.Tensor, resolution: int, padding: float) -> torch.Tensor:
    """Flat voxel index x0 + R*(x1 + R*x2) of each point (axis 0 varies fastest)."""
    cell = (normalize_coordinates(points, padding) * resolution).long()
    return cell[..., 0] + resolution * (cell[..., 1] + resolution * cell[..., 2])


class ResnetBlockFC(nn.Module):
    """Fully connected residual block: out = shortcut(x) + fc_1(relu(fc_0(relu(x))))."""

    def __init__(self, size_in: int, size_out: int | None = None):
        super().__init__()
        size_out = size_out or size_in
        size_hidden = min(size_in, size_out)
        self.fc_0 = nn.Linear(size_in, size_hidden)
        self.fc_1 = nn.Linear(size_hidden, size_out)
        self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None
        nn.init.zeros_(self.fc_1.weight)  # each block starts as (nearly) the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.fc_1(F.relu(self.fc_0(F.relu(x))))
        return (x if self.shortcut is None else self.shortcut(x)) + dx


def _single_conv(channels_in: int, channels_out: int) -> nn.Sequential:
    # GroupNorm -> Conv3d -> ReLU; the norm acts on the conv's input channels.
    groups = 8 if channels_in >= 8 else 1
    return nn.Sequential(OrderedDict(
        groupnorm=nn.GroupNorm(groups, channels_in),
        conv=nn.Conv3d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
        ReLU=nn.ReLU(inplace=True),
    ))


def _double_conv(channels_in: int, channels_out: int, encoder: bool) -> nn.Sequential:
    middle = max(channels_out // 2, channels_in) if encoder else channels_out
    return nn.Sequential(OrderedDict(SingleConv1=_single_conv(channels_in, middle),
                                     SingleConv2=_single_conv(middle, channels_out)))


class UNetEncoderLevel(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, pool: bool):
        super().__init__()
        self.pooling = nn.MaxPool3d(kernel_size=2) if pool else None
        self.basic_module = _double_conv(channels_in, channels_out, encoder=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling is not None:
            x = self.pooling(x)
        return self.basic_module(x)


class UNetDecoderLevel(nn.Module):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.basic_module = _double_conv(channels_in, channels_out, encoder=False)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat([skip, x], dim=1))


class UNet3D(nn.Module):
    def __init__(self, channels: int, base_channels: int, levels: int):
        super().__init__()
        widths = [base_channels * 2 ** i for i in range(levels)]
        self.encoders = nn.ModuleList(
            UNetEncoderLevel(channels if i == 0 else widths[i - 1], widths[i], pool=i > 0) for i in range(levels))
        self.decoders = nn.ModuleList(
            UNetDecoderLevel(widths[i] + widths[i + 1], widths[i]) for i in reversed(range(levels - 1)))
        self.final_conv = nn.Conv3d(base_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = decoder(skip, x)
        return self.final_conv(x)


class LocalPoolPointnet(nn.Module):
    """Per-point features, max-pooled within voxels between blocks, averaged into a feature volume."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.hidden_dim
        self.resolution = config.grid_resolution
        self.padding = config.padding
        self.c_dim = config.c_dim
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden, hidden) for _ in range(config.encoder_blocks))
        self.fc_c = nn.Linear(hidden, config.c_dim)
        self.unet3d = UNet3D(config.c_dim, config.unet_base_channels, config.unet_levels)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, _ = points.shape
        cells = self.resolution ** 3
        index = voxel_index(points, self.resolution, self.padding)
        if mask is not None:  # padded points go to a spare bin that is dropped at the end
            index = torch.where(mask, index, torch.full_like(index, cells))
        net = self.blocks[0](self.fc_pos(points))
        for block in self.blocks[1:]:
            pooled = _scatter(net, index, cells + 1, "amax").gather(1, _expand(index, net.shape[-1]))
            net = block(torch.cat([net, pooled], dim=-1))
        c = self.fc_c(net)
        volume = _scatter(c, index, cells + 1, "mean")[:, :cells]
        volume = volume.transpose(1, 2).reshape(batch, self.c_dim, *(self.resolution,) * 3)
        return self.unet3d(volume)


def _expand(index: torch.Tensor, channels: int) -> torch.Tensor:
    return index.unsqueeze(-1).expand(*index.shape, channels)


def _scatter(values: torch.Tensor, index: torch.Tensor, bins: int, reduce: str) -> torch.Tensor:
    """Reduce per-point values [B, N, C] into per-voxel values [B, bins, C]; empty voxels are 0."""
    out = values.new_zeros(values.shape[0], bins, values.shape[-1])
    return out.scatter_reduce(1, _expand(index, values.shape[-1]), values, reduce=reduce, include_self=False)


class LocalDecoder(nn.Module):
    """Occupancy logit of query points from trilinearly interpolated grid features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.hidden_dim
        self.padding = config.padding
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.ModuleList(nn.Linear(config.c_dim, hidden) for _ in range(config.decoder_blocks))
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden) for _ in range(config.decoder_blocks))
        self.fc_out = nn.Linear(hidden, 1)

    def sample_features(self, queries: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
        grid = 2.0 * normalize_coordinates(queries, self.padding) - 1.0
        sampled = F.grid_sample(volume, grid[:, :, None, None], mode="bilinear", padding_mode="border",
                                align_corners=True)
        return sampled.squeeze(-1).squeeze(-1).transpose(1, 2)  # [B, M, C]

    def forward(self, queries: torch.Tensor, volume: torch.Tensor | None = None,
                sampled: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, M] of queries [B, M, 3] from the feature volume, or from their features already
        `sampled` from it ([B, M, C])."""
        c = self.sample_features(queries, volume) if sampled is None else sampled
        net = self.fc_p(queries)
        for fc_c, block in zip(self.fc_c, self.blocks):
            net = block(net + fc_c(c))
        return self.fc_out(F.relu(net)).squeeze(-1)

    def forward_per_window(self, stacked: dict[str, torch.Tensor], queries: torch.Tensor,
                           volume: torch.Tensor | None = None, sampled: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` for a batch of W windows that each have their own copy of some parameters: `stacked`
        maps a parameter's name (`blocks.0.fc_0.weight`) to its [W, ...] stack; the others are shared.
        Each layer is one batched matrix product (what vmap would make of it, without its per-call cost)."""
        if not stacked:
            return self(queries, volume, sampled)
        c = self.sample_features(queries, volume) if sampled is None else sampled

        def linear(name: str, x: torch.Tensor) -> torch.Tensor:
            module = self.get_submodule(name)
            weight, bias = stacked.get(f"{name}.weight", module.weight), stacked.get(f"{name}.bias", module.bias)
            if weight.dim() == 3 and len(weight) == 1:  # one window (the field's decodes): a fused addmm, no bmm
                weight, bias = weight[0], (bias[0] if bias is not None and bias.dim() == 2 else bias)
            if weight.dim() == 2 and (bias is None or bias.dim() == 1):
                return F.linear(x, weight, bias)
            out = F.linear(x, weight) if weight.dim() == 2 else torch.bmm(x, weight.transpose(1, 2))
            return out if bias is None else out + (bias.unsqueeze(-2) if bias.dim() == 2 else bias)

        net = linear("fc_p", queries)
        for i in range(len(self.blocks)):
            net = net + linear(f"fc_c.{i}", c)
            net = net + linear(f"blocks.{i}.fc_1", F.relu(linear(f"blocks.{i}.fc_0", F.relu(net))))
        return linear("fc_out", F.relu(net)).squeeze(-1)


class ConvONet(nn.Module):
    """Encoder + decoder. `forward(points, queries)` = `decode(queries, encode(points))`."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder = LocalPoolPointnet(self.config)
        self.decoder = LocalDecoder(self.config)

    def encode(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """points [B, N, 3] in the unit cube (optional bool mask [B, N] of real points) -> features."""
        return self.encoder(points, mask)

    def decode(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """queries [B, M, 3] in the unit cube -> occupancy logits [B, M]."""
        return self.decoder(queries, features)

    def forward(self, points: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor | None = None):
        return self.decode(queries, self.encode(points, mask))


# ------------------------------------------------------------------------------------------- checkpoints

def save_model(model: ConvONet, path: str | Path, *, weights_dtype: torch.dtype | None = None,
               **metadata: Any) -> Path:
    """Write a self-describing checkpoint: architecture, weights (optionally stored as `weights_dtype`,
    e.g. float16 for a smaller file; loading restores float32) and free-form metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().to(weights_dtype or v.dtype) for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": dataclasses.asdict(model.config),
                "model": state, "metadata": metadata}, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file into a dict, with errors that name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ValueError(f"checkpoint {path} could not be read (truncated, corrupt or not a torch file): "
                         f"{_load_failure(error)}") from error
    if not isinstance(data, dict) or "model" not in data or not isinstance(data["model"], dict):
        raise ValueError(f"checkpoint {path} has no 'model' state dict (keys: "
                         f"{sorted(data)[:10] if isinstance(data, dict) else type(data).__name__})")
    return data


def _load_failure(error: Exception) -> str:
    """What went wrong in torch.load, in a few words. Its safe loader's own message advises loading with
    weights_only=False, which runs arbitrary code from the file and cannot help a corrupt one: only the
    underlying reason is kept."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in text:
        reason = str(error.__context__ or "").split(". Please use")[0].strip()
        if reason.startswith("Unsupported global"):
            return f"it holds Python objects besides tensors and plain data, which are not loaded ({reason})"
        return f"not a torch checkpoint ({reason or 'unreadable pickle data'})"
    first_sentence = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(error).__name__}: {first_sentence}"


def _numpy_scalar_globals() -> list:
    # Published checkpoints may hold numpy scalars beside the weights (e.g. loss_val_best); allow those only.
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    return [np.dtype, core.multiarray.scalar,
            *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32))]


def config_from_state_dict(state: dict[str, torch.Tensor], grid_resolution: int) -> ModelConfig:
    """Infer the architecture of a published-layout state dict from its parameter shapes."""
    try:
        hidden = state["decoder.fc_p.weight"].shape[0]
        encoder_hidden = state["encoder.fc_c.weight"].shape[1]
        if hidden != encoder_hidden:
            raise ValueError(f"encoder width {encoder_hidden} differs from decoder width {hidden}")
        levels = len({k.split(".")[3] for k in state if k.startswith("encoder.unet3d.encoders.")})
        return ModelConfig(
            c_dim=state["encoder.fc_c.weight"].shape[0],
            hidden_dim=hidden,
            grid_resolution=grid_resolution,
            unet_levels=levels,
            unet_base_channels=state["encoder.unet3d.final_conv.weight"].shape[1],
            encoder_blocks=len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")}),
            decoder_blocks=len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")}),
        )
    except KeyError as missing:
        raise ValueError(f"not a ConvONet grid state dict: parameter {missing} is missing") from None


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu",
               grid_resolution: int | None = None) -> ConvONet:
    """Load our checkpoints or the published ConvONet/SA-ConvONet grid checkpoint, in eval mode.

    `path=None` loads the shipped default model. `grid_resolution` overrides the resolution (needed only
    for published files other than room_grid64, whose resolution the file does not record).
    """
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    data = read_checkpoint(path)
    state = data["model"]
    if data.get("format") == CHECKPOINT_FORMAT:
        values = dict(data["model_config"])
        if grid_resolution is not None:
            values["grid_resolution"] = grid_resolution
        config = ModelConfig(**values)
    else:
        try:
            config = config_from_state_dict(state, grid_resolution or PUBLISHED_GRID_RESOLUTION)
        except ValueError as error:
            raise ValueError(f"checkpoint {path}: {error}") from None
    model = ConvONet(config)
    _load_state_checked(model, state, path)
    return model.to(resolve_device(device)).eval()


def _load_state_checked(model: ConvONet, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if mismatched:
            parts.append(f"{len(mismatched)} with wrong shapes (e.g. {mismatched[:3]})")
        raise ValueError(f"checkpoint {path} does not match the model architecture: " + "; ".join(parts))
    model.load_state_dict({k: v.float() for k, v in state.items()})


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
