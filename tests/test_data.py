"""Data layer: CSV and IDX sources, splits, preprocessing, image normalisation, checkpoints."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, MNIST_MISSING
from softmax_cli.checkpoint import load_checkpoint, save_checkpoint
from softmax_cli.config import DataConfig, config_from_dict
from softmax_cli.data import Dataset, Preprocessor, load_dataset, make_splits, read_idx
from softmax_cli.data.images import image_to_input, normalize_digit
from softmax_cli.nn import MLP


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_round_trip_raw_and_gzip(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, a)
        np.testing.assert_array_equal(read_idx(tmp_path / name), a)


def test_idx_source_with_explicit_paths_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "ti", rng.integers(0, 256, (30, 4, 5)))
    write_idx(tmp_path / "tl", np.repeat([3, 7, 9], 10))
    write_idx(tmp_path / "vi", rng.integers(0, 256, (6, 4, 5)))
    write_idx(tmp_path / "vl", np.array([9, 9, 3, 7, 7, 3]))
    cfg = config_from_dict({"data": {"source": "idx", "train_images": str(tmp_path / "ti"),
                                     "train_labels": str(tmp_path / "tl"), "test_images": str(tmp_path / "vi"),
                                     "test_labels": str(tmp_path / "vl")}}).data
    ds = load_dataset(cfg)
    assert ds.X.shape == (30, 20) and ds.X.dtype == np.float32 and ds.image_shape == (4, 5)
    assert ds.classes == ["3", "7", "9"] and ds.y.dtype == np.int64
    assert ds.y_test.tolist() == [2, 2, 0, 1, 1, 0] and ds.pixel_max == 255


def write_csv(path, header, rows, newline="\n", bom=False):
    text = (",".join(header) + newline if header else "") + "".join(",".join(map(str, r)) + newline for r in rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


@pytest.mark.parametrize("label_column,header,position,newline", [
    ("label", True, 2, "\r\n"), ("first", False, 0, "\r"), ("last", True, 4, "\n")])
def test_csv_label_column_choices(tmp_path, label_column, header, position, newline):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 4))
    labels = np.arange(12) % 3 + 5
    table = np.insert(pixels, position, labels, axis=1)
    names = [f"p{i}" for i in range(5)]
    names[position] = "label"
    write_csv(tmp_path / "d.csv.gz", names if header else None, table.tolist(), newline=newline, bom=True)
    ds = load_dataset(DataConfig(source="csv", train=str(tmp_path / "d.csv.gz"), label_column=label_column))
    np.testing.assert_array_equal(ds.X, pixels.astype(np.float32))
    assert ds.classes == ["5", "6", "7"] and ds.y.tolist() == (labels - 5).tolist()
    assert ds.image_shape == (2, 2) and ds.X_test is None


def test_splits_are_stratified_disjoint_and_seeded():
    ds = load_dataset(DataConfig())
    cfg = DataConfig(val_fraction=0.1, test_fraction=0.2)
    a, b, c = make_splits(ds, cfg, 0), make_splits(ds, cfg, 0), make_splits(ds, cfg, 1)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1293, 144, 360)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_test, c.X_test)
    for part in (a.y_train, a.y_val, a.y_test):     # every class in proportion (+-1 example)
        expected = np.bincount(ds.y) * len(part) / len(ds.y)
        assert np.abs(np.bincount(part) - expected).max() <= 1
    tagged = Dataset(X=np.arange(len(ds.y), dtype=np.float32)[:, None], y=ds.y, classes=ds.classes,
                     image_shape=(1, 1), pixel_max=1.0)     # each row its own index
    s = make_splits(tagged, cfg, 0)
    ids = np.concatenate([s.X_train, s.X_val, s.X_test]).ravel()
    assert sorted(ids.tolist()) == list(range(len(ds.y)))   # a partition: disjoint and complete


@pytest.mark.parametrize("mode", ["global", "per_feature", "none"])
def test_preprocessor_is_fitted_on_the_training_split_only(mode):
    rng = np.random.default_rng(2)
    X_train = rng.uniform(0, 100, (50, 3)).astype(np.float32)
    pre = Preprocessor.fit(X_train, 255.0, mode)
    Z = pre.transform(X_train)
    if mode == "global":
        assert Z.mean() == pytest.approx(0, abs=1e-5) and Z.std() == pytest.approx(1, abs=1e-5)
    elif mode == "per_feature":
        np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-5)
    else:
        np.testing.assert_allclose(Z, X_train / 255, rtol=1e-6)
    shifted = pre.transform(X_train + 10)          # other data: transformed, not refitted
    assert not np.allclose(shifted.mean(axis=0), 0, atol=1e-3)


@pytest.mark.parametrize("rows", [1, 7, 50, 4096])
def test_global_mean_and_std_in_chunks_equal_numpys(rows):
    # MNIST-sized data takes several chunks; a slip in the chunking would change its scale
    from softmax_cli.data.prepare import _mean_and_std

    X = np.random.default_rng(3).uniform(0, 255, (50, 6)).astype(np.float32)
    mean, std = _mean_and_std(X, rows=rows)
    assert mean == pytest.approx(X.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(X.std(dtype=np.float64), rel=1e-12)


def test_per_feature_scaling_leaves_constant_pixels_finite():
    # MNIST's corner pixels are 0 in every image: StandardScaler's scale is 1 there, not 0
    X = np.random.default_rng(4).uniform(0, 255, (20, 3)).astype(np.float32)
    X[:, 1] = 0.0
    pre = Preprocessor.fit(X, 255.0, "per_feature")
    assert pre.scale[1] == 1.0 and pre.offset[1] == 0.0
    Z = pre.transform(X)
    assert np.isfinite(Z).all() and (Z[:, 1] == 0).all()


@pytest.mark.skipif(not MNIST.is_dir(), reason=MNIST_MISSING)
def test_normalisation_reproduces_mnist_own_preprocessing():
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:300] / 255.0
    redone = np.array([normalize_digit(x.astype(np.float32), (28, 28)) for x in images])
    total = redone.sum(axis=(1, 2))
    cy = (redone.sum(axis=2) * np.arange(28)).sum(axis=1) / total
    cx = (redone.sum(axis=1) * np.arange(28)).sum(axis=1) / total
    assert abs(cy.mean() - 14) < 0.1 and abs(cx.mean() - 14) < 0.1     # MNIST's centre of mass
    assert np.abs(redone - images).mean() < 0.02
    assert (np.abs(redone - images).max(axis=(1, 2)) < 0.01).mean() > 0.4  # many come back unchanged


def test_image_file_to_input_inverts_crops_and_scales(tmp_path):
    ink = np.zeros((100, 60), dtype=np.uint8)
    ink[10:90, 25:35] = 255                      # a tall bar, "1", off-centre in a big image
    Image.fromarray(255 - ink).save(tmp_path / "one.png")
    x = image_to_input(tmp_path / "one.png", (28, 28), 255.0, "mnist").reshape(28, 28)
    assert x.max() == pytest.approx(255, rel=0.05) and x[0].max() == 0 and x[:, 0].max() == 0
    rows = np.flatnonzero(x.max(axis=1) > 25)
    assert 19 <= len(rows) <= 21                 # the long side fits the 20-pixel box
    x8 = image_to_input(tmp_path / "one.png", (8, 8), 16.0, "uci_digits").reshape(8, 8)
    assert x8.max() <= 16 and (x8.max(axis=1) > 4).all()   # fills the height, as digits do


def test_an_unreadable_folder_is_reported_not_taken_for_an_empty_one(tmp_path, monkeypatch):
    # a folder the user may not list (tests run as root here, where chmod 000 does not stop
    # reading, so the refusal is simulated where os.walk lists folders)
    import os

    from softmax_cli.data.images import files_in, find_files
    from softmax_cli.errors import UserError

    (tmp_path / "scans" / "sub").mkdir(parents=True)
    (tmp_path / "scans" / "a.png").write_bytes(b"x")
    real = os.scandir

    def scandir(path="."):
        if Path(path) == tmp_path / "scans" / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError, match=r"scans/sub: cannot list this folder \(Permission denied\)$"):
        files_in(tmp_path / "scans")
    found = find_files([str(tmp_path / "scans"), str(tmp_path / "scans" / "a.png")])
    assert isinstance(found[0], UserError) and "cannot list this folder" in str(found[0])
    assert found[1:] == [tmp_path / "scans" / "a.png"]       # the other argument still counts


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    model = MLP([6, 5, 3], "tanh", dtype=np.float64, rng=rng)
    pre = Preprocessor(np.arange(6, dtype=np.float32), np.ones(6, dtype=np.float32), 255.0, "global")
    meta = {"classes": ["a", "b", "c"], "image_shape": [2, 3], "image_style": "mnist", "config": {"name": "x"},
            "epoch": 4}
    save_checkpoint(tmp_path / "c.npz", model, pre, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]          # no temporary left behind
    ck = load_checkpoint(tmp_path / "c.npz")
    assert ck.model.sizes == [6, 5, 3] and ck.model.activation == "tanh" and ck.model.dtype == np.float64
    for a, b in zip(ck.model.params, model.params):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ck.preprocessor.offset, pre.offset)
    assert ck.classes == ["a", "b", "c"] and ck.image_shape == (2, 3) and ck.meta["epoch"] == 4
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W0", "W1", "b0", "b1", "input_offset", "input_scale", "metadata"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_permissions_the_umask_allows(tmp_path, umask):
    # atomic_write goes through tempfile.mkstemp, whose files are owner-only (0o600)
    import subprocess
    import sys

    code = ("import os, sys; os.umask(int(sys.argv[1], 8)); from pathlib import Path\n"
            "from softmax_cli.checkpoint import atomic_write\n"
            "atomic_write(Path(sys.argv[2]), lambda f: f.write(b'x'))")
    subprocess.run([sys.executable, "-c", code, oct(umask), str(tmp_path / "f.txt")], check=True)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = MLP([2, 2], rng=np.random.default_rng(0))
    pre = Preprocessor(np.zeros(2, np.float32), np.ones(2, np.float32), 1.0, "none")
    meta = {"classes": ["a", "b"], "image_shape": [1, 2], "image_style": "mnist", "config": {}}
    save_checkpoint(tmp_path / "c.npz", model, pre, meta)
    before = (tmp_path / "c.npz").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.npz", model, pre, meta)
    assert (tmp_path / "c.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_a_faint_lopsided_glyph_is_centred_by_its_mass_and_stretched_to_full_ink(tmp_path):
    # an "L" whose mass lies far from its bounding box's centre (a heavy upright, a foot and
    # a flag to the right), in ink only 0.16 darker than grey paper: MNIST's recipe puts the
    # centre of mass at pixel (14, 14), where centring the box would put it near column 10,
    # and the ink map stretches the faint ink to full strength (else its peak is 0.26)
    ink = np.zeros((90, 70), np.float32)
    ink[10:80, 12:26] = 1.0
    ink[70:80, 26:58] = 1.0
    ink[10:16, 26:40] = 1.0
    Image.fromarray(np.round((0.62 - 0.16 * ink) * 255).astype(np.uint8)).save(tmp_path / "l.png")
    x = image_to_input(tmp_path / "l.png", (28, 28), 255.0, "mnist").reshape(28, 28)
    total = x.sum()
    cy, cx = (x.sum(axis=1) * np.arange(28)).sum() / total, (x.sum(axis=0) * np.arange(28)).sum() / total
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)
    assert x.max() >= 0.95 * 255
    rows, cols = np.flatnonzero(x.max(axis=1) > 25), np.flatnonzero(x.max(axis=0) > 25)
    assert 19 <= len(rows) <= 21 and len(cols) < len(rows)   # the long side fits the 20-pixel box
