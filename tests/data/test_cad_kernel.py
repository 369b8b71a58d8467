"""Sequences built into solids by build123d (the `[cad]` extra, installed in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from modalzoo.data.cad import CADSequence, Curve, Extrude, Face, Loop, Sketch, cad_sequences_heldout, validate
from modalzoo.data.cad.kernel import CADBuildError, build, mesh, sample_surface
from modalzoo.data.cad.sequence import EXTRUDE_RANGE, SCALE_RANGE, dequantize
from modalzoo.evaluation.cad_metrics import chamfer_between

XY_PLANE = (1, 0, 0, 0, 1, 0, 0, 0, 1)


def square(points=((0, 0), (63, 0), (63, 63), (0, 63)), hole=None, **extrude) -> CADSequence:
    loops = [Loop([Curve("line", (p,)) for p in points])]
    if hole:
        loops.append(Loop([Curve("circle", ((31 - hole, 31), (31 + hole, 31), (31, 31 + hole), (31, 31 - hole)))]))
    settings = {"operation": "add", "extent": (47, 32), "origin": (32, 32, 32), "axes": XY_PLANE, "scale": 45, "offset": (31, 31)}
    return CADSequence([(Sketch([Face(loops)]), Extrude(**{**settings, **extrude}))])


def test_a_square_prism_has_the_volume_the_sequence_says():
    solid = build(square())
    side = 2 * float(dequantize(45, 6, SCALE_RANGE))  # the [-1, 1] sketch frame times the scale
    e1, e2 = dequantize((47, 32), 6, EXTRUDE_RANGE)
    assert solid.is_valid
    assert solid.volume == pytest.approx(side * side * (e1 + e2), rel=1e-6)
    z_low, z_high = solid.bounding_box().min.Z, solid.bounding_box().max.Z
    origin_z = float(dequantize(32, 6, EXTRUDE_RANGE))
    assert z_low == pytest.approx(origin_z - e2, abs=1e-6) and z_high == pytest.approx(origin_z + e1, abs=1e-6)
    holed = build(square(hole=10))
    radius = 10 * 2 / 63 * float(dequantize(45, 6, SCALE_RANGE))
    assert holed.volume == pytest.approx(solid.volume - np.pi * radius**2 * (e1 + e2), rel=1e-3)


def test_procedural_sequences_build_and_cuts_remove_material():
    built = 0
    for index in range(40):
        sequence = cad_sequences_heldout(index)
        if [e.operation for e in sequence.extrudes] != ["add", "cut"]:
            continue
        whole = build(sequence)
        first = build(CADSequence(sequence.pairs[:1]))
        assert whole.is_valid and 0 < whole.volume < first.volume
        built += 1
        if built == 3:
            break
    assert built == 3


def test_self_intersecting_loop_passes_the_validator_but_not_the_kernel():
    bow_tie = square(points=((0, 0), (63, 63), (63, 0), (0, 63)))
    validate(bow_tie)  # grammatical and not degenerate curve by curve
    with pytest.raises(CADBuildError, match="pair 0"):
        build(bow_tie)
    with pytest.raises(CADBuildError, match="first operation must be add"):
        build(square(operation="cut"))


def test_mesh_sampling_and_chamfer():
    solid = build(square())
    vertices, triangles = mesh(solid)
    points = sample_surface(vertices, triangles, 2000, np.random.default_rng(0))
    side = float(dequantize(45, 6, SCALE_RANGE))
    assert np.abs(points[:, :2]).max() <= side + 0.02  # on the prism around the origin (offset index 31 ~ -0.014)
    same = chamfer_between(solid, build(square()))
    assert same < 1e-2  # the floor of 2048 random samples on a ~2-unit prism
    shifted = chamfer_between(solid, build(square(offset=(55, 31))))  # 24 offset steps (0.69) along x
    assert shifted > 10 * same
