"""A block's field, decoded at every grid point or coarse to fine: the same surface from fewer decodes."""
import numpy as np
import pytest
from skimage import measure

from sa_convonet_ros.field import _coarse_cells_holding, _upsample, evaluate_block, lift_crests
from sa_convonet_ros.meshing import EMPTY_LOGIT


class CountingDecoder:
    """Logits of an analytic shape at grid indices (inside positive), counting the points decoded."""

    def __init__(self, signed_distance, sharpness: float = 2.0):
        self.signed_distance, self.sharpness, self.decoded = signed_distance, sharpness, 0

    def __call__(self, index: np.ndarray) -> np.ndarray:
        self.decoded += len(index)
        return (-self.sharpness * self.signed_distance(index.astype(np.float64))).astype(np.float32)


def sphere(center, radius):
    return lambda x: np.linalg.norm(x - np.asarray(center), axis=-1) - radius


def thin_sheet(x_position, half_thickness):
    return lambda x: np.abs(x[..., 0] - x_position) - half_thickness


def band_mask(cells, signed_distance, band):
    index = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).astype(np.float64)
    return np.abs(signed_distance(index)) <= band


def surface(block):
    vertices, faces, _, _ = measure.marching_cubes(block, level=0.0, allow_degenerate=False)
    return vertices, faces


