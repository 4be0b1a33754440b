"""Sign-agnostic test-time optimisation (SA-ConvONet) of one network copy per window, batched.

The unsigned cross-entropy (UCE) pushes the observed points onto the 0.5 level set of the occupancy
and everything else away from it, without ever saying which side is inside:

    UCE = BCE(sigmoid(|logit(q)|), 0.5)   for q on the observed surface,
          BCE(sigmoid(|logit(q)|), 1.0)   for q = observed point + N(0, sigma^2).

Each window starts from the pretrained weights and adapts to its own geometry. The windows of a batch
run together: the optimised parameters are stacked along a leading window axis; the decoder applies them
as batched matrix products (`LocalDecoder.forward_per_window`), an adapted encoder with `torch.func.vmap`.
Adam is element-wise and the loss is a sum of per-window means, so this is exactly W independent
optimisations; a window that stops early (its own loss plateau) leaves the batch,
and the rest go on as a smaller one (`WorkingSet`). The cloud of a window is encoded once per step (the release
encodes one copy per batch element), and not at all when only the decoder adapts.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .config import OptimizationConfig
from .errors import ReconstructionCancelled
from .feature_grids import FeatureGrids
from .model import ConvONet
from .window_batch import ResidualSampling, WindowBatch, sample_uce_queries
from .window_fit import WindowFit


def uce_per_query(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unsigned cross-entropy of each query: BCE(sigmoid(|logit|), target)."""
    return F.binary_cross_entropy_with_logits(logits.abs(), targets, reduction="none")


@contextlib.contextmanager
def precision_mode(precision: str, device: torch.device):
    """Numerics of the optimisation steps: 'fp32'; 'tf32' (CUDA matmuls and convolutions on TF32 tensor
    cores, a no-op elsewhere); 'bf16' (autocast to bfloat16; the loss and Adam stay in float32)."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    else:
        yield


@dataclass
class WindowState:
    """What one window learned, kept (on the CPU, compactly) to warm-start the same window later:
    its adapted parameters and how far its feature grid moved from what the encoder gave."""

    parameters: dict[str, torch.Tensor]
    feature_delta: torch.Tensor | None = None  # float16 [C, R, R, R]


def optimized_parameter_names(model: ConvONet, parts: str, freeze_norm: bool) -> list[str]:
    prefixes = {"all": ("encoder.", "decoder."), "encoder": ("encoder.",), "decoder": ("decoder.",)}[parts]
    norm_names = {f"{name}.{p}" for name, module in model.named_modules()
                  if isinstance(module, torch.nn.GroupNorm) for p in ("weight", "bias")}
    return [name for name, _ in model.named_parameters()
            if name.startswith(prefixes) and not (freeze_norm and name in norm_names)]


# Windows per encoder pass on a CPU: the U-Net's activations of more windows spill out of the caches
# (about 40 ms a window in passes of 4, 48 in passes of 8, 67 in passes of 16 on 2 cores).
CPU_ENCODE_CHUNK = 4


@dataclass
class WindowEnsemble:
    """One network per window: shared pretrained weights plus a stacked copy of the adapted ones."""

    model: ConvONet
    batch: WindowBatch
    stacked: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [W, ...]
    features: torch.Tensor | None = None  # cached when the encoder is not adapted
    grids: "FeatureGrids | None" = None  # the adapted feature grids (features is their [W, C, R, R, R] view)
    encoded: torch.Tensor | None = None  # the encoder's output before the feature grid adapted
    loss_history: list[float] = field(default_factory=list)
    out_of_time: bool = False  # the optimisation stopped at its deadline, before its last step
    window_steps: list[int] = field(default_factory=list)  # steps each window adapted (fewer after its early stop)

    def window_state(self, window: int) -> WindowState:
        delta = None
        if self.encoded is not None and self.features is not None:
            delta = (self.features[window] - self.encoded[window]).to("cpu", torch.float16)
        return WindowState({n: t[window].detach().cpu().clone() for n, t in self.stacked.items()}, delta)

    def _split(self, prefix: str):
        params, dims = {}, {}
        for name, value in self.model.named_parameters():
            if name.startswith(prefix):
                key = name[len(prefix):]
                params[key] = self.stacked.get(name, value)
                dims[key] = 0 if name in self.stacked else None
        for name, value in self.model.named_buffers():
            if name.startswith(prefix):
                params[name[len(prefix):]], dims[name[len(prefix):]] = value, None
        return params, dims

    def encode(self) -> torch.Tensor:
        if self.features is not None:
            return self.features
        params, dims = self._split("encoder.")
        if not any(d == 0 for d in dims.values()):
            points, mask = self.batch.points, self.batch.mask
            chunk = CPU_ENCODE_CHUNK if points.device.type == "cpu" else len(points)
            return torch.cat([self.model.encode(points[i:i + chunk], mask[i:i + chunk])
                              for i in range(0, len(points), chunk)])

        def encode_one(p, points, mask):
            return functional_call(self.model.encoder, p, (points[None], mask[None]))[0]

        return vmap(encode_one, in_dims=(dims, 0, 0))(params, self.batch.points, self.batch.mask)

    def decode(self, queries: torch.Tensor, features: torch.Tensor | None = None,
               sampled: torch.Tensor | None = None) -> torch.Tensor:
        """queries [W, M, 3] (one row per window of this ensemble) -> logits [W, M], from the feature grids
        or from the features already `sampled` at the queries ([W, M, C])."""
        return self.model.decoder.forward_per_window(self._decoder_stacks(), queries, features, sampled)

    def decode_window(self, window: int, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits of queries [M, 3] under window `window`'s network (features of the whole batch)."""
        stacked = {name: stack[window:window + 1] for name, stack in self._decoder_stacks().items()}
        return self.model.decoder.forward_per_window(stacked, queries[None], features[window:window + 1])[0]

    def _decoder_stacks(self) -> dict[str, torch.Tensor]:
        """The adapted decoder parameters' stacks, by their names within the decoder."""
        prefix = "decoder."
        return {name[len(prefix):]: stack for name, stack in self.stacked.items() if name.startswith(prefix)}


