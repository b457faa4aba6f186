"""Seeded inputs are reproducible; images go through the spec's preprocessing; bad files say so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexbench.harness.inputs import InputError, array_sha256, file_inputs, image_inputs, seeded_inputs
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


# --input FILE.npy / FILE.npz: the network's input as it is, N x C x H x W (or C x H x W: one input).

SMALL = str(Path(__file__).parents[1] / "specs" / "ops-pool-norm.yaml")  # input 3x22x17


@pytest.fixture
def small():
    return load_spec(SMALL)


def _save(path, array):
    np.save(path, array)
    return str(path)


def _refusal(spec, paths, batch=None) -> str:
    with pytest.raises(InputError) as info:
        file_inputs(spec, [str(p) for p in paths], batch)
    return str(info.value)


def test_float32_npy_comes_back_bit_for_bit(tmp_path, small):
    x = np.random.default_rng(3).standard_normal((2, 3, 22, 17)).astype(np.float32)
    x[0, 0, 0, :3] = [np.float32(1e-45), -0.0, np.float32(3.4e38)]  # subnormal, negative zero, near the maximum
    batch = file_inputs(small, [_save(tmp_path / "x.npy", x)])
    assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.flags.writeable
    assert batch.tobytes() == x.tobytes()
    assert array_sha256(batch) == array_sha256(x)


def test_arrays_concatenate_in_order_and_convert_to_float32(tmp_path, small):
    rng = np.random.default_rng(4)
    one = rng.standard_normal((3, 22, 17)).astype(np.float16)  # C x H x W: one input
    two = rng.standard_normal((2, 3, 22, 17))  # float64
    big_endian = rng.standard_normal((1, 3, 22, 17)).astype(">f4")
    fortran = np.asfortranarray(rng.standard_normal((1, 3, 22, 17)).astype(np.float32))
    np.savez(tmp_path / "single.npz", anything=big_endian)  # one array: whatever its name
    np.savez(tmp_path / "named.npz", x=fortran, labels=np.arange(3))  # several: the one named 'x'
    paths = [_save(tmp_path / "one.npy", one), _save(tmp_path / "two.npy", two),
             str(tmp_path / "single.npz"), str(tmp_path / "named.npz")]
    batch = file_inputs(small, paths)
    assert batch.shape == (5, 3, 22, 17) and batch.dtype == np.float32 and batch.flags.c_contiguous
    expected = np.concatenate([one[None].astype(np.float32), two.astype(np.float32),
                               big_endian.astype(np.float32), fortran])
    assert np.array_equal(batch, expected)
    assert file_inputs(small, paths, batch=5).shape[0] == 5


def test_images_and_arrays_mix_in_order(tmp_path):
    """An image goes through the spec's preprocessing, an array is taken as it is; the batch keeps their order."""
    spec = _spec(3, 16)
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(tmp_path / "white.png")
    x = np.full((2, 3, 16, 16), -7.0, np.float32)
    batch = file_inputs(spec, [str(tmp_path / "white.png"), _save(tmp_path / "x.npy", x),
                               str(tmp_path / "white.png")])
    assert batch.shape == (4, 3, 16, 16)
    assert np.all(batch[[0, 3]] == 1.0) and np.all(batch[1:3] == -7.0)
    assert np.array_equal(file_inputs(spec, [str(tmp_path / "white.png")]),
                          image_inputs(spec, [str(tmp_path / "white.png")]))  # images alone: as before


def test_batch_disagreeing_with_the_arrays_is_refused(tmp_path, small):
    paths = [_save(tmp_path / "a.npy", np.zeros((2, 3, 22, 17), np.float32)),
             _save(tmp_path / "b.npy", np.zeros((3, 22, 17), np.float32))]
    assert _refusal(small, paths, batch=4) == (
        f"--batch 4 with --input files holding 3 input(s) ({paths[0]}: 2, {paths[1]}: 1): the batch is what the "
        "files hold; drop --batch, or give files holding 4 inputs")


@pytest.mark.parametrize("dtype", ["int64", "uint8", "bool", "complex64", "float128", "object"])
def test_non_float_arrays_are_refused(tmp_path, small, dtype):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1, 3, 22, 17), dtype=dtype), allow_pickle=True)
    assert _refusal(small, [path]) == (
        f"--input {path}: holds {dtype} values; expected float16, float32 or float64 (the network's input after "
        "preprocessing)")


