"""Shape scenes: deterministic, boxes and masks consistent with each other, captions from attributes."""
import numpy as np
import pytest
import torch

from deepatlas.data.shapes import (CLASSES, COLOURS, SHAPES, SIZES, caption, describe, make_scene, questions,
                                   scene_rng, shape_mask, shapes_dataset)


def test_deterministic_and_prefix_stable():
    a = shapes_dataset("train", n=20, size=32, seed=3)
    b = shapes_dataset("train", n=40, size=32, seed=3)        # a different cache entry, same first 20
    torch.testing.assert_close(a.images, b.images[:20])
    assert a.objects == b.objects[:20]
    other = shapes_dataset("train", n=20, size=32, seed=4)
    assert not torch.equal(a.images, other.images)
    test = shapes_dataset("test", n=20, size=32, seed=3)
    assert not torch.equal(a.images, test.images)              # the splits are different scenes


def test_boxes_masks_semantic_agree():
    d = shapes_dataset("val", n=60, size=48, max_objects=5)
    assert d.images.shape == (60, 3, 48, 48) and d.images.dtype == torch.float32
    assert 0 <= d.images.min() and d.images.max() <= 1
    counts = []
    for i in range(len(d)):
        s = d[i]
        n = len(s.objects)
        counts.append(n)
        assert s.boxes.shape == (n, 4) and s.labels.shape == (n,) and s.masks.shape == (n, 48, 48)
        assert not (s.masks.sum(0) > 1).any()                  # visible parts do not overlap
        rebuilt = torch.zeros(48, 48, dtype=torch.int64)
        for k, o in enumerate(s.objects):
            ys, xs = torch.nonzero(s.masks[k], as_tuple=True)
            assert s.boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]   # tight, x1 exclusive
            assert o.box == tuple(int(v) for v in s.boxes[k]) and o.area == int(s.masks[k].sum())
            assert s.labels[k] == o.label == 1 + SHAPES.index(o.shape)
            assert o.colour in COLOURS and o.size in SIZES
            lo, hi = SIZES[o.size]
            assert lo * 48 <= o.radius <= hi * 48
            rebuilt[s.masks[k]] = o.label
        torch.testing.assert_close(rebuilt, s.semantic)
    assert 1 <= min(counts) and max(counts) <= 5 and len(set(counts)) > 2
    assert set(d.semantic.unique().tolist()) == set(range(len(CLASSES)))


def test_occlusion_keeps_min_visible_fraction():
    rng = scene_rng(0, "train", 7)
    for _ in range(30):
        s = make_scene(rng, size=40, max_objects=6, min_visible=0.6)
        for k, o in enumerate(s.objects):
            full = shape_mask(o.shape, 40, *o.center, o.radius, o.angle).sum()
            assert o.area >= 0.6 * full


def test_shape_masks():
    c = shape_mask("circle", 41, 20.5, 20.5, 10)
    assert abs(c.sum() - np.pi * 100) < 0.05 * np.pi * 100
    sq = shape_mask("square", 41, 20.5, 20.5, 10)
    rot = shape_mask("square", 41, 20.5, 20.5, 10, angle=90.0)   # the polygon path, same square
    assert (sq == rot).mean() > 0.99
    tri, star = shape_mask("triangle", 41, 20.5, 20.5, 10), shape_mask("star", 41, 20.5, 20.5, 10)
    assert abs(tri.sum() - 3 * np.sqrt(3) / 4 * 100) < 0.1 * 130        # equilateral, circumradius 10
    assert star.sum() < tri.sum() and star[20, 20]


def test_captions_and_questions():
    s = shapes_dataset("test", n=10)[0]
    text = caption(s)
    for o in s.objects:
        assert describe(o) in text and o.shape in text and o.colour in text
    qa = dict(questions(s))
    for shape in SHAPES:
        assert qa[f"how many {shape}s are there?"] == str(sum(o.shape == shape for o in s.objects))
    assert "no" in qa.values() and "yes" in qa.values()


def test_errors():
    with pytest.raises(ValueError, match="split 'dev'"):
        shapes_dataset("dev")
    with pytest.raises(ValueError, match="image size"):
        make_scene(scene_rng(0, "train", 0), size=8)
    with pytest.raises(IndexError, match="has 5 scenes"):
        shapes_dataset("train", n=5)[5]


def test_plain_background_keeps_the_objects_and_paints_the_rest_grey():
    from deepatlas.data.shapes import PLAIN_GREY

    textured = shapes_dataset("val", 6, size=32, max_objects=2)
    plain = shapes_dataset("val", 6, size=32, max_objects=2, background="plain")
    assert plain.objects == textured.objects and torch.equal(plain.semantic, textured.semantic)
    bg = (plain.semantic == 0).unsqueeze(1).expand_as(plain.images)
    assert (plain.images[bg] == PLAIN_GREY).all() and torch.equal(plain.images[~bg], textured.images[~bg])
    with pytest.raises(ValueError, match="background 'noisy'; valid: textured, plain"):
        shapes_dataset("val", 2, background="noisy")
