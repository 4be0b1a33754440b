"""Free-form object families and the two room worlds built from them."""
import numpy as np
import pytest

from sa_convonet_ros.synthetic import (
    HELD_OUT_FAMILIES,
    HELD_OUT_WORLD,
    TEST_FAMILIES,
    TEST_WORLD,
    TRAINING_FAMILIES,
    TRAINING_WORLD,
    RoomConfig,
    generate_room,
)
from sa_convonet_ros.synthetic.objects import FAMILIES


def test_training_held_out_and_test_families_are_disjoint():
    assert not set(TRAINING_FAMILIES) & set(HELD_OUT_FAMILIES)
    assert not set(TEST_FAMILIES) & (set(TRAINING_FAMILIES) | set(HELD_OUT_FAMILIES))
    assert set(TRAINING_WORLD.object_families) == set(TRAINING_FAMILIES)
    assert set(HELD_OUT_WORLD.object_families) == set(HELD_OUT_FAMILIES)
    assert set(TEST_WORLD.object_families) == set(HELD_OUT_FAMILIES) | set(TEST_FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_makes_a_resting_object(family):
    maker, _ = FAMILIES[family]
    for seed in range(3):
        part = maker(np.random.default_rng(seed))
        lowest = min(float(p.mesh().vertices[:, 2].min()) for p in part.primitives)
        assert -0.002 < lowest < 0.11  # on z = 0 (a curtain's hem a little above), sinking into nothing
        points, _ = part.primitives[0].sample_surface(200, np.random.default_rng(seed))
        assert np.isfinite(points).all()
        assert {p.label for p in part.primitives} == {family}


def test_rooms_without_families_are_unchanged_by_them():
    plain = generate_room(11)
    again = generate_room(11, RoomConfig(object_count=(3, 3)))  # counts without families place nothing
    assert [type(p) for p in plain.primitives] == [type(p) for p in again.primitives]
    for a, b in zip(plain.primitives, again.primitives, strict=True):
        np.testing.assert_array_equal(a.center, b.center)


@pytest.mark.parametrize("world, families", [(TRAINING_WORLD, TRAINING_FAMILIES), (HELD_OUT_WORLD, HELD_OUT_FAMILIES),
                                             (TEST_WORLD, {**HELD_OUT_FAMILIES, **TEST_FAMILIES})],
                         ids=["training", "held-out", "test"])
def test_worlds_place_only_their_own_families(world, families):
    labels = set()
    for seed in range(6):
        room = generate_room(2000 + seed, world)
        labels |= set(room.labels)
        assert generate_room(2000 + seed, world).labels == room.labels  # reproducible
    other = set(FAMILIES) - set(families)
    assert labels & set(families) and not labels & other


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown object families"):
        RoomConfig(object_families=("dragon",))