@pytest.mark.parametrize("shape, expected_tail", [
    ((3, 17, 22), ""),
    ((2, 1, 3, 22, 17), ""),
    ((22, 17), ""),
    ((), ""),
    ((22, 17, 3), "; a channels-last array becomes channels-first with .transpose(2, 0, 1)"),
    ((5, 22, 17, 3), "; a channels-last array becomes channels-first with .transpose(0, 3, 1, 2)"),
])
def test_wrong_shapes_are_refused(tmp_path, small, shape, expected_tail):
    path = _save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    received = "x".join(map(str, shape)) or "() (one number)"
    assert _refusal(small, [path]) == (
        f"--input {path}: an array of shape {received}; expected N x 3x22x17 or 3x22x17 (the input of "
        f"'ops-pool-norm', channels first){expected_tail}")


def test_an_empty_batch_is_refused(tmp_path, small):
    path = _save(tmp_path / "x.npy", np.zeros((0, 3, 22, 17), np.float32))
    assert _refusal(small, [path]) == (
        f"--input {path}: an array of shape 0x3x22x17 holds no inputs; expected at least one")


def test_nan_and_inf_are_refused_with_count_and_first_index(tmp_path, small):
    x = np.zeros((2, 3, 22, 17), np.float16)
    x[1, 2, 3, 4], x[1, 2, 5, 0], x[0, 1, 0, 16] = np.inf, np.nan, -np.inf
    path = _save(tmp_path / "x.npy", x)
    assert _refusal(small, [path]) == (
        f"--input {path}: 3 of 2,244 values are not finite (NaN or inf); the first is -inf at index [0, 1, 0, 16]; "
        "expected finite numbers")
    np.savez(tmp_path / "x.npz", input=x[1])
    assert _refusal(small, [tmp_path / "x.npz"]) == (
        f"--input {tmp_path / 'x.npz'} (array 'input'): 2 of 1,122 values are not finite (NaN or inf); the first "
        "is inf at index [2, 3, 4]; expected finite numbers")


def test_float64_beyond_float32_is_refused(tmp_path, small):
    x = np.zeros((1, 3, 22, 17))
    x[0, 0, 1, 2], x[0, 2, 0, 0] = -1e39, 1e300
    x[0, 1, 1, 1] = np.finfo(np.float32).max  # the largest float32 itself passes
    path = _save(tmp_path / "x.npy", x)
    assert _refusal(small, [path]) == (
        f"--input {path}: 2 of 1,122 float64 values are beyond float32's range (+-3.40282e+38); the first is -1e+39 "
        "at index [0, 0, 1, 2]; expected values float32 can hold")


def test_missing_truncated_and_corrupt_files_are_one_line(tmp_path, small):
    assert _refusal(small, [tmp_path / "gone.npy"]) == f"--input {tmp_path / 'gone.npy'}: no such file"
    good = (tmp_path / _save(tmp_path / "good.npy", np.ones((2, 3, 22, 17), np.float32))).read_bytes()
    (tmp_path / "cut.npy").write_bytes(good[:-100])
    assert _refusal(small, [tmp_path / "cut.npy"]) == (
        f"--input {tmp_path / 'cut.npy'}: truncated: its header announces 2x3x22x17 float32 (8,976 bytes of data) "
        "and 8,876 bytes follow; expected the whole file")
    (tmp_path / "header.npy").write_bytes(good[:30])
    assert _refusal(small, [tmp_path / "header.npy"]) == (
        f"--input {tmp_path / 'header.npy'}: not a readable .npy file (EOF: reading array header, expected 118 "
        "bytes got 20); expected an array written by numpy.save")
    (tmp_path / "text.npy").write_text("not an array at all")
    assert _refusal(small, [tmp_path / "text.npy"]) == (
        f"--input {tmp_path / 'text.npy'}: not a readable .npy file (the magic string is not correct; expected "
        "b'\\x93NUMPY', got b'not an'); expected an array written by numpy.save")
    (tmp_path / "v3.npy").write_bytes(good[:6] + b"\x03" + good[7:])
    assert _refusal(small, [tmp_path / "v3.npy"]) == (
        f"--input {tmp_path / 'v3.npy'}: not a readable .npy file (format version 3.0, not 1.0 or 2.0); expected "
        "an array written by numpy.save")
    np.savez(tmp_path / "good.npz", input=np.ones((1, 3, 22, 17), np.float32))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:-30])
    assert _refusal(small, [tmp_path / "cut.npz"]) == (
        f"--input {tmp_path / 'cut.npz'}: not a readable .npz archive (File is not a zip file); expected an array "
        "written by numpy.savez")


