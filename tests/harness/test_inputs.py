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


def test_batch_with_images_is_refused(tmp_path):
    """`--input img.jpg --batch 6` ran one image and said nothing."""
    from alexbench.harness.cli.main import main

    spec = load_spec("alexnet-owt")
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(InputError) as info:
        image_inputs(spec, [str(tmp_path / "a.png")], batch=6)
    assert str(info.value) == ("--batch 6 with 1 --input image(s): the batch is the images given; drop --batch, "
                               "or give 6 images")
    assert image_inputs(spec, [str(tmp_path / "a.png")], batch=1).shape[0] == 1
    assert image_inputs(spec, [str(tmp_path / "a.png")]).shape[0] == 1
    assert seeded_inputs(spec, None, 0).shape[0] == 4  # no --batch, no --input: 4 seeded inputs
    code = main(["compare", "--spec", "alexnet-owt", "--backends", "torch", "--no-onnx",
                 "--input", str(tmp_path / "a.png"), "--batch", "6"])
    assert code == 2


def test_transparent_image_is_refused_opaque_rgba_passes(tmp_path):
    spec = load_spec("alexnet-owt")
    pixels = np.full((300, 400, 4), 255, np.uint8)
    pixels[:, :, 1:3] = 0  # red, fully opaque
    Image.fromarray(pixels, "RGBA").save(tmp_path / "opaque.png")
    batch = image_inputs(spec, [str(tmp_path / "opaque.png")])
    assert np.allclose(batch[0][:, 112, 112], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], atol=1e-5)
    pixels[:150, :, 3] = 0  # top half transparent: its red is not what the image shows
    Image.fromarray(pixels, "RGBA").save(tmp_path / "clear.png")
    with pytest.raises(InputError, match=r"clear.png: has transparent pixels \(alpha down to 0/255\); expected an "
                                         r"opaque image: flatten it onto the background you mean first"):
        image_inputs(spec, [str(tmp_path / "clear.png")])


def _spec(channels: int, size: int):
    """A spec without preprocessing."""
    from alexbench.spec import parse_spec

    return parse_spec(f"name: t\ninput: [{channels}, {size}, {size}]\nlayers:\n"
                      "  - {name: conv1, op: conv2d, filters: 2, kernel: 3}\n")


@pytest.mark.parametrize("spec, low, high", [(load_spec("alexnet-owt"), 0.07, 0.93),  # crop 224 of 256: 0.06-0.94
                                             (_spec(1, 16), 0.05, 0.95), (_spec(3, 16), 0.05, 0.95)])
def test_16_bit_png_keeps_its_full_range(tmp_path, spec, low, high):
    """A 16-bit ramp spanned 0.506-1.0 after preprocessing: it was clipped to 8 bits at 255."""
    c, h, w = spec.input_shape
    ramp = np.round(np.linspace(0, 65535, 1024)).astype(np.uint16)[None, :].repeat(1024, 0)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode.startswith("I;16")
    batch = image_inputs(spec, [str(tmp_path / "ramp16.png")])
    pre = spec.preprocessing
    mean = np.asarray(pre.mean if pre else [0.0] * c).reshape(-1, 1, 1)
    std = np.asarray(pre.std if pre else [1.0] * c).reshape(-1, 1, 1)
    pixels = batch[0] * std + mean  # back to [0, 1]
    assert pixels.shape == (c, h, w)
    assert pixels.min() < low and pixels.max() > high  # the full range, not 0.506-1.0
    row = pixels[0, h // 2]
    assert np.all(np.diff(row) > 0)  # still a ramp
    assert np.allclose(pixels, pixels[:1])  # grey: the same in every channel
    if pre:  # finer than 8 bits: 224 distinct steps that are not multiples of 1/255
        assert not np.allclose(row * 255, np.round(row * 255), atol=1e-3)


def test_aspect_ratio_is_never_squashed(tmp_path):
    """A spec without preprocessing resized a 400x300 image straight to its square input."""
    spec = _spec(3, 32)
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(InputError) as info:
        image_inputs(spec, [str(tmp_path / "wide.png")])
    assert str(info.value) == (
        f"--input {tmp_path / 'wide.png'}: a 400x300 image would be squashed to the spec's 32x32 input; 't' "
        "has no preprocessing resize/crop that keeps the aspect ratio: add a 'preprocessing:' block with resize "
        "and crop (spec/README.md), or give a 32x32 image")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "square.png")  # same ratio: scaled
    assert image_inputs(spec, [str(tmp_path / "square.png")]).shape == (1, 3, 32, 32)
