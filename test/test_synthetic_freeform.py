"""Free-form solids: exact inside tests, fields that never exceed the distance, surface samples, meshes."""
import numpy as np
import pytest

from sa_convonet_ros.synthetic import (
    Blob,
    HoledBox,
    Revolved,
    Sheet,
    SmoothBlend,
    Superellipsoid,
    Tube,
    fields,
    rotation_from_z,
)

RNG = np.random.default_rng(0)
SHAPES = [
    Superellipsoid(half_extents=(0.2, 0.1, 0.15), exponent=4.0, rotation=rotation_from_z([1.0, 0.5, 0.3])),
    Superellipsoid(half_extents=(0.2, 0.1, 0.15), exponent=1.3, center=(0.1, 0.0, 0.2)),
    Blob(radius=0.2, frequencies=RNG.normal(size=(5, 3)) * 3, amplitudes=[0.08, 0.05, 0.05, 0.04, 0.03],
         phases=RNG.uniform(0, 6, 5)),
    Tube(path=np.cumsum(RNG.normal(size=(8, 3)) * 0.08, axis=0), radius=0.02),
    Sheet(half_width=0.4, half_height=0.5, thickness=0.006, fold_amplitude=0.03, fold_frequency=20, fold_phase=0.3),
    Sheet(half_width=0.3, half_height=0.2, thickness=0.01, bend=2.0, rotation=rotation_from_z([0.0, 1.0, 0.0])),
    Revolved(radius=0.1, height=0.4, amplitudes=[0.03, 0.01], frequencies=[12, 30], phases=[0, 1]),
    SmoothBlend(centers=RNG.normal(size=(6, 3)) * 0.1, radii=RNG.uniform(0.04, 0.1, 6), smoothness=0.05),
    HoledBox(half_extents=(0.15, 0.1, 0.01), hole_centers=[[0.05, 0.0], [-0.08, 0.03]], hole_radii=[0.02, 0.015]),
]
IDS = [f"{type(s).__name__}{i}" for i, s in enumerate(SHAPES)]


def _query(shape, n=20000, seed=2):
    lo, hi = shape.aabb
    return np.random.default_rng(seed).uniform(lo - 0.1, hi + 0.1, size=(n, 3))


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_surface_samples_lie_on_the_surface_with_outward_normals(shape):
    points, normals = shape.sample_surface(4000, np.random.default_rng(1))
    assert np.abs(shape.local_field(shape.to_local(points))).max() < 1e-6
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    # creases (a tube's inner bends, a plate's edges) may flip a few
    assert (~shape.contains(points + 2e-4 * normals)).mean() > 0.995
    assert shape.contains(points - 2e-4 * normals).mean() > 0.995


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_field_never_exceeds_the_distance_to_the_surface(shape):
    queries = _query(shape)
    surface, _ = shape.sample_surface(60000, np.random.default_rng(3))
    from scipy.spatial import cKDTree

    nearest, _ = cKDTree(surface).query(queries)
    field = shape.local_field(shape.to_local(queries))
    outside = ~shape.contains(queries)
    assert 0.005 < (~outside).mean() < 0.5
    assert np.all(field[outside] <= nearest[outside] + 1e-6)
    assert np.all(field[~outside] < 0)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_sdf_is_the_distance_near_the_surface(shape):
    """Points pushed a known 3 mm out along the normal (less than any curvature radius) are 3 mm away."""
    points, normals = shape.sample_surface(3000, np.random.default_rng(4))
    pushed = points + 0.003 * normals
    clear = shape.local_field(shape.to_local(pushed)) > 0.0015  # not pushed into another part of the shape
    np.testing.assert_allclose(np.median(shape.sdf(pushed[clear])), 0.003, rtol=0.02)
    assert np.quantile(np.abs(shape.sdf(pushed[clear]) - 0.003), 0.9) < 0.0005


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_mesh_and_area_match_the_field(shape):
    mesh = shape.mesh()
    vertex_field = shape.local_field(shape.to_local(np.asarray(mesh.vertices)))
    # on the surface within the tessellation tolerance; a tube's overlapping sleeves also bury some inside
    assert vertex_field.max() < 0.002 and np.median(np.abs(vertex_field)) < 0.002
    points, _ = shape.sample_surface(20000, np.random.default_rng(5))
    assert shape.area > 0 and len(points) == 20000


def test_superellipsoid_with_exponent_two_is_the_ellipsoid():
    shape = Superellipsoid(half_extents=(0.3, 0.2, 0.1), exponent=2.0)
    q = np.random.default_rng(6).uniform(-0.35, 0.35, size=(5000, 3))
    np.testing.assert_array_equal(shape.contains(q), ((q / [0.3, 0.2, 0.1]) ** 2).sum(1) < 1.0)


def test_holed_box_is_empty_in_its_holes():
    shape = HoledBox(half_extents=(0.15, 0.1, 0.01), hole_centers=[[0.05, 0.0]], hole_radii=[0.02])
    assert not shape.contains(np.array([[0.05, 0.0, 0.0], [0.05, 0.019, 0.0]])).any()
    assert shape.contains(np.array([[0.05, 0.021, 0.0], [-0.1, 0.0, 0.0]])).all()


def test_blob_rejects_amplitudes_that_could_cross_the_centre():
    with pytest.raises(ValueError, match="amplitudes"):
        Blob(radius=0.1, frequencies=[[1.0, 0, 0]], amplitudes=[0.6], phases=[0.0])


def test_fields_agree_between_numpy_and_torch():
    torch = pytest.importorskip("torch")
    q = np.random.default_rng(7).uniform(-0.3, 0.3, size=(1000, 3))
    for shape in SHAPES:
        params = shape.field_parameters()
        expected = shape.local_field(q)
        got = shape.field_function(torch.from_numpy(q), xp=torch,
                                   **{k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()})
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-9, err_msg=type(shape).__name__)
    assert fields.namespace(torch.zeros(1)) is torch and fields.namespace(np.zeros(1)) is np
