"""CAD sequences: the procedural generator, the CADFusion and DeepCAD formats, the validator."""

from __future__ import annotations

import numpy as np
import pytest

from modalzoo.data import PROCEDURAL
from modalzoo.data.cad import (
    CADSequence,
    CADValidationError,
    Curve,
    Extrude,
    Face,
    Loop,
    Sketch,
    cad_sequences,
    cad_sequences_heldout,
    read_cadfusion,
    read_deepcad,
    validate,
    write_cadfusion,
    write_deepcad,
)
from modalzoo.data.cad.deepcad import ARC, CIRCLE, EOS, EXT, LINE, SOL

SEEDS = range(60)
XY_PLANE = (1, 0, 0, 0, 1, 0, 0, 0, 1)


def square_sequence(**extrude) -> CADSequence:
    loop = Loop([Curve("line", (p,)) for p in ((0, 0), (63, 0), (63, 63), (0, 63))])
    settings = {"operation": "add", "extent": (47, 32), "origin": (32, 32, 32), "axes": XY_PLANE, "scale": 45, "offset": (31, 31)}
    return CADSequence([(Sketch([Face([loop])]), Extrude(**{**settings, **extrude}))])


def test_generator_is_deterministic_and_covers_the_grammar():
    sequences = [cad_sequences(i, np.random.default_rng([7, i])) for i in SEEDS]
    again = [cad_sequences(i, np.random.default_rng([7, i])) for i in SEEDS]
    assert sequences == again
    assert {"cad_sequences", "cad_sequences_heldout"} <= set(PROCEDURAL)
    assert {len(s.pairs) for s in sequences} == {1, 2, 3}
    kinds = {curve.kind for s in sequences for _, curve in s.curves}
    assert kinds == {"line", "arc", "circle"}
    operations = {e.operation for s in sequences for e in s.extrudes}
    assert {"add", "cut"} <= operations
    assert any(len(face.loops) == 3 for s in sequences for sketch, _ in s.pairs for face in sketch.faces)  # two holes
    for sequence in sequences:
        validate(sequence)
        assert sequence.extrudes[0].operation == "add"
    # the held-out stream ignores the trainer's generator and differs from the training stream
    assert cad_sequences_heldout(3, np.random.default_rng(0)) == cad_sequences_heldout(3)
    assert cad_sequences_heldout(3) != cad_sequences(3, np.random.default_rng([0x5EED, 3]))


def test_cadfusion_text_round_trips_and_reads_the_documented_grammar():
    for index in SEEDS:
        sequence = cad_sequences_heldout(index)
        assert read_cadfusion(write_cadfusion(sequence)) == sequence
    text = (
        "circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> "
        "cut,40,40,32,32,20,1,0,0,0,1,0,0,0,1,30,31,31 <extrude_end>"
    )
    parsed = read_cadfusion(text)  # grammatical; that a first `cut` builds nothing is the kernel's finding
    (sketch, extrude), = parsed.pairs
    assert sketch.faces[0].loops[0].curves[0] == Curve("circle", ((10, 31), (52, 31), (31, 52), (31, 10)))
    assert extrude.operation == "cut" and extrude.extent == (40, 40) and extrude.origin == (32, 32, 20)
    assert extrude.axes == XY_PLANE and extrude.scale == 30 and extrude.offset == (31, 31)


def test_deepcad_vector_round_trips_exactly_at_6_bits():
    for index in SEEDS:
        sequence = cad_sequences_heldout(index)
        vector = write_deepcad(sequence)
        assert vector.shape[1] == 17 and vector[-1, 0] == EOS
        assert vector.min() >= -1 and vector.max() <= 255
        assert (vector[:, 0] == EXT).sum() == len(sequence.pairs)
        assert read_deepcad(vector) == sequence
    rows = write_deepcad(square_sequence())
    assert rows[:, 0].tolist() == [SOL, LINE, LINE, LINE, LINE, EXT, EOS]
    # a line stores its end point: the first line ends where the second starts, (63, 0) = (1.0, -1.0)
    assert rows[1, 1:3].tolist() == [255, 0] and rows[4, 1:3].tolist() == [0, 0]
    assert rows[5, 15] == 0  # NewBody
    arc_rows = write_deepcad(cad_sequences_heldout(next(i for i in SEEDS if any(c.kind == "arc" for _, c in cad_sequences_heldout(i).curves))))
    arcs = arc_rows[arc_rows[:, 0] == ARC]
    # rounded corners are counter-clockwise quarter turns (64/256), give or take the mid point's rounding
    assert len(arcs) == 4 and (np.abs(arcs[:, 3] - 64) <= 3).all() and (arcs[:, 4] == 1).all()
    circle = next(write_deepcad(s) for s in map(cad_sequences_heldout, SEEDS) if s.curves[0][1].kind == "circle")
    assert circle[1, 0] == CIRCLE and circle[1, 5] == round(31 * 2 / 63 / 2 * 256)  # radius 31 steps in 8 bits


@pytest.mark.parametrize(
    "text, message",
    [
        ("line,3,4 <curve_end> line,3,4 <curve_end> line,9,9 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"pair 0, face 0, loop 0, curve 0: zero-length line"),
        ("line,0,0 <curve_end> arc,10,10,20,20 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"curve 1: degenerate arc: .* collinear"),
        ("line,0,0 <curve_end> arc,10,10,10,10 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"degenerate arc: .* not three distinct points"),
        ("line,0,0 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"loop 0: open loop: a single line cannot close"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> line,0,0 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"open loop: a circle must be alone"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> <extrude_end>",
         r"count mismatch|unknown operation"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31",
         r"count mismatch: 1 <sketch_end> but 0 <extrude_end>"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31 <extrude_end>",
         r"extrude takes 17 integers after the operation, got 16"),
        ("circle,10,31,52,31,31,52,31,99 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"coordinate 99 is off the 6-bit grid"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,1,0,0,0,0,1,45,31,31 <extrude_end>",
         r"plane axes .* not an orthonormal integer frame"),
        ("circle,10,31,52,31,31,52,31,10 <curve_end> <loop_end> <face_end> <sketch_end> add,40,23,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"zero-thickness extrusion"),
        ("spline,1,2 <curve_end> <loop_end> <face_end> <sketch_end> add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>",
         r"unknown curve 'spline'"),
    ],
)
def test_validator_names_the_problem_and_where(text, message):
    with pytest.raises(CADValidationError, match=message):
        read_cadfusion(text)


def test_deepcad_reader_errors():
    rows = write_deepcad(square_sequence())
    with pytest.raises(CADValidationError, match="count mismatch: Ext without a sketch"):
        read_deepcad(np.concatenate([rows[5:6], rows]))
    with pytest.raises(CADValidationError, match="count mismatch: a sketch after the last Ext"):
        read_deepcad(np.concatenate([rows[:-1], rows[:5]]))
    bad = rows.copy()
    bad[2, 0] = 9
    with pytest.raises(CADValidationError, match="row 2: unknown command 9"):
        read_deepcad(bad)
    with pytest.raises(CADValidationError, match=r"expected DeepCAD rows \[N, 17\]"):
        read_deepcad(rows[:, :10])
