"""Markers in spatial blocks: after a run only the blocks whose triangles changed go out, and the topic's
history always rebuilds the whole current mesh."""
import numpy as np
import trimesh
from visualization_msgs.msg import Marker

from sa_convonet_ros.ros.marker_blocks import MarkerBlocks, block_digest, split_into_blocks
from sa_convonet_ros.ros.markers import assemble, vertex_rgba8


def sent(blocks, *args):
    """An update, published."""
    update = blocks.update(*args)
    blocks.commit(update)
    return update


def floor_with_box(box: bool):
    """A 4 x 4 m floor of small triangles, and optionally a 0.3 m box in its corner."""
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02)).subdivide().subdivide().subdivide()
    floor.apply_translation((2.0, 2.0, -0.01))
    if box:
        cube = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
        cube.apply_translation((0.3, 0.3, 0.15))
        floor = trimesh.util.concatenate([floor, cube])
    return np.asarray(floor.vertices), np.asarray(floor.faces)


def triangles_shown(shown: dict) -> int:
    return sum(len(m.points) // 3 for m in shown.values())


def test_a_change_in_one_corner_sends_only_its_block_and_the_history_rebuilds_the_mesh():
    blocks, history = MarkerBlocks(), []
    vertices, faces = floor_with_box(False)
    first = sent(blocks, vertices, faces, None, "map", 1.0, 100)
    assert first.whole and first.markers.markers[0].action == Marker.DELETEALL and first.triangles == len(faces)
    history.append(first.markers)
    again = sent(blocks, vertices, faces[::-1], None, "map", 1.0, 100)  # the same triangles, another order
    assert not again.whole and again.markers.markers == [] and again.triangles == 0
    vertices, faces = floor_with_box(True)
    changed = sent(blocks, vertices, faces, None, "map", 1.0, 100)
    assert not changed.whole and changed.blocks_sent == 1 and changed.triangles < 0.35 * first.triangles
    history += [again.markers, changed.markers]
    shown = assemble(history)  # what a display that joins now rebuilds from the latched history
    assert triangles_shown(shown) == len(faces)
    corners = np.array([(p.x, p.y, p.z) for m in shown.values() for p in m.points]).reshape(-1, 9)
    np.testing.assert_array_equal(np.unique(corners, axis=0), np.unique(vertices[faces].reshape(-1, 9), axis=0))
    assert {ns for ns, _ in shown} == set(split_into_blocks(vertices, faces, 1.0))


def test_vanished_blocks_and_unused_ids_are_deleted_and_every_fourth_message_is_whole():
    blocks = MarkerBlocks(history=4)
    vertices, faces = floor_with_box(True)
    history = [sent(blocks, vertices, faces, None, "map", 1.0, 10).markers]
    without = floor_with_box(False)
    gone = sent(blocks, *without, None, "map", 1.0, 10)
    history.append(gone.markers)
    assert not gone.whole and any(m.action == Marker.DELETE for m in gone.markers.markers)
    assert triangles_shown(assemble(history)) == len(without[1])
    updates = [sent(blocks, *without, None, "map", 1.0, 10) for _ in range(3)]
    assert [u.whole for u in updates] == [False, False, True]  # a whole mesh within every 4 messages
    moved = sent(blocks, *without, None, "odom", 1.0, 10)
    assert moved.whole  # another frame: everything again
    unpublished = blocks.update(*floor_with_box(True), None, "odom", 1.0, 10)  # a cancelled job's update
    assert sent(blocks, *without, None, "odom", 1.0, 10).triangles == 0 and unpublished.blocks_sent > 0


def test_colours_count_in_a_blocks_digest():
    vertices, faces = floor_with_box(False)
    grey = vertex_rgba8(np.full((len(vertices), 3), 0.5))
    red = grey.copy()
    red[:, 0] = 1.0
    assert block_digest(vertices, faces, grey) == block_digest(vertices, faces[::-1], grey)
    assert block_digest(vertices, faces, grey) != block_digest(vertices, faces, red)
    assert block_digest(vertices, faces, None) != block_digest(vertices + 1e-9, faces, None)
    assert split_into_blocks(vertices, faces[:0], 1.0) == {}
