"""The allocation-free training path computes what the plain one does (no timings here)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import CONFIGS, SAMPLES, assert_usage_error, run_softmax
from softmax_cli.nn import MLP
from softmax_cli.optim import Adam
from softmax_cli.engine.step import train_epoch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_reused_workspace_gives_the_gradients_of_a_fresh_one(dtype):
    rng = np.random.default_rng(0)
    model = MLP([12, 9, 7, 4], "relu", dtype=dtype, rng=rng)
    ws = model.workspace(16)
    for m in (16, 5, 16):                       # full batch, a short last batch, full again
        X, y = rng.normal(size=(m, 12)).astype(dtype), rng.integers(0, 4, m)
        fresh_loss, fresh, fresh_hits = model.loss_and_grads(X.copy(), y)
        fresh = [g.copy() for g in fresh]
        loss, grads, hits = model.loss_and_grads(X, y, ws)
        assert loss == fresh_loss and hits == fresh_hits
        for g, f in zip(grads, fresh):
            np.testing.assert_array_equal(g, f)
        assert grads[0] is ws.grads[0]          # written into the workspace, not a new array


def test_a_workspace_too_small_for_the_batch_is_refused():
    model = MLP([3, 2], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot hold a batch of 5 rows"):
        model.loss_and_grads(np.zeros((5, 3), np.float32), np.zeros(5, np.int64), model.workspace(4))


@pytest.mark.parametrize("label", [-1, 3])
def test_fused_loss_refuses_labels_outside_the_classes(label):
    from softmax_cli.nn import softmax_cross_entropy

    Z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        softmax_cross_entropy(Z, np.array([0, label]))
    assert (Z == 0).all()                       # refused before anything was written


def test_logits_in_batches_equal_logits_in_one_pass():
    rng = np.random.default_rng(1)
    model = MLP([6, 5, 3], "tanh", dtype=np.float64, rng=rng)
    X = rng.normal(size=(23, 6))
    np.testing.assert_allclose(model.logits(X, batch_size=4), model.logits(X, batch_size=100), rtol=1e-13)


def test_train_epoch_gathers_batches_in_the_given_order():
    # the gathered batches must be exactly X[order] sliced: compare with explicit slicing
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(50, 8)).astype(np.float32), rng.integers(0, 3, 50)
    order = rng.permutation(50)
    a = MLP([8, 6, 3], rng=np.random.default_rng(3))
    b = MLP([8, 6, 3], params=[p.copy() for p in a.params])
    opt_a, opt_b = Adam(a.params, lr=0.01), Adam(b.params, lr=0.01)
    loss_sum, correct, done = train_epoch(a, opt_a, X, y, order, a.workspace(16))
    assert done == 50
    expected_loss, expected_correct = 0.0, 0
    for lo in range(0, 50, 16):
        rows = order[lo:lo + 16]
        loss, grads, hits = b.loss_and_grads(X[rows], y[rows])
        opt_b.step(grads)
        expected_loss += loss * len(rows)
        expected_correct += hits
    assert loss_sum == pytest.approx(expected_loss, rel=1e-12) and correct == expected_correct
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("bad", [-1, 20])
@pytest.mark.parametrize("raw", [True, False])
def test_train_epoch_refuses_row_indices_outside_the_data(bad, raw):
    # the compiled gather does not check indices (and np.take would clip them): refused first
    from softmax_cli.data import Preprocessor
    from softmax_cli.engine.step import StepSettings

    X, y = np.zeros((20, 4), np.uint8 if raw else np.float32), np.zeros(20, np.int64)
    model = MLP([4, 3], rng=np.random.default_rng(0))
    before = [p.copy() for p in model.params]
    settings = StepSettings(preprocess=Preprocessor.fit(np.zeros((1, 4), np.float32), 255.0, "none") if raw else None)
    order = np.arange(20)
    order[7] = bad
    with pytest.raises(ValueError, match=r"outside 0\.\.19"):
        train_epoch(model, Adam(model.params), X, y, order, model.workspace(8), settings=settings)
    for p, q in zip(model.params, before):
        np.testing.assert_array_equal(p, q)             # nothing trained on garbage


def test_adam_flushes_subnormal_moments_to_zero():
    tiny = np.finfo(np.float32).tiny
    p = np.ones(3, np.float32)
    opt = Adam([p], lr=1e-3)
    opt.step([np.array([1.0, 1e-19, 0.0], np.float32)])
    # m = 0.1 g: 1e-20 is normal; v = 0.001 g^2 = 1e-41 would be subnormal and is stored as 0
    assert opt.m[0][1] == pytest.approx(1e-20) and opt.v[0][1] == 0.0
    for _ in range(400):                         # m decays by 0.9 a step: below tiny it is 0
        opt.step([np.zeros(3, np.float32)])
    assert ((opt.m[0] == 0) | (np.abs(opt.m[0]) >= tiny)).all()
    assert ((opt.v[0] == 0) | (opt.v[0] >= tiny)).all()
    assert opt.m[0][1] == 0.0


def test_predict_and_help_do_not_import_the_training_stack(tmp_path):
    # start-up time: what `softmax --help` and `softmax predict` import must stay light
    # (pydantic: typer 0.29 imports it to convert arguments, hence pyproject's typer < 0.29)
    heavy = ("('sklearn', 'scipy', 'skimage', 'numba', 'matplotlib', 'tqdm', 'torch', 'yaml', "
             "'softmax_cli.config', 'pydantic')")
    code = ("import sys; import softmax_cli.cli, softmax_cli.checkpoint, softmax_cli.data.images, "
            f"softmax_cli.predict, softmax_cli.models; print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

    # and a whole predict run with every option, through the console script's main(): reading
    # a photo needs SciPy (lighting, connected components) and scikit-image (Otsu's threshold),
    # imported by the functions that use them (softmax_cli/data/ink.py), so they are the only
    # ones of the list a run may import
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data import Preprocessor

    save_checkpoint(tmp_path / "m.npz", MLP([784, 8, 10], rng=np.random.default_rng(0)),
                    Preprocessor(np.zeros(784), np.ones(784), 255.0, "global"),
                    {"classes": [str(c) for c in range(10)], "image_shape": [28, 28], "image_style": "mnist",
                     "config": {}, "epoch": 1, "metrics": {}})
    code = ("import atexit, sys; from softmax_cli.cli import main\n"
            f"atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules)))\n"
            "sys.argv = ['softmax', 'predict', '-c', 'm.npz', sys.argv[1], sys.argv[1] + '/*.png', "
            "'--top-k', '2', '--reject-threshold', '0.5', '--output', 'p.csv', '--json', '--save-inputs', 'seen']\n"
            "main()")
    out = subprocess.run([sys.executable, "-c", code, str(SAMPLES)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    document, imported = out.stdout.splitlines()                # one JSON document, then the modules
    assert len(json.loads(document)) == 40 and imported == "['scipy', 'skimage']"
    assert (tmp_path / "p.csv").is_file() and len(list((tmp_path / "seen").iterdir())) == 40


def test_predict_and_inspect_never_import_matplotlib(digits_run):
    # matplotlib is imported only by the functions that draw: not by `predict`, not by
    # `inspect` without --weights, not by importing the training or report modules
    code = ("import sys; import softmax_cli.engine.loop, softmax_cli.report; from softmax_cli.cli import app\n"
            "for args in (['predict', sys.argv[2], '-c', sys.argv[1]], ['inspect', sys.argv[1]]):\n"
            "    app(args, standalone_mode=False)\n"
            "print('matplotlib' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, digits_run["best_checkpoint"], str(SAMPLES / "digits-7.png")],
                          capture_output=True, text=True, cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert "digits-7.png  7" in proc.stdout and "MLP 64-512-10" in proc.stdout      # both commands ran
    assert proc.stderr.strip() == "False"


def test_threads_option_trains_and_rejects_zero(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--threads", "1", "--quiet", "--json",
                       "--set", "train.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--threads", "0", cwd=tmp_path)
    assert_usage_error(proc, "train", "Invalid value for '--threads': 0 is not in the range x>=1.")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["digits"]     # no second run


# --------------------------------------------- the batch gather, the fused loss step
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("raw", ["uint8", "float32"])
def test_gathering_a_batch_preprocesses_it_exactly_as_transform_does(dtype, raw):
    from softmax_cli.data import Preprocessor
    from softmax_cli.nn.kernels import gather_rows

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 12)).astype(raw)
    pre = Preprocessor.fit(pixels.astype(np.float32), 255.0, "per_feature")
    rows = rng.permutation(40)[:9]
    out = np.full((9, 12), np.nan, dtype)
    gather_rows(pixels, rows, pre.offset.astype(dtype), pre.scale.astype(dtype), out)
    np.testing.assert_array_equal(out, pre.transform(pixels[rows].astype(np.float32), dtype))


def test_pixels_are_stored_as_bytes_only_when_nothing_is_lost():
    from softmax_cli.engine.step import compact_pixels

    ints = np.array([[0, 16, 255], [3, 4, 5]], np.float32)
    compact = compact_pixels(ints)
    assert compact.dtype == np.uint8 and (compact == ints).all()
    for kept in ([[0, 0.5]], [[0, 256]], [[-1, 3]], [[np.nan, 3]]):
        X = np.array(kept, np.float32)
        assert compact_pixels(X) is X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_epoch_on_raw_pixels_equals_an_epoch_on_preprocessed_inputs(dtype):
    # what `softmax train` runs (uint8 pixels, preprocessed as each batch is gathered)
    # against the same epoch on inputs preprocessed up front: the same weights, bit for bit
    from softmax_cli.data import Preprocessor
    from softmax_cli.engine.step import StepSettings, compact_pixels

    rng = np.random.default_rng(4)
    raw = rng.integers(0, 17, (50, 8)).astype(np.float32)
    y, order = rng.integers(0, 3, 50), rng.permutation(50)
    pre = Preprocessor.fit(raw, 16.0, "per_feature")
    a = MLP([8, 6, 3], dtype=dtype, rng=np.random.default_rng(5))
    b = MLP([8, 6, 3], dtype=dtype, params=[p.copy() for p in a.params])
    out_a = train_epoch(a, Adam(a.params), compact_pixels(raw), y, order, a.workspace(16),
                        settings=StepSettings(preprocess=pre))
    out_b = train_epoch(b, Adam(b.params), pre.transform(raw, dtype), y, order, b.workspace(16))
    assert out_a == out_b
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("dropout", [None, [0.2, 0.5, 0.5]])
def test_an_epoch_allocates_no_array_of_the_batch_size(activation, dropout):
    # every (batch, width) array of a step lives in the workspace, the activations' working
    # memory included; what NumPy allocates inside a call besides (a broadcast's iterator
    # buffer, at most 8192 entries) is far smaller than one such array
    import tracemalloc

    from softmax_cli.data import Preprocessor
    from softmax_cli.engine.step import StepSettings, compact_pixels

    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, (2048, 64)).astype(np.float32)
    X, y = compact_pixels(raw), rng.integers(0, 10, 2048)
    model = MLP([64, 256, 128, 10], activation, np.float32, rng=rng)
    optimizer, ws = Adam(model.params), model.workspace(1024, dropout=dropout)
    settings = StepSettings(preprocess=Preprocessor.fit(raw, 255.0, "global"), dropout=dropout,
                            label_smoothing=0.1, max_norm=3.0)
    train_epoch(model, optimizer, X, y, rng.permutation(2048), ws, settings=settings)  # compiles
    order = rng.permutation(2048)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        train_epoch(model, optimizer, X, y, order, ws, settings=settings, epoch=2)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024    # a bool array (1024, 128), the smallest of the batch's size: 128 KiB


@pytest.mark.parametrize("targets, smoothing", [(False, 0.0), (False, 0.1), (True, 0.0)])
def test_the_loss_step_counts_hits_and_gives_the_output_bias_gradient(targets, smoothing):
    # against the formulas in NumPy: J = -mean_i sum_j Y_ij log_softmax(Z)_ij and
    # dJ/dZ = (softmax(Z) - Y) / m, with Y one-hot, smoothed one-hot or given distributions
    from softmax_cli.nn.functional import log_softmax, softmax, softmax_cross_entropy_step

    rng = np.random.default_rng(6)
    Z, labels = rng.normal(size=(7, 4)), rng.integers(0, 4, 7)
    Z[0] = [1.0, 3.0, 3.0, 0.0]                  # a tie: numpy.argmax takes the first, 1
    labels[0] = 2
    Z[1, labels[1]] = 10.0                       # a sure hit
    Y = np.eye(4)[labels] * (1 - smoothing) + smoothing / 4
    y = np.eye(4)[labels] * 0.9 + 0.1 / 4 if targets else labels
    if targets:
        Y = y
    bias_grad = np.full(4, np.nan)
    dZ = Z.copy()
    loss, hits = softmax_cross_entropy_step(dZ, y, smoothing, bias_grad)
    assert hits == np.count_nonzero(Z.argmax(axis=1) == labels)
    assert Z.argmax(axis=1)[0] == 1 and hits >= 1        # the tie counts as a miss
    assert loss == pytest.approx(-(Y * log_softmax(Z)).sum(axis=1).mean(), rel=1e-12)
    np.testing.assert_allclose(dZ, (softmax(Z) - Y) / 7, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(bias_grad, ((softmax(Z) - Y) / 7).sum(axis=0), rtol=1e-12, atol=1e-16)


def test_the_loss_step_refuses_a_bias_gradient_of_the_wrong_shape_or_dtype():
    from softmax_cli.nn.functional import softmax_cross_entropy_step

    Z = np.zeros((2, 3), np.float32)
    for bad in (np.zeros(4, np.float32), np.zeros(3, np.float64)):
        with pytest.raises(ValueError, match=r"bias_grad must be a \(3,\) float32 array"):
            softmax_cross_entropy_step(Z, np.array([0, 1]), 0.0, bad)

