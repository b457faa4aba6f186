"""What every backend trains on: seeded labels, --labels files (each wrong file refused with one exact
line), dropout masks drawn per (seed, step, layer), and train.npz as the worker reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexbench.harness.errors import UsageError
from alexbench.harness.train.data import (
    class_count,
    dropout_masks,
    file_labels,
    read_train_npz,
    seeded_labels,
    train_data,
    write_train_npz,
)
from alexbench.spec import load_spec

SPECS_DIR = Path(__file__).parents[2] / "specs"

SPEC = load_spec(SPECS_DIR / "train-small.yaml")  # 7 classes, dropout drop1 on 150 features (layer index 6)


def test_masks_follow_the_documented_draw():
    masks = dropout_masks(SPEC, batch=4, steps=2, seed=3)
    expected = (np.random.default_rng([3, 2, 6]).random((4, 150)) >= 0.5).astype(np.float32)
    assert list(masks) == [1, 2] and list(masks[2]) == ["drop1"]
    np.testing.assert_array_equal(masks[2]["drop1"], expected)
    assert masks[2]["drop1"].dtype == np.float32 and set(np.unique(masks[2]["drop1"])) == {0.0, 1.0}


def test_a_step_s_masks_do_not_depend_on_the_step_count_and_differ_between_steps_and_seeds():
    two, five = dropout_masks(SPEC, 8, 2, seed=0), dropout_masks(SPEC, 8, 5, seed=0)
    for k in (1, 2):
        np.testing.assert_array_equal(two[k]["drop1"], five[k]["drop1"])
    assert not np.array_equal(five[1]["drop1"], five[2]["drop1"])
    assert not np.array_equal(five[1]["drop1"], dropout_masks(SPEC, 8, 1, seed=1)[1]["drop1"])
    # The keep rate is 1 - rate: 8 x 150 x 5 draws at p = 0.5 (6 sigma is 0.04).
    kept = np.mean([m["drop1"].mean() for m in five.values()])
    assert abs(kept - 0.5) < 0.04


def test_two_dropout_layers_draw_independent_masks(tmp_path):
    text = (SPECS_DIR / "train-small.yaml").read_text().replace(
        "  - {name: fc2, op: linear, units: 7}",
        "  - {name: drop2, op: dropout, rate: 0.25}\n  - {name: fc2, op: linear, units: 7}")
    (tmp_path / "two.yaml").write_text(text)
    spec = load_spec(tmp_path / "two.yaml")
    masks = dropout_masks(spec, 6, 1, seed=0)[1]
    assert masks["drop2"].shape == (6, 9)
    np.testing.assert_array_equal(masks["drop2"], (np.random.default_rng([0, 1, 9]).random((6, 9)) >= 0.25))
    assert not np.array_equal(masks["drop1"][:, :9], masks["drop2"])


def test_seeded_labels_are_in_range_and_repeat_per_seed():
    labels = seeded_labels(7, 50, seed=0)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 7
    np.testing.assert_array_equal(labels, seeded_labels(7, 50, seed=0))
    assert not np.array_equal(labels, seeded_labels(7, 50, seed=1))


VALID = "expected a 1-D integer .npy array of 4 labels (one per input) in [0, 7)"


@pytest.mark.parametrize("array, message", [
    (np.zeros(4), f"received a float64 array of shape [4]; {VALID}"),
    (np.zeros((4, 1), dtype=np.int64), f"received a int64 array of shape [4, 1]; {VALID}"),
    (np.zeros(3, dtype=np.int64), f"received 3 labels for 4 inputs; {VALID}"),
    (np.array([0, 1, 7, 2]), f"label 7 at index 2 is out of range; {VALID}, the spec's 7 output features"),
    (np.array([0, -1, 3, 2], dtype=np.int8), f"label -1 at index 1 is out of range; {VALID}, the spec's 7 output "
                                              "features"),
], ids=["float", "2-D", "too few", "too large", "negative"])
def test_a_wrong_labels_file_is_refused_with_one_line(tmp_path, array, message):
    path = tmp_path / "labels.npy"
    np.save(path, array)
    with pytest.raises(UsageError) as raised:
        file_labels(str(path), 4, 7)
    assert str(raised.value) == f"--labels {path}: {message}"


def test_a_missing_or_unreadable_labels_file_is_refused(tmp_path):
    with pytest.raises(UsageError) as raised:
        file_labels(str(tmp_path / "none.npy"), 4, 7)
    assert str(raised.value) == f"--labels {tmp_path / 'none.npy'}: no such file; {VALID}"
    (tmp_path / "text.npy").write_text("0 1 2 3")
    with pytest.raises(UsageError, match=r"text\.npy: not a \.npy array \(ValueError: .*\); expected a 1-D"):
        file_labels(str(tmp_path / "text.npy"), 4, 7)
    np.savez(tmp_path / "both.npz", a=np.zeros(4, dtype=np.int64))
    with pytest.raises(UsageError) as raised:
        file_labels(str(tmp_path / "both.npz"), 4, 7)
    assert str(raised.value) == f"--labels {tmp_path / 'both.npz'}: received an .npz archive of a; {VALID}"


def test_a_good_labels_file_is_taken_as_int64(tmp_path):
    np.save(tmp_path / "y.npy", np.array([6, 0, 3, 3], dtype=np.uint8))
    labels = file_labels(str(tmp_path / "y.npy"), 4, 7)
    assert labels.dtype == np.int64 and labels.tolist() == [6, 0, 3, 3]


def test_a_spec_without_a_class_vector_is_refused(tmp_path):
    (tmp_path / "maps.yaml").write_text("name: maps\ninput: [3, 8, 6]\nlayers:\n"
                                        "  - {name: conv1, op: conv2d, filters: 4, kernel: 3}\n")
    with pytest.raises(UsageError) as raised:
        class_count(load_spec(tmp_path / "maps.yaml"))
    assert str(raised.value) == ("--train: spec 'maps' ends in an output of shape [4, 6, 4] per input; the "
                                 "cross-entropy loss needs one vector of class scores per input (end in linear or "
                                 "softmax)")


def test_train_npz_round_trips(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 3, 13, 11)).astype(np.float32)
    data = train_data(SPEC, x, steps=3, seed=5, labels_path=None)
    assert data.labels_source == "seeded, seed 5" and data.masks_info()["layers"] == ["drop1"]
    x2, labels, masks = read_train_npz(write_train_npz(tmp_path / "train.npz", data))
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(labels, data.labels)
    assert sorted(masks) == [1, 2, 3]
    for k in masks:
        np.testing.assert_array_equal(masks[k]["drop1"], data.masks[k]["drop1"])
    assert len(data.masks_info()["sha256"]) == 64 and data.labels_info()["sha256"] != data.masks_info()["sha256"]