def optimize_windows(model: ConvONet, batch: WindowBatch, config: OptimizationConfig,
                     iterations: int | None = None, seed: int = 0,
                     on_step: Callable[[int, int, float], None] | None = None,
                     cancel: threading.Event | None = None,
                     initial: list[WindowState | None] | None = None,
                     deadline: float | None = None, fit_cell: float | None = None) -> WindowEnsemble:
    """Run the UCE optimisation for every window of the batch; returns the adapted ensemble.

    `initial` (one entry per window, None for a cold start) continues from earlier results of the
    same windows instead of the pretrained weights: a warm start. At `deadline` (a time.monotonic()
    value) the steps stop and the windows keep the state they reached (`out_of_time` is set); a
    deadline already past gives the feed-forward result. `fit_cell`: a grid cell's edge in the windows' unit
    frame, where `config.fit_tolerance` is set: a window that fits its points within that many cells stops
    adapting (window_fit.py)."""
    iterations = config.iterations if iterations is None else iterations
    model.eval()  # no dropout/batch-norm; GroupNorm behaves the same either way
    for p in model.parameters():
        p.requires_grad_(False)
    ensemble = WindowEnsemble(model, batch)
    if not iterations:
        with torch.no_grad():
            ensemble.features = ensemble.encode()
        return ensemble
    _stack_adapted_parameters(ensemble, config)
    _apply_initial_states(ensemble, initial)
    generator = torch.Generator(device=batch.points.device).manual_seed(seed)
    if ensemble.grids is not None and not config.residual_sampling:  # residual draws follow the fit: unknown
        touched = cells_touched(ensemble.grids, batch, config, generator, iterations, cancel, deadline)
        if touched is not None:
            ensemble.grids.restrict(touched)
    working = WorkingSet.start(ensemble, _parameter_groups(ensemble, config), config)
    plateau = WindowPlateau(len(batch), config.early_stop_patience, config.early_stop_tolerance)
    fit = None
    if config.fit_tolerance > 0 and fit_cell:
        fit = WindowFit.start(*batch.loss_points(), config.fit_tolerance * fit_cell, config.fit_share, fit_cell / 2,
                              config.fit_check_every, seed + 1)
    for step in range(iterations):
        if cancel is not None and cancel.is_set():
            raise ReconstructionCancelled("reconstruction cancelled")
        if deadline is not None and time.monotonic() >= deadline:
            ensemble.out_of_time = True
            break
        working.set_learning_rates(step, config)
        losses = _step(working, config, generator)
        value = float(losses.mean())
        ensemble.loss_history.append(value)
        if on_step is not None:
            on_step(step + 1, iterations, value)
        stopped = plateau.update(losses, working.windows)
        if fit is not None and fit.due(step + 1) and step + 1 < iterations:
            stopped = stopped | fit.fitted(working.current_fields(), working.windows).cpu()
        if bool(stopped.all()):
            break
        if bool(stopped.any()):
            working = working.without(stopped)
    working.write_back()
    ensemble.window_steps = plateau.steps.tolist()
    _freeze(ensemble, config)
    return ensemble


