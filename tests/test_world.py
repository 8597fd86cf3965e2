"""The PyBullet World: own clients, named bodies, distances, rays and contacts."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim._data import asset_path
from surgsim.scene import Part, Point, Scene, Sphere, Tube
from surgsim.sim import World
from surgsim.sim.anatomy import SceneBodies
from surgsim.sim.instruments import TrocarTool, trocar_angles, trocar_direction


@pytest.fixture
def world():
    w = World(visuals=False)
    yield w
    w.close()


def test_worlds_have_their_own_clients():
    a, b = World(visuals=False), World(visuals=False)
    try:
        assert a.client >= 0 and b.client >= 0 and a.client != b.client
        a.add_shape("ball", "sphere", (0, 0, 0), radius=0.01)
        assert a.has("ball") and not b.has("ball")
        assert b.names == []
    finally:
        a.close()
        b.close()
    assert a.client == -1
    a.close()  # closing twice is harmless


def test_sphere_distance_and_penetration(world):
    world.add_shape("a", "sphere", (0, 0, 0), radius=0.01)
    world.add_shape("b", "sphere", (0.05, 0, 0), radius=0.02)
    world.add_shape("c", "sphere", (0, 0.025, 0), radius=0.02)
    assert world.distance("a", "b", 1.0) == pytest.approx(0.02, abs=1e-6)
    cp = world.closest("a", "b", 1.0)
    assert cp.distance == pytest.approx(0.02, abs=1e-6)
    np.testing.assert_allclose(cp.point_a, (0.01, 0, 0), atol=1e-6)
    np.testing.assert_allclose(cp.point_b, (0.03, 0, 0), atol=1e-6)
    # overlapping: negative signed distance (penetration depth)
    assert world.distance("a", "c", 1.0) == pytest.approx(-0.005, abs=1e-6)
    assert world.closest("a", "c", 1.0).distance == pytest.approx(-0.005, abs=1e-6)
    # beyond the query range: None / the range itself
    assert world.closest("a", "b", 0.01) is None
    assert world.distance("a", "b", 0.01) == 0.01
    world.move("b", (0.2, 0, 0))
    assert world.distance("a", "b", 1.0) == pytest.approx(0.17, abs=1e-6)


def test_capsule_chain_distance(world):
    points = np.array([[-0.05, 0.0, 0.0], [0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    world.add_capsule_chain("tube", points, 0.004, (1, 0, 0, 1))
    world.add_shape("ball", "sphere", (0.02, 0.0, 0.03), radius=0.01)
    assert world.distance("tube", "ball", 1.0) == pytest.approx(0.03 - 0.004 - 0.01, abs=1e-6)


def test_ray_returns_the_named_body(world):
    world.add_shape("slab", "box", (0, 0, -0.01), half_extents=(0.1, 0.1, 0.01))
    world.add_shape("ball", "sphere", (0.05, 0.0, 0.05), radius=0.01)
    world.add_shape("ghost", "sphere", (-0.05, 0.0, 0.05), radius=0.01, collide=False)
    hit = world.ray((0.05, 0.0, 0.2), (0.05, 0.0, -0.2))
    assert hit.body == "ball"
    assert hit.position[2] == pytest.approx(0.06, abs=1e-6)
    assert hit.fraction == pytest.approx((0.2 - 0.06) / 0.4, abs=1e-6)
    # a visual-only body is transparent to rays: the slab's top is hit
    hit = world.ray((-0.05, 0.0, 0.2), (-0.05, 0.0, -0.2))
    assert hit.body == "slab" and hit.position[2] == pytest.approx(0.0, abs=1e-6)
    assert world.ray((0.5, 0.5, 0.2), (0.5, 0.5, -0.2)) is None


def test_removed_and_replaced_bodies(world):
    world.add_shape("ball", "sphere", (0, 0, 0), radius=0.01)
    world.add_shape("ball", "sphere", (0, 0, 0.1), radius=0.01)  # same name replaces
    assert world.names == ["ball"]
    hit = world.ray((0, 0, 0.3), (0, 0, -0.3))
    assert hit.body == "ball" and hit.position[2] == pytest.approx(0.11, abs=1e-6)
    world.remove("ball")
    assert world.ray((0, 0, 0.3), (0, 0, -0.3)) is None
    with pytest.raises(KeyError, match="ball"):
        world.body("ball")


def test_trocar_tool_kinematics(world):
    tool = TrocarTool(world, (0.0, 0.0, 0.0), angle_limit=1.0, angle_step=0.05, insertion_step=0.002,
                      insertion_range=(0.0, 0.3))
    for yaw, pitch in [(0.0, 0.0), (0.3, -0.2), (-0.5, 0.6)]:
        d = np.array(trocar_direction(yaw, pitch))
        assert np.linalg.norm(d) == pytest.approx(1.0)
        assert trocar_angles(d) == pytest.approx((yaw, pitch))
        tool.set_config(yaw, pitch, 0.08)
        np.testing.assert_allclose(tool.tip, 0.08 * d, atol=1e-12)
        # the collision capsule's rounded end is the tip; it runs back out along the shaft
        world.add_shape("probe", "sphere", tuple(0.08 * d + 0.02 * d), radius=0.001)
        assert world.distance(tool.body, "probe", 1.0) == pytest.approx(0.02 - 0.001, abs=1e-5)
        side = np.cross(d, [0.0, 0.0, 1.0]) if abs(d[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
        side /= np.linalg.norm(side)
        world.add_shape("probe", "sphere", tuple(0.04 * d + 0.01 * side), radius=0.001)  # mid-shaft
        assert world.distance(tool.body, "probe", 1.0) == pytest.approx(
            0.01 - 0.0025 - 0.001, abs=1e-5
        )
        world.add_shape("probe", "sphere", tuple(-0.1 * d), radius=0.001)  # outside the port
        assert world.distance(tool.body, "probe", 1.0) < 0


def test_contacts_between_overlapping_bodies(world):
    world.add_shape("a", "sphere", (0, 0, 0), radius=0.01)
    world.add_shape("b", "sphere", (0.015, 0, 0), radius=0.01)
    world.add_shape("far", "sphere", (0.5, 0, 0), radius=0.01)
    world.load_urdf("tool", asset_path("instruments/free_tool.urdf"), (0.0, 0.0, 0.005))
    assert world.distance("a", "b", 1.0) < 0  # they do overlap
    contacts = world.contacts("a", "b")
    assert contacts, "no contact reported between overlapping bodies"
    assert {contacts[0].body_a, contacts[0].body_b} == {"a", "b"}
    assert contacts[0].distance < 0
    assert {c.body_b for c in world.contacts("a")} >= {"b", "tool"}
    assert world.contacts("a", "far") == []


# ------------------------------------------------------------------ bodies from a scene
def _scene(ball_centre=(0.0, 0.0, 0.0), ball_radius=0.01, with_tube=True, with_marker=True) -> Scene:
    parts = [Part("ball", "tissue", Sphere(ball_centre, ball_radius), (1, 0, 0, 1))]
    if with_tube:
        tube = Tube(((0, 0.1, 0), (0, 0.2, 0), (0.05, 0.3, 0)), 0.005)
        parts.append(Part("tube", "critical", tube, (0, 0, 1, 1)))
    if with_marker:
        parts.append(Part("marker", "marker", Sphere((0, 0, 0.1), 0.01), (0, 1, 0, 1)))
    parts.append(Part("port", "port", Point((0, 0, 0.2)), channel="port"))
    return Scene(tuple(parts))


def test_scene_bodies_move_rebuild_and_remove(world):
    bodies = SceneBodies(world)
    bodies.show(_scene())
    # seen-only parts get no body in a world that is never rendered; points never do
    assert sorted(world.names) == ["ball", "tube"]
    ball = world.body("ball")
    bodies.show(_scene(ball_centre=(0.0, 0.0, -0.05)))  # moved only: the same body, moved
    assert world.body("ball") == ball and world.removed == 0
    assert world.pose("ball")[0] == pytest.approx((0.0, 0.0, -0.05))
    assert world.distance("ball", "tube", 1.0) == pytest.approx(np.hypot(0.1, 0.05) - 0.015)
    bodies.show(_scene(ball_centre=(0.0, 0.0, -0.05), ball_radius=0.02))  # a new shape: rebuilt
    assert world.removed == 1
    assert world.distance("ball", "tube", 1.0) == pytest.approx(np.hypot(0.1, 0.05) - 0.025)
    bodies.show(_scene(with_tube=False))  # gone from the scene: removed
    assert world.names == ["ball"] and world.removed == 3


def test_a_part_that_loses_its_body_is_removed(world):
    bodies = SceneBodies(world)
    bodies.show(_scene())
    assert "ball" in world.names
    # the same name, now a seen-only part: an unrendered world must not keep the colliding sphere
    bodies.show(_scene().with_part(Part("ball", "target", Sphere((0, 0, 0), 0.01), (1, 0, 0, 1))))
    assert "ball" not in world.names
    bodies.show(_scene())  # and it comes back when it collides again
    assert "ball" in world.names


def test_seen_only_parts_are_built_in_rendered_worlds():
    world = World(visuals=True)
    try:
        SceneBodies(world).show(_scene())
        assert sorted(world.names) == ["ball", "marker", "tube"]
    finally:
        world.close()


def test_scene_lookups():
    scene = _scene()
    assert scene.critical == ("tube",) and scene.only("port").shape.centre == (0, 0, 0.2)
    moved = scene.with_part(Part("port", "port", Point((1.0, 0.0, 0.0))))
    assert [p.name for p in moved.parts] == ["ball", "tube", "marker", "port"]
    assert moved.only("port").shape.centre == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="expected one target part"):
        scene.only("target")


def test_redrawing_a_visual_mesh_leaves_no_python_objects_behind():
    # PyBullet's parser keeps a reference to every vertex and normal row it is given: redrawing
    # the dimpling organ leaked about 1,300 objects (250 KB) a drawing before the rows were reused
    import gc

    world = World(visuals=True)
    unit = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]] * 100)
    indices = [0, 1, 2, 0, 2, 3] * 100
    try:
        def draw(k: int) -> None:
            world.add_visual_mesh("surface", unit * (1.0 + 0.01 * k), indices, unit, (1.0, 0.5, 0.5, 1.0))

        draw(0)
        gc.collect()
        before = len(gc.get_objects())
        for k in range(1, 21):
            draw(k)
        gc.collect()
        assert len(gc.get_objects()) - before < 50  # measured: 0 (the old code: 16,000)
        assert world.has("surface")
    finally:
        world.close()
