"""The ConvONet grid model: shapes, checkpoints, and the published room_grid64 layout."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sa_convonet_ros.config import ModelConfig
from sa_convonet_ros.model import ConvONet, count_parameters, load_model, normalize_coordinates, save_model

SMALL = ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=16, unet_levels=3, unet_base_channels=8)


def randomize(model, seed=0):
    """Non-trivial weights everywhere (the default init zeroes some layers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model


def test_forward_shapes():
    model = ConvONet(SMALL)
    points = torch.rand(2, 500, 3) - 0.5
    features = model.encode(points)
    assert features.shape == (2, 8, 16, 16, 16)
    logits = model.decode(torch.rand(2, 77, 3) - 0.5, features)
    assert logits.shape == (2, 77)
    assert torch.isfinite(logits).all()


def test_the_decoder_per_window_equals_each_windows_own_network():
    model = randomize(ConvONet(SMALL))
    queries, features = torch.rand(3, 50, 3) - 0.5, torch.randn(3, 8, 16, 16, 16)
    sampled = model.decoder.sample_features(queries, features)
    generator = torch.Generator().manual_seed(1)
    adapted = [name for name, _ in model.decoder.named_parameters() if not name.startswith("fc_c.1")]  # some shared
    stacked = {name: torch.randn(3, *model.decoder.get_parameter(name).shape, generator=generator) * 0.2
               for name in adapted}
    logits = model.decoder.forward_per_window(stacked, queries, sampled=sampled)
    assert torch.equal(model.decoder.forward_per_window(stacked, queries, features), logits)
    for window in range(3):
        own = randomize(ConvONet(SMALL)).decoder
        own.load_state_dict(model.decoder.state_dict() | {name: stack[window] for name, stack in stacked.items()})
        assert torch.allclose(logits[window], own(queries[window:window + 1], features[window:window + 1])[0],
                              atol=1e-5)


def test_published_architecture_has_the_published_size():
    model = ConvONet(ModelConfig())  # room_grid64
    assert count_parameters(model) == 4_166_657
    assert len(model.state_dict()) == 107


def test_mask_ignores_padding_points():
    model = randomize(ConvONet(SMALL)).eval()
    points = torch.rand(1, 300, 3) - 0.5
    padded = torch.cat([points, torch.rand(1, 50, 3) - 0.5], dim=1)
    mask = torch.zeros(1, 350, dtype=torch.bool)
    mask[:, :300] = True
    with torch.no_grad():
        assert torch.allclose(model.encode(points), model.encode(padded, mask), atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = randomize(ConvONet(SMALL))
    path = save_model(model, tmp_path / "m.pt", note="test")
    loaded = load_model(path)
    assert loaded.config == SMALL
    points, queries = torch.rand(1, 200, 3) - 0.5, torch.rand(1, 40, 3) - 0.5
    with torch.no_grad():
        assert torch.equal(model.eval()(points, queries), loaded(points, queries))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    truncated = tmp_path / "truncated.pt"
    save_model(ConvONet(SMALL), truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated.pt.*could not be read"):
        load_model(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt.*empty"):
        load_model(empty)
    no_model = tmp_path / "nomodel.pt"
    torch.save({"weights": {}}, no_model)
    with pytest.raises(ValueError, match="nomodel.pt.*'model'"):
        load_model(no_model)
    state = ConvONet(SMALL).state_dict()
    state["decoder.fc_out.weight"] = torch.zeros(1, 5)
    del state["decoder.fc_p.bias"]
    bad = tmp_path / "mismatch.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(ValueError, match="mismatch.pt.*does not match.*missing.*wrong shapes"):
        load_model(bad)


def test_unreadable_checkpoints_do_not_advise_an_unsafe_load(tmp_path):
    """torch's safe loader suggests weights_only=False: unsafe, and no help for a corrupt file."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 64)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}, "optimizer": object()}, foreign)
    for path, reason in ((corrupt, "not a torch checkpoint"), (foreign, "Python objects besides tensors")):
        with pytest.raises(ValueError) as caught:
            load_model(path)
        message = str(caught.value)
        assert str(path) in message and "could not be read" in message and reason in message, message
        assert "weights_only" not in message and "trust" not in message, message


# ------------------------------------------------------------------------------------------------------
# An independent reference forward of the published model, written from the layout description with
# plain loops over voxels and functional ops on the raw state dict. The loader must agree with it.

def _reference_logits(state, points, queries, resolution=64, padding=0.1):
    def lin(x, name, bias=True):
        return F.linear(x, state[name + ".weight"], state.get(name + ".bias") if bias else None)

    def resblock(x, name):
        h = lin(F.relu(x), name + ".fc_0")
        dx = lin(F.relu(h), name + ".fc_1")
        shortcut = lin(x, name + ".shortcut", bias=False) if name + ".shortcut.weight" in state else x
        return shortcut + dx

    p = points[0]
    norm = p / (1 + padding + 1e-3) + 0.5
    norm = torch.where(norm >= 1, torch.full_like(norm, 1 - 1e-3), norm).clamp(min=0)
    cell = (norm * resolution).long()
    flat = (cell[:, 0] + resolution * (cell[:, 1] + resolution * cell[:, 2])).tolist()
    voxels = {}
    for i, v in enumerate(flat):
        voxels.setdefault(v, []).append(i)

    net = resblock(lin(p, "encoder.fc_pos"), "encoder.blocks.0")
    block = 1
    while f"encoder.blocks.{block}.fc_0.weight" in state:
        pooled = torch.empty_like(net)
        for members in voxels.values():
            pooled[members] = net[members].max(dim=0).values
        net = resblock(torch.cat([net, pooled], -1), f"encoder.blocks.{block}")
        block += 1
    c = lin(net, "encoder.fc_c")
    volume = torch.zeros(c.shape[1], resolution ** 3)
    for v, members in voxels.items():
        volume[:, v] = c[members].mean(dim=0)
    x = volume.reshape(1, c.shape[1], resolution, resolution, resolution)

    def single(x, name):
        groups = 8 if x.shape[1] >= 8 else 1
        x = F.group_norm(x, groups, state[name + ".groupnorm.weight"], state[name + ".groupnorm.bias"])
        return F.relu(F.conv3d(x, state[name + ".conv.weight"], padding=1))

    skips, level = [], 0
    while f"encoder.unet3d.encoders.{level}.basic_module.SingleConv1.conv.weight" in state:
        if level > 0:
            x = F.max_pool3d(x, 2)
        base = f"encoder.unet3d.encoders.{level}.basic_module"
        x = single(single(x, base + ".SingleConv1"), base + ".SingleConv2")
        skips.append(x)
        level += 1
    for d, skip in enumerate(reversed(skips[:-1])):
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        base = f"encoder.unet3d.decoders.{d}.basic_module"
        x = single(single(torch.cat([skip, x], 1), base + ".SingleConv1"), base + ".SingleConv2")
    x = F.conv3d(x, state["encoder.unet3d.final_conv.weight"], state["encoder.unet3d.final_conv.bias"])

    q = queries[0]
    qn = q / (1 + padding + 1e-3) + 0.5
    qn = torch.where(qn >= 1, torch.full_like(qn, 1 - 1e-3), qn).clamp(min=0)
    grid = (2 * qn - 1)[None, :, None, None]
    feat = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, :, 0, 0].T
    net = lin(q, "decoder.fc_p")
    for i in range(5):
        net = resblock(net + lin(feat, f"decoder.fc_c.{i}"), f"decoder.blocks.{i}")
    return lin(F.relu(net), "decoder.fc_out")[:, 0]


def _published_state_dict(seed=0):
    """A state dict with exactly the published parameter names and shapes (random values)."""
    shapes = {"encoder.fc_pos.weight": (64, 3), "encoder.fc_pos.bias": (64,)}
    for b in range(5):
        shapes.update({f"encoder.blocks.{b}.fc_0.weight": (32, 64), f"encoder.blocks.{b}.fc_0.bias": (32,),
                       f"encoder.blocks.{b}.fc_1.weight": (32, 32), f"encoder.blocks.{b}.fc_1.bias": (32,),
                       f"encoder.blocks.{b}.shortcut.weight": (32, 64)})
    shapes.update({"encoder.fc_c.weight": (32, 32), "encoder.fc_c.bias": (32,)})
    enc = [(32, 32, 32), (32, 32, 64), (64, 64, 128), (128, 128, 256)]
    dec = [(384, 128, 128), (192, 64, 64), (96, 32, 32)]
    for kind, levels in (("encoders", enc), ("decoders", dec)):
        for i, (cin, mid, cout) in enumerate(levels):
            base = f"encoder.unet3d.{kind}.{i}.basic_module"
            for conv, (a, b) in (("SingleConv1", (cin, mid)), ("SingleConv2", (mid, cout))):
                shapes[f"{base}.{conv}.groupnorm.weight"] = (a,)
                shapes[f"{base}.{conv}.groupnorm.bias"] = (a,)
                shapes[f"{base}.{conv}.conv.weight"] = (b, a, 3, 3, 3)
    shapes.update({"encoder.unet3d.final_conv.weight": (32, 32, 1, 1, 1), "encoder.unet3d.final_conv.bias": (32,)})
    shapes.update({"decoder.fc_p.weight": (32, 3), "decoder.fc_p.bias": (32,)})
    for i in range(5):
        shapes.update({f"decoder.fc_c.{i}.weight": (32, 32), f"decoder.fc_c.{i}.bias": (32,),
                       f"decoder.blocks.{i}.fc_0.weight": (32, 32), f"decoder.blocks.{i}.fc_0.bias": (32,),
                       f"decoder.blocks.{i}.fc_1.weight": (32, 32), f"decoder.blocks.{i}.fc_1.bias": (32,)})
    shapes.update({"decoder.fc_out.weight": (1, 32), "decoder.fc_out.bias": (1,)})
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = 1.0 / np.sqrt(fan_in) if len(shape) > 1 else 0.1
        value = torch.randn(shape, generator=generator) * scale
        if "groupnorm.weight" in name:
            value = 1 + value
        state[name] = value
    return state


def test_published_layout_loads_unchanged_and_matches_the_reference(tmp_path):
    state = _published_state_dict()
    assert len(state) == 107 and sum(v.numel() for v in state.values()) == 4_166_657
    path = tmp_path / "room_grid64.pt"
    torch.save({"model": state, "epoch_it": 10, "it": 1000, "loss_val_best": np.float64(0.25)}, path)
    model = load_model(path)
    assert model.config.grid_resolution == 64 and model.config.c_dim == 32
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(1, 400, 3, generator=generator) - 0.5
    queries = (torch.rand(1, 64, 3, generator=generator) - 0.5) * 1.1  # some beyond the cube (border)
    with torch.no_grad():
        ours = model(points, queries)[0]
        reference = _reference_logits(state, points, queries)
    assert torch.allclose(ours, reference, atol=1e-4), (ours - reference).abs().max()


def test_normalisation_clamps_into_the_volume():
    p = torch.tensor([[0.0, 0.0, 0.0], [0.6, -0.6, 0.55]])
    n = normalize_coordinates(p, 0.1)
    assert torch.allclose(n[0], torch.full((3,), 0.5))
    assert (n >= 0).all() and (n < 1).all()