def _stack_adapted_parameters(ensemble: WindowEnsemble, config: OptimizationConfig) -> None:
    """Stack a copy of the adapted parameters per window (and free the feature grids)."""
    model, batch = ensemble.model, ensemble.batch
    names = optimized_parameter_names(model, config.optimized_parts, config.freeze_norm)
    own = dict(model.named_parameters())
    ensemble.stacked = {n: own[n].detach().unsqueeze(0).repeat(len(batch), *[1] * own[n].dim()).requires_grad_(True)
                        for n in names}
    if config.optimized_parts == "decoder":
        with torch.no_grad():
            ensemble.features = ensemble.encode()
        if config.optimize_features:
            ensemble.encoded = ensemble.features.clone()
            # The encoder's output grid becomes a free per-window latent: each cell can move the surface
            # locally, which the shared decoder alone cannot do.
            ensemble.grids = FeatureGrids(ensemble.features, model.config.padding)
            ensemble.features = ensemble.grids.volume


def _parameter_groups(ensemble: WindowEnsemble, config: OptimizationConfig) -> list[dict]:
    """Adam's groups: the stacked parameters, then the feature grids, each at its own learning rate."""
    rates = [config.learning_rate, config.feature_learning_rate]
    return [{"params": params, "lr": rate} for params, rate in zip(_adapted_tensors(ensemble), rates)]


# The replay of the steps' draws before the first step stops where it would eat more than this share of the
# time left to the deadline; the steps then adapt every cell (the same result, each step a little dearer).
REPLAY_SHARE_OF_BUDGET = 0.1
REPLAY_CHECK_EVERY = 16  # replayed steps between two looks at the cancel and the clock