@pytest.mark.parametrize("shape", [(9, 8, 7), (10, 10, 10), (1, 2, 3)])
def test_coarse_cells_holding_a_mark_are_those_of_the_marks_halved_indices(shape):
    mask = np.random.default_rng(len(shape)).random(shape) < 0.05
    mask[-1, -1, -1] = True  # the last grid point falls in the extra coarse layer's first cell
    coarse_shape = tuple(n // 2 + 1 for n in shape)
    expected = np.zeros(coarse_shape, dtype=bool)
    expected[tuple((np.argwhere(mask) // 2).T)] = True
    np.testing.assert_array_equal(_coarse_cells_holding(mask, coarse_shape), expected)


@pytest.mark.parametrize("margin", [0.0, 3.0])
def test_a_decoded_value_never_reads_as_unevaluated(margin):
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:6, 2:6, 2:6] = True
    block = evaluate_block(lambda index: np.full(len(index), EMPTY_LOGIT, np.float32), mask, 0.0, margin)
    assert (block[~mask] == EMPTY_LOGIT).all()
    assert (block[mask] != EMPTY_LOGIT).all() and np.allclose(block[mask], EMPTY_LOGIT)


def test_margin_zero_decodes_every_masked_point_and_nothing_else():
    shape = sphere((10, 11, 12), 6.3)
    mask = band_mask(24, shape, 4)
    decoder = CountingDecoder(shape)
    block = evaluate_block(decoder, mask, threshold_logit=0.0, margin=0.0)
    assert decoder.decoded == mask.sum()
    index = np.argwhere(mask)
    np.testing.assert_array_equal(block[mask], decoder(index))
    assert np.all(block[~mask] == EMPTY_LOGIT)


@pytest.mark.parametrize("cells", [40, 41])  # an even and an odd block edge
def test_coarse_to_fine_gives_the_same_surface_from_fewer_decodes(cells):
    shape = sphere((cells / 2 - 0.3, cells / 2 + 0.2, cells / 2), cells / 3 + 0.37)
    mask = band_mask(cells, shape, 6)  # a band 13 grid layers thick, as the pipeline's at a 1 cm grid
    full, fast = CountingDecoder(shape, sharpness=8.0), CountingDecoder(shape, sharpness=8.0)
    exact = evaluate_block(full, mask, threshold_logit=0.0, margin=0.0)
    coarse_to_fine = evaluate_block(fast, mask, threshold_logit=0.0, margin=2.0)
    assert fast.decoded < 0.65 * full.decoded
    # every grid point within reach of the surface holds the decoded value itself
    near = mask & (np.abs(exact) < 2.0)
    np.testing.assert_array_equal(coarse_to_fine[near], exact[near])
    assert np.all((coarse_to_fine[mask] > 0) == (exact[mask] > 0))
    (v_exact, f_exact), (v_fast, f_fast) = surface(exact), surface(coarse_to_fine)
    np.testing.assert_allclose(v_fast, v_exact, atol=1e-5)
    np.testing.assert_array_equal(f_fast, f_exact)


def test_a_sheet_thinner_than_a_coarse_cell_is_kept():
    # between two coarse points, both outside: only the margin sends the sheet's cells to the decoder
    shape = thin_sheet(9.0, 0.4)  # inside for 8.6 < x < 9.4: one grid layer, at an odd index
    mask = np.ones((20, 20, 20), dtype=bool)
    block = evaluate_block(CountingDecoder(shape, sharpness=4.0), mask, threshold_logit=0.0, margin=4.0)
    assert np.all(block[9] > 0) and np.all(block[8] < 0) and np.all(block[10] < 0)
    missed = evaluate_block(CountingDecoder(shape, sharpness=4.0), mask, threshold_logit=0.0, margin=0.5)
    # a margin below the bend of the field inside a cell misses it (but on the decoded outer layers)
    assert np.all(missed[9, 2:-2, 2:-2] < 0)


def test_threshold_other_than_zero():
    shape = sphere((12, 12, 12), 7.2)
    mask = band_mask(24, shape, 5)
    threshold = 0.8
    exact = evaluate_block(CountingDecoder(shape), mask, threshold, 0.0)
    fast = evaluate_block(CountingDecoder(shape), mask, threshold, 2.0)
    assert np.all((fast[mask] > threshold) == (exact[mask] > threshold))
    near = mask & (np.abs(exact - threshold) < 2.0)
    np.testing.assert_array_equal(fast[near], exact[near])


def test_upsampling_is_exact_on_a_linear_field():
    coarse_index = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1)
    linear = (coarse_index @ np.array([0.5, -1.25, 2.0]) + 3.0).astype(np.float32)
    fine = _upsample(linear)
    fine_index = np.stack(np.meshgrid(*[np.arange(9)] * 3, indexing="ij"), -1) / 2.0
    np.testing.assert_allclose(fine, fine_index @ np.array([0.5, -1.25, 2.0]) + 3.0, rtol=1e-6)


def full_block(decoder, cells=16):
    index = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return decoder(index).reshape((cells,) * 3)


def valley(x_position, crest, sharpness=1.0, axis=0):
    """A field (logits = -sharpness * this) that only touches the level from below: its crest, `crest` logits
    under it, at x_position along `axis`."""
    return lambda x: np.abs(x[..., axis] - x_position) - crest / sharpness


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("x_position", [7.3, 0.2, 15.0])  # inside the block, on its first and its last layer
def test_a_crest_just_below_the_level_becomes_a_sheet_through_it(x_position, axis):
    decoder = CountingDecoder(valley(x_position, -0.1, axis=axis), sharpness=1.0)
    block = full_block(decoder)
    assert block.max() < 0  # marching cubes finds nothing
    raised = lift_crests(block, 0.0, 0.5, np.ones(block.shape, dtype=bool), decoder)
    assert raised == 16 * 16  # the whole crest plane, the block's faces included (neighbours decoded)
    assert np.argwhere(block > 0)[:, axis].tolist() == [round(x_position)] * raised
    vertices, _ = surface(block)
    assert np.abs(vertices[:, axis] - x_position).max() < 1.0  # the sheet lies on the crest


@pytest.mark.parametrize("x_position", [7.3, 0.2, 15.0])
def test_a_trough_just_above_the_level_becomes_a_sheet_through_it(x_position):
    """A wall whose field came out inside on both sides, dipping to 0.1 logits over the level at it."""
    decoder = CountingDecoder(valley(x_position, -0.1), sharpness=-1.0)
    block = full_block(decoder)
    assert block.min() > 0  # marching cubes finds nothing
    lowered = lift_crests(block, 0.0, 0.5, np.ones(block.shape, dtype=bool), decoder)
    assert lowered == 16 * 16
    assert np.argwhere(block < 0)[:, 0].tolist() == [round(x_position)] * lowered
    vertices, _ = surface(block)
    assert np.abs(vertices[:, 0] - x_position).max() < 1.0


def test_crests_are_left_alone_when_deep_far_from_the_points_or_crossed_already():
    near = np.ones((16,) * 3, dtype=bool)
    for decoder, mask in [(CountingDecoder(valley(7.3, -0.8), sharpness=1.0), near),  # deeper than 0.5
                          (CountingDecoder(valley(7.3, -0.3), sharpness=1.0), ~near),  # no point near it
                          (CountingDecoder(thin_sheet(7.3, 1.5), sharpness=4.0), near),  # a proper slab
                          (CountingDecoder(sphere((8, 8, 8), 5.2)), near)]:  # a closed surface
        block = full_block(decoder)
        before = block.copy()
        assert lift_crests(block, 0.0, 0.5, mask, decoder) == 0
        np.testing.assert_array_equal(block, before)