def test_corrupt_npz_data_is_one_line(tmp_path, small):
    np.savez(tmp_path / "x.npz", input=np.ones((1, 3, 22, 17), np.float32))
    data = bytearray((tmp_path / "x.npz").read_bytes())
    data[data.index(b"\x00\x00\x80?") + 8] ^= 0xFF  # flip one byte of the array's data: the CRC no longer fits
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    assert _refusal(small, [tmp_path / "bad.npz"]) == (
        f"--input {tmp_path / 'bad.npz'}: not a readable .npz archive (Bad CRC-32 for file 'input.npy'); expected "
        "an array written by numpy.savez")


def test_npz_without_one_batch_array_is_refused(tmp_path, small):
    x = np.zeros((1, 3, 22, 17), np.float32)
    np.savez(tmp_path / "several.npz", a=x, b=x, labels=np.arange(2))
    assert _refusal(small, [tmp_path / "several.npz"]) == (
        f"--input {tmp_path / 'several.npz'}: holds 3 arrays (a, b, labels), none named 'input' or 'x'; expected "
        "one array, or the batch named 'input' or 'x' (numpy.savez(FILE, input=batch))")
    np.savez(tmp_path / "both.npz", input=x, x=x)
    assert _refusal(small, [tmp_path / "both.npz"]) == (
        f"--input {tmp_path / 'both.npz'}: holds 2 arrays (input, x), both 'input' and 'x' among them; expected one "
        "array, or the batch named 'input' or 'x' (numpy.savez(FILE, input=batch))")
    np.savez(tmp_path / "empty.npz")
    assert _refusal(small, [tmp_path / "empty.npz"]) == (
        f"--input {tmp_path / 'empty.npz'}: holds 0 arrays (none), none named 'input' or 'x'; expected one array, "
        "or the batch named 'input' or 'x' (numpy.savez(FILE, input=batch))")
    np.savez(tmp_path / "ints.npz", labels=np.arange(3), input=np.zeros((1, 3, 22, 17), np.int32))
    assert _refusal(small, [tmp_path / "ints.npz"]) == (
        f"--input {tmp_path / 'ints.npz'} (array 'input'): holds int32 values; expected float16, float32 or float64 "
        "(the network's input after preprocessing)")


def test_a_saved_input_reproduces_the_run(tmp_path):
    """compare --save D1, then --input D1/input.npy: the same input hash, and identical output arrays."""
    alexbench = str(Path(sys.executable).parent / "alexbench")
    runs = {}
    for run, extra in (("d1", []), ("d2", ["--input", str(tmp_path / "d1" / "input.npy")])):
        done = subprocess.run([alexbench, "compare", "--spec", SMALL, "--backends", "torch", "--no-onnx",
                               "--batch", "3", "--save", str(tmp_path / run), "--json", str(tmp_path / f"{run}.json"),
                               *extra],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        runs[run] = json.loads((tmp_path / f"{run}.json").read_text())
    first, second = runs["d1"]["inputs"], runs["d2"]["inputs"]
    assert second["sha256"] == first["sha256"] and second["shape"] == first["shape"] == [3, 3, 22, 17]
    assert first["source"].startswith("seeded") and second["source"] == "files"
    assert second["files"] == [str(tmp_path / "d1" / "input.npy")]
    manifest = json.loads((tmp_path / "d1" / "manifest.json").read_text())
    assert json.loads((tmp_path / "d2" / "manifest.json").read_text())["backends"] == manifest["backends"]
    for backend, files in manifest["backends"].items():
        for rel in [files["output"], *files["layers"].values()]:
            a, b = np.load(tmp_path / "d1" / rel), np.load(tmp_path / "d2" / rel)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (backend, rel)