def cells_touched(grids: FeatureGrids, batch: WindowBatch, config: OptimizationConfig, generator: torch.Generator,
                  steps: int, cancel: threading.Event | None = None,
                  deadline: float | None = None) -> torch.Tensor | None:
    """Rows of the grids' table that the UCE queries of the next `steps` steps will touch (bool): the same
    draws as the steps will make, from a copy of their generator. None when the replay would take more than
    REPLAY_SHARE_OF_BUDGET of the time left before `deadline` (ReconstructionCancelled once `cancel` is set)."""
    replay = torch.Generator(device=generator.device)
    replay.set_state(generator.get_state())
    touched = torch.zeros(grids.values.numel() // grids.values.shape[-1], dtype=torch.bool, device=generator.device)
    started = time.monotonic()
    for step in range(steps):
        if step % REPLAY_CHECK_EVERY == 0:
            if cancel is not None and cancel.is_set():
                raise ReconstructionCancelled("reconstruction cancelled")
            now = time.monotonic()
            if deadline is not None and now - started > REPLAY_SHARE_OF_BUDGET * (deadline - started):
                return None
        queries, _ = sample_uce_queries(batch, config.surface_samples, config.off_surface_samples, config.sigma,
                                        replay, clearance=config.off_surface_clearance)
        touched[grids.corner_rows(queries)[0]] = True
    return touched


class WindowPlateau:
    """Early stopping per window: a window whose own loss has not improved by `tolerance` (relative) for
    `patience` steps stops adapting while the rest of its batch goes on (never with patience 0)."""

    def __init__(self, windows: int, patience: int, tolerance: float) -> None:
        self.patience, self.tolerance = patience, tolerance
        self.best = torch.full((windows,), float("inf"))
        self.stale = torch.zeros(windows, dtype=torch.long)
        self.steps = torch.zeros(windows, dtype=torch.long)  # steps each window took

    def update(self, losses: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """Count a step of `windows` (indices into the batch) with their `losses`; which of them stop (bool)."""
        self.steps[windows] += 1
        if not self.patience:
            return torch.zeros(len(windows), dtype=torch.bool)
        losses = losses.cpu()
        improved = losses < self.best[windows] * (1.0 - self.tolerance)
        self.best[windows] = torch.where(improved, losses, self.best[windows])
        self.stale[windows] = torch.where(improved, torch.zeros_like(improved, dtype=torch.long),
                                          self.stale[windows] + 1)
        return self.stale[windows] >= self.patience


@dataclass
class WorkingSet:
    """The windows of a batch still adapting, with their own Adam: once some stop, the rest continue as a
    smaller batch (a copy of their slices of the batch's tensors, moments included), so a step costs what
    the windows still adapting cost. Adam is element-wise per window, so leaving changes nobody's steps."""

    full: WindowEnsemble
    windows: torch.Tensor  # indices into the full batch
    ensemble: WindowEnsemble  # the full one until a window stops, then one of the windows left
    optimizer: FusedAdam | torch.optim.Adam
    residuals: ResidualSampling | None
    base_rates: list[float]

    @classmethod
    def start(cls, full: WindowEnsemble, groups: list[dict], config: OptimizationConfig) -> "WorkingSet":
        # The fused kernel updates all stacked tensors in one pass (CPU and CUDA have one).
        fused = config.fused_adam and full.batch.points.device.type in ("cpu", "cuda")
        residuals = ResidualSampling(full.batch, config.residual_sampling) if config.residual_sampling > 0 else None
        return cls(full, torch.arange(len(full.batch)), full, _adam(groups, fused), residuals,
                   [group["lr"] for group in groups])

    def set_learning_rates(self, step: int, config: OptimizationConfig) -> None:
        """Step decay: the base rates times decay_factor every decay_every steps."""
        factor = config.decay_factor ** (step // config.decay_every)
        for group, rate in zip(self.optimizer.param_groups, self.base_rates):
            group["lr"] = rate * factor

    def parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def without(self, leaving: torch.Tensor) -> "WorkingSet":
        """The windows that stay (`leaving`: bool over this set's windows), after writing back every one."""
        self.write_back()
        self.release_gradients()
        stay = (~leaving).nonzero().squeeze(1)
        index = self.windows[stay]
        part = WindowEnsemble(self.full.model, self.full.batch.subset(index))
        with torch.no_grad():
            part.stacked = {name: tensor[index].clone().requires_grad_(True)
                            for name, tensor in self.full.stacked.items()}
            if self.full.grids is not None:
                part.grids = self.full.grids.subset(index)
                part.features = part.grids.volume
            elif self.full.features is not None:
                part.features = self.full.features[index]
        groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": params}
                  for group, params in zip(self.optimizer.param_groups, _adapted_tensors(part))]
        optimizer = _adam(groups, bool(self.optimizer.defaults.get("fused")))
        grid_rows = None if self.ensemble.grids is None else self.ensemble.grids.state_rows(stay)
        for old, new in zip(self.parameters(), [p for g in groups for p in g["params"]]):
            state = self.optimizer.state.get(old)
            rows = grid_rows if part.grids is not None and new is part.grids.parameter else stay
            if state:
                optimizer.state[new] = {key: (value if key == "step" else value[rows].clone())
                                        for key, value in state.items()}
        self.optimizer.state.clear()
        residuals = None
        if self.residuals is not None:
            residuals = copy.copy(self.residuals)
            residuals.weights = self.residuals.weights[stay]
        return WorkingSet(self.full, index, part, optimizer, residuals, self.base_rates)

    def current_fields(self):
        """decode(queries [w, M, 3]) -> logits [w, M] of the working windows as they are now."""
        ensemble = self.ensemble
        if ensemble.grids is not None:
            ensemble.grids.sync()

        def decode(queries: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                features = ensemble.grids.volume if ensemble.grids is not None else ensemble.encode()
                return ensemble.decode(queries, features)
        return decode

    def release_gradients(self) -> None:
        """Drop this set's gradients (the copies that stay get their own)."""
        for parameter in self.parameters():
            parameter.grad = None
        if self.ensemble.grids is not None:
            self.ensemble.grids.release_gradient()

    def write_back(self) -> None:
        """Copy the working windows' parameters into the full batch's tensors."""
        if self.ensemble.grids is not None:
            self.ensemble.grids.sync()
        if self.ensemble is self.full:
            return
        with torch.no_grad():
            for name, tensor in self.ensemble.stacked.items():
                self.full.stacked[name][self.windows] = tensor
            if self.full.grids is not None:
                self.full.grids.values[self.windows] = self.ensemble.grids.values


class FusedAdam:
    """Adam with torch's defaults, as torch's fused kernel: one call per parameter group and step.

    Written out because torch.optim's first use imports torch._dynamo, about a second on a CPU, which every
    CLI run paid; `torch.optim.Adam(fused=True)` makes the same calls, so the steps are the same bit for bit."""

    defaults = {"fused": True}

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param_groups = groups
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self.betas, self.eps = betas, eps

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state.get(p) or self.state.setdefault(p, self._fresh_state(p)) for p in params]
            steps = [state["step"] for state in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, [p.grad for p in params], [state["exp_avg"] for state in states],
                               [state["exp_avg_sq"] for state in states], [], steps, lr=group["lr"],
                               beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False, grad_scale=None, found_inf=None)

    @staticmethod
    def _fresh_state(parameter: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"step": torch.zeros((), dtype=torch.float32, device=parameter.device),
                "exp_avg": torch.zeros_like(parameter, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(parameter, memory_format=torch.preserve_format)}


def _adam(groups: list[dict], fused: bool) -> FusedAdam | torch.optim.Adam:
    """The fused kernel where the device has one, else torch's Adam (its for-each form)."""
    return FusedAdam(groups) if fused else torch.optim.Adam(groups)


def _adapted_tensors(ensemble: WindowEnsemble) -> list[list[torch.Tensor]]:
    """What Adam adapts, one list per parameter group: the stacked parameters, then the feature grids."""
    tensors = [list(ensemble.stacked.values())]
    if ensemble.grids is not None:
        tensors.append([ensemble.grids.parameter])
    return tensors


def _step(working: WorkingSet, config: OptimizationConfig, generator: torch.Generator) -> torch.Tensor:
    """One optimisation step of the working windows; the UCE loss of each of them [W]."""
    ensemble, residuals = working.ensemble, working.residuals
    rows = None if ensemble is working.full else working.windows
    queries, targets = sample_uce_queries(ensemble.batch, config.surface_samples, config.off_surface_samples,
                                          config.sigma, generator, residuals, rows, len(working.full.batch),
                                          config.off_surface_clearance)
    with precision_mode(config.precision, ensemble.batch.points.device):
        if ensemble.grids is not None:
            logits = ensemble.decode(queries, sampled=ensemble.grids.sample(queries))
        else:
            logits = ensemble.decode(queries, ensemble.encode())
    per_query = uce_per_query(logits.float(), targets)
    if residuals is not None:
        residuals.update(per_query[:, :config.surface_samples])
    losses = per_query.mean(dim=-1)
    working.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    if ensemble.grids is not None:
        ensemble.grids.backward()
    working.optimizer.step()
    return losses.detach()


def _freeze(ensemble: WindowEnsemble, config: OptimizationConfig) -> None:
    """Stop tracking gradients, and encode once more when the encoder itself adapted."""
    for tensor in ensemble.stacked.values():
        tensor.requires_grad_(False)
    if ensemble.features is not None:
        ensemble.features.requires_grad_(False)
    if config.optimized_parts != "decoder":
        with torch.no_grad():
            ensemble.features = ensemble.encode()


def _apply_initial_states(ensemble: WindowEnsemble, initial: list[WindowState | None] | None) -> None:
    if not initial:
        return
    if len(initial) != len(ensemble.batch):
        raise ValueError(f"{len(initial)} initial states for a batch of {len(ensemble.batch)} windows")
    with torch.no_grad():
        for window, state in enumerate(initial):
            if state is None:
                continue
            for name, tensor in ensemble.stacked.items():
                if name in state.parameters:
                    tensor[window] = state.parameters[name].to(tensor.device)
            if state.feature_delta is not None and ensemble.encoded is not None:
                ensemble.features[window] += state.feature_delta.to(ensemble.features.device, torch.float32)
