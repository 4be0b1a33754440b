"""The height ramp shared by the previews and the RViz markers."""
import numpy as np

from sa_convonet_ros import colors, preview


def test_the_ramp_runs_from_low_to_high_and_clips_outliers():
    z = np.r_[np.linspace(0.0, 2.5, 1000), 40.0]  # one stray point far above the room
    rgb = colors.height_colors(z)
    assert rgb.shape == (1001, 3) and rgb.dtype == np.float32 and 0 <= rgb.min() and rgb.max() <= 1
    # The stray point takes the top colour; the room still spans the ramp instead of its bottom end.
    np.testing.assert_array_equal(rgb[-1], colors.height_colors([0.0, 1.0])[1])
    assert np.abs(rgb[500] - rgb[0]).sum() > 0.5


def test_flat_empty_and_non_finite_heights():
    assert np.all(colors.height_colors(np.full(5, 3.0)) == colors.height_colors(np.full(5, 3.0))[0])
    assert colors.height_colors([]).shape == (0, 3)
    rgb = colors.height_colors([0.0, np.nan, 1.0, np.inf])
    assert np.isfinite(rgb).all()


def test_previews_use_the_shared_ramp():
    assert preview.height_colors is colors.height_colors
