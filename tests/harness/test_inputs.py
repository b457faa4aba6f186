"""Seeded inputs are reproducible; images go through the spec's preprocessing; bad files say so."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alexbench.harness.inputs import InputError, image_inputs, seeded_inputs
from alexbench.spec import load_spec


def test_seeded_inputs_reproducible():
    spec = load_spec("alexnet")
    a = seeded_inputs(spec, 2, 0)
    assert a.shape == (2, 3, 227, 227) and a.dtype == np.float32
    assert np.array_equal(a, seeded_inputs(spec, 2, 0))
    assert not np.array_equal(a, seeded_inputs(spec, 2, 1))
    with pytest.raises(InputError):
        seeded_inputs(spec, 0, 0)


def test_image_preprocessing(tmp_path):
    spec = load_spec("alexnet-owt")  # resize 256, crop 224, ImageNet mean/std
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255  # pure red
    Image.fromarray(pixels).save(tmp_path / "red.png")
    Image.fromarray(pixels).save(tmp_path / "red.jpg", quality=100)
    batch = image_inputs(spec, [str(tmp_path / "red.png"), str(tmp_path / "red.jpg")])
    assert batch.shape == (2, 3, 224, 224)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    assert np.allclose(batch[0][:, 112, 112], expected, atol=1e-5)
    assert np.allclose(batch[1][:, 112, 112], expected, atol=0.05)


def test_bad_image(tmp_path):
    spec = load_spec("alexnet")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        image_inputs(spec, [str(bad)])
    with pytest.raises(InputError, match="no such file"):
        image_inputs(spec, [str(tmp_path / "missing.png")])
