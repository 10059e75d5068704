"""The accuracy toolkit, piece by piece on small data: dropout, label smoothing, max-norm,
AdamW, learning-rate schedules, augmentation, early stopping on val_acc and ``--repeat``."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from conftest import CONFIGS, assert_user_error, run_softmax
from softmax_cli.augment import Augmenter
from softmax_cli.checkpoint import load_checkpoint
from softmax_cli.config import AugmentConfig, ScheduleConfig
from softmax_cli.nn import MLP, softmax, softmax_cross_entropy
from softmax_cli.nn.functional import smooth_labels
from softmax_cli.nn.gradcheck import check_gradients
from softmax_cli.optim import Adam, AdamW
from softmax_cli.schedules import Plateau, scheduled_lr
from softmax_cli.engine.step import StepSettings, train_epoch

TOLERANCE = 1e-6   # relative error of backprop against central differences (math note, example 4)


def _model(sizes=(6, 5, 4, 3), activation="relu", seed=0):
    return MLP(list(sizes), activation, dtype=np.float64, rng=np.random.default_rng(seed))


# ----------------------------------------------------------------------------- dropout
def test_dropout_is_off_at_evaluation_and_inverted_in_training():
    rng = np.random.default_rng(1)
    model = _model((20, 400, 3))
    X = rng.normal(size=(64, 20))
    ws = model.workspace(64, dropout=[0.0, 0.25])
    acts, inputs = model.forward(X, ws, [0.0, 0.25], np.random.default_rng(2))
    hidden, dropped = acts[1], inputs[1]
    kept = dropped != 0
    # kept units are scaled by 1 / (1 - p) exactly; the dropped fraction is p
    np.testing.assert_allclose(dropped[kept], hidden[kept] / 0.75, rtol=1e-12)
    active = hidden > 0
    dropped_fraction = 1 - kept[active].mean()
    assert abs(dropped_fraction - 0.25) < 0.02, dropped_fraction   # 12,800 Bernoulli draws
    # the expectation of each unit is unchanged: averaged over many masks it is h
    total = np.zeros_like(hidden)
    for seed in range(400):
        total += model.forward(X, ws, [0.0, 0.25], np.random.default_rng(seed))[1][1]
    assert abs((total / 400).mean() / hidden.mean() - 1) < 0.01
    # evaluation never drops: logits are deterministic and those of the undropped network
    logits = model.logits(X)
    np.testing.assert_array_equal(logits, model.logits(X))
    np.testing.assert_allclose(logits, model.forward(X, model.workspace(64))[0][-1])
    assert not np.allclose(model.forward(X, ws, [0.0, 0.25], np.random.default_rng(3))[0][-1], logits)


def test_gradcheck_passes_with_label_smoothing_and_with_fixed_dropout_masks():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(12, 6)), rng.integers(0, 3, 12)
    for activation in ("relu", "tanh", "leaky_relu"):
        model = _model((6, 12, 8, 3), activation=activation)   # wide enough that no row kills a layer
        plain = check_gradients(model, X, y, max_entries=200, label_smoothing=0.1)
        assert max(r.rel_error for r in plain) < TOLERANCE
        dropped = check_gradients(model, X, y, max_entries=200, label_smoothing=0.1,
                                  dropout=[0.2, 0.5, 0.3], dropout_seed=7)
        assert max(r.rel_error for r in dropped) < TOLERANCE
    # and the masks matter: the gradient with dropout is not the one without
    _, g_plain, _ = model.loss_and_grads(X, y)
    g_plain = [g.copy() for g in g_plain]
    _, g_drop, _ = model.loss_and_grads(X, y, dropout=[0.2, 0.5, 0.3], rng=np.random.default_rng(7))
    assert not np.allclose(g_plain[0], g_drop[0])


def test_dropout_needs_an_rng_and_matching_buffers():
    model = _model()
    X, y = np.zeros((2, 6)), np.array([0, 1])
    with pytest.raises(ValueError, match="needs an rng"):
        model.loss_and_grads(X, y, dropout=[0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="workspace made with those rates"):
        model.loss_and_grads(X, y, model.workspace(2), dropout=[0.0, 0.5, 0.0], rng=np.random.default_rng())


# ----------------------------------------------------------------------- label smoothing
def test_label_smoothing_is_cross_entropy_against_smoothed_targets_with_gradient_a_minus_y():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(7, 4)) * 3
    y = rng.integers(0, 4, 7)
    Y = smooth_labels(y, 4, 0.2)
    np.testing.assert_allclose(Y.sum(axis=1), 1)
    assert np.allclose(Y[np.arange(7), y], 0.8 + 0.05) and np.isclose(Y.min(), 0.05)
    loss, grad = softmax_cross_entropy(Z.copy(), y, 0.2)
    expected_loss = -(Y * np.log(softmax(Z))).sum(axis=1).mean()
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, (softmax(Z) - Y) / 7, atol=1e-15)
    loss_t, grad_t = softmax_cross_entropy(Z.copy(), Y)   # the explicit-target path agrees
    assert loss_t == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(grad_t, grad, atol=1e-15)
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(Z.copy(), y, 1.0)


# ---------------------------------------------------------------------------- max-norm
def test_max_norm_caps_each_units_incoming_weights_and_leaves_the_rest():
    model = _model((5, 4, 3))
    W = model.weights[0]
    W[:, 0] *= 100                     # one unit far over the cap
    W[:, 1] = W[:, 1] / np.linalg.norm(W[:, 1]) * 0.5   # one under it
    before = W.copy()
    model.apply_max_norm(2.0)
    norms = np.linalg.norm(W, axis=0)
    assert norms.max() <= 2.0 + 1e-12
    assert norms[0] == pytest.approx(2.0)
    np.testing.assert_allclose(W[:, 0], before[:, 0] / np.linalg.norm(before[:, 0]) * 2.0)   # direction kept
    np.testing.assert_array_equal(W[:, 1], before[:, 1])


# ------------------------------------------------------------------------------- AdamW
def test_adamw_follows_algorithm_2_and_differs_from_adam_with_l2_as_the_paper_says():
    rng = np.random.default_rng(6)
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
    p0 = rng.normal(size=5)
    grads = [rng.normal(size=5) for _ in range(4)]
    adamw, adam_l2 = [p0.copy()], [p0.copy()]
    opt_w = AdamW(adamw, lr=lr, weight_decay=wd)
    opt_l2 = Adam(adam_l2, lr=lr, weight_decay=wd)
    # reference: Loshchilov & Hutter 2019, Algorithm 2 (schedule multiplier = lr, as PyTorch)
    p, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g              # the moments see the loss gradient only
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * wd * p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        opt_w.step([g])
        opt_l2.step([g])
    np.testing.assert_allclose(adamw[0], p, rtol=1e-12)
    assert not np.allclose(adam_l2[0], p, rtol=1e-6)

    # with a zero loss gradient the difference is plain: AdamW decays geometrically,
    # Adam + L2 normalises the decay gradient and moves each weight by about lr
    w, l2 = [p0.copy()], [p0.copy()]
    AdamW(w, lr=lr, weight_decay=wd).step([np.zeros(5)])
    Adam(l2, lr=lr, weight_decay=wd).step([np.zeros(5)])
    np.testing.assert_allclose(w[0], p0 * (1 - lr * wd), rtol=1e-12)
    np.testing.assert_allclose(l2[0], p0 - lr * np.sign(p0), rtol=1e-6)


# --------------------------------------------------------------------------- schedules
def test_each_schedules_learning_rate_sequence():
    def seq(epochs=8, **kw):
        return [scheduled_lr(ScheduleConfig(**kw), 0.1, e, epochs) for e in range(1, epochs + 1)]

    assert seq(name="constant") == [0.1] * 8
    assert seq(name="step", step_size=3, gamma=0.5) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    assert seq(name="step", step_size=2, gamma=0.1, warmup_epochs=2) == pytest.approx(
        [0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = seq(epochs=6, name="cosine", warmup_epochs=2, min_lr=0.01)
    assert cosine[:2] == pytest.approx([0.05, 0.1])
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert cosine[2:] == pytest.approx(expected)
    assert cosine[2] == pytest.approx(0.1) and all(a > b for a, b in zip(cosine[2:], cosine[3:]))
    with pytest.raises(ValueError):
        scheduled_lr(ScheduleConfig(), 0.1, 9, 8)

    plateau = Plateau(ScheduleConfig(name="plateau", patience=2, factor=0.5, min_lr=0.01), 0.1)
    # epochs since the last improvement, epoch after epoch: a cut after every 2 in a row
    lrs = [plateau.update(stale) for stale in [0, 1, 2, 0, 1, 2, 3, 4, 5, 6]]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.01])


def test_metrics_csv_records_each_epochs_learning_rate(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--quiet", "--set", "train.epochs=5",
                       "--set", "train.early_stopping=null", "--set",
                       "train.schedule={name: cosine, warmup_epochs: 2, min_lr: 0.0001}",
                       "--set", "output.dir=out", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "digits" / "metrics.csv")))
    cfg = load_checkpoint(tmp_path / "out" / "digits" / "last.npz").meta["config"]
    lr0 = cfg["train"]["optimizer"]["lr"]
    expected = [scheduled_lr(ScheduleConfig(name="cosine", warmup_epochs=2, min_lr=0.0001), lr0, e, 5)
                for e in range(1, 6)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-12)


def test_plateau_schedule_halves_the_learning_rate_in_training(tmp_path):
    # min_delta 10: only epoch 1 counts as an improvement, so after epoch e >= 2 the run has
    # had e - 1 epochs without one, and with patience 1 each of them halves the rate
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--quiet", "--set", "train.epochs=5",
                       "--set", "train.early_stopping={patience: 50, min_delta: 10}",
                       "--set", "train.schedule={name: plateau, patience: 1, factor: 0.5}",
                       "--set", "train.augment=null", "--set", "model.hidden=[32]",
                       "--set", "output.dir=out", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "digits" / "metrics.csv")))
    lr0 = 0.001
    assert [float(r["lr"]) for r in rows] == pytest.approx([lr0, lr0, lr0 / 2, lr0 / 4, lr0 / 8], rel=1e-12)


# ------------------------------------------------------------------------ augmentation
def _digit_images(n=16, seed=0):
    from sklearn.datasets import load_digits

    X = load_digits().images[:n].astype(np.float64)
    big = np.zeros((n, 28, 28))
    big[:, 6:22, 6:22] = np.kron(X, np.ones((2, 2)))    # 16x16 glyphs with a margin, like MNIST
    return big.reshape(n, -1)


def test_augmentation_keeps_labels_and_mass_and_is_seeded():
    from sklearn.datasets import load_digits

    X, labels = _digit_images(64), load_digits().target[:64]
    # shifts and rotations move the ink without creating or losing any (bilinear sampling)
    affine = Augmenter(AugmentConfig(shift=2, rotate=12), (28, 28), 64)(X.copy(), np.random.default_rng(0))
    assert not np.allclose(affine, X)
    np.testing.assert_allclose(affine.sum(axis=1), X.sum(axis=1), rtol=2e-3)
    # an elastic field stretches some parts and squeezes others: mass kept on average
    cfg = AugmentConfig(shift=2, rotate=12, elastic_alpha=8, elastic_sigma=4)
    out = Augmenter(cfg, (28, 28), 64)(X.copy(), np.random.default_rng(0))
    ratio = out.sum(axis=1) / X.sum(axis=1)
    assert abs(ratio.mean() - 1) < 0.03 and np.abs(ratio - 1).max() < 0.15
    # labels are kept: rotated or elastically distorted (not shifted, which pixel-wise
    # comparison cannot see through), each image stays closest to its own original, the
    # same digit drawn a little differently, in its own row of the batch
    for only in (AugmentConfig(rotate=12), AugmentConfig(elastic_alpha=8, elastic_sigma=4)):
        distorted = Augmenter(only, (28, 28), 64)(X.copy(), np.random.default_rng(2))
        corr = np.corrcoef(distorted, X)[:64, 64:]
        nearest = corr.argmax(axis=1)
        assert (labels[nearest] == labels).all()            # the same class ...
        assert (nearest == np.arange(64)).mean() >= 0.9      # ... mostly the very same image
        assert np.diag(corr).min() > 0.7
    # seeded: the same generator state gives the same batch, another a different one
    again = Augmenter(cfg, (28, 28), 64)(X.copy(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    assert not np.allclose(out, Augmenter(cfg, (28, 28), 64)(X.copy(), np.random.default_rng(1)))
    # all settings 0: the images come back unchanged
    np.testing.assert_allclose(Augmenter(AugmentConfig(), (28, 28), 64)(X.copy(), np.random.default_rng(0)),
                               X, atol=1e-4)


def test_augmentation_geometry_whole_pixel_shift_and_zoom():
    X = _digit_images(4)
    # a whole-pixel shift moves the image exactly (bilinear weights are 0 and 1)
    shifted = Augmenter(AugmentConfig(shift=3), (28, 28), 4)
    out = shifted(X.copy(), np.random.default_rng(3))
    assert np.abs(out.sum(axis=1) - X.sum(axis=1)).max() < 1e-3 * X.sum(axis=1).min()
    # the centre of mass moves by the drawn shift
    rows = np.arange(28)[:, None]

    def com(images):
        images = images.reshape(-1, 28, 28)
        return (images * rows).sum(axis=(1, 2)) / images.sum(axis=(1, 2))

    # with rotate = scale = 0 the draws are: angle (m), zoom (m), then shift (2, m)
    draws = np.random.default_rng(3)
    draws.uniform(-0, 0, 4), draws.uniform(1, 1, 4)
    shift = draws.uniform(-3, 3, (2, 4))
    np.testing.assert_allclose(com(out) - com(X), shift[0], atol=0.02)
    # a zoom by s scales the mass by about s^2
    zoom = Augmenter(AugmentConfig(scale=0.2), (28, 28), 4)
    draws = np.random.default_rng(5)
    draws.uniform(0, 0, 4)
    s = draws.uniform(0.8, 1.2, 4)
    out = zoom(X.copy(), np.random.default_rng(5))
    np.testing.assert_allclose(out.sum(axis=1) / X.sum(axis=1), s ** 2, rtol=0.03)


def test_an_epoch_resumed_mid_way_draws_the_same_dropout_and_distortions():
    rng = np.random.default_rng(8)
    X = _digit_images(40).astype(np.float32)
    y = rng.integers(0, 3, 40)
    order = rng.permutation(40)

    class Scale:   # preprocessing stand-in: pixels / 16
        @staticmethod
        def transform(batch, inplace):
            batch /= 16
            return batch

    def run(start_model):
        model = MLP([784, 16, 3], dtype=np.float32, params=[p.copy() for p in start_model.params])
        settings = StepSettings(label_smoothing=0.1, dropout=[0.1, 0.3], max_norm=3.0, seed=11,
                                augment=Augmenter(AugmentConfig(shift=2, rotate=10, elastic_alpha=4), (28, 28), 8),
                                preprocess=Scale)
        ws = model.workspace(8, dropout=settings.dropout)
        opt = Adam(model.params)
        return model, opt, ws, settings

    base = MLP([784, 16, 3], dtype=np.float32, rng=np.random.default_rng(0))
    model_a, opt_a, ws_a, s_a = run(base)
    train_epoch(model_a, opt_a, X, y, order, ws_a, settings=s_a, epoch=3)
    # the same epoch stopped after 2 batches, then continued from row 16
    model_b, opt_b, ws_b, s_b = run(base)
    _, _, done = train_epoch(model_b, opt_b, X, y, order, ws_b, settings=s_b, epoch=3, stop=lambda: True)
    assert done == 8
    train_epoch(model_b, opt_b, X, y, order, ws_b, settings=s_b, epoch=3, start=done)
    for a, b in zip(model_a.params, model_b.params):
        np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(model_a.weights[0], axis=0).max() <= 3.0 + 1e-5


# ------------------------------------------------------------- through the real command
def test_early_stopping_on_val_acc_keeps_the_best_epochs_weights(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--quiet", "--json", "--set", "train.epochs=40",
                       "--set", "train.monitor=val_acc", "--set", "train.early_stopping={patience: 3}",
                       "--set", "train.schedule.name=constant", "--set", "train.optimizer.lr=0.003",
                       "--set", "output.dir=out", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    rows = list(csv.DictReader(open(tmp_path / "out" / "digits" / "metrics.csv")))
    acc = [float(r["val_acc"]) for r in rows]
    loss = [float(r["val_loss"]) for r in rows]
    best = max(range(len(rows)), key=lambda i: (acc[i], -loss[i]))   # accuracy, then the lower loss
    assert summary["best_epoch"] == best + 1
    assert summary["stopped_early"] and len(rows) == best + 1 + 3
    ckpt = load_checkpoint(tmp_path / "out" / "digits" / "best.npz")
    assert ckpt.meta["epoch"] == best + 1
    assert ckpt.meta["metrics"]["val_acc"] == pytest.approx(acc[best])


def test_repeat_trains_each_seed_and_reports_mean_and_std(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--quiet", "--json", "--repeat", "3",
                       "--set", "train.epochs=3", "--set", "seed=5", "--set", "output.dir=out",
                       cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["seeds"] == [5, 6, 7]
    accs = []
    for run, seed in zip(stats["runs"], [5, 6, 7]):
        ckpt = load_checkpoint(tmp_path / "out" / f"digits-seed{seed}" / "best.npz")
        assert ckpt.meta["config"]["seed"] == seed and run["seed"] == seed
        accs.append(ckpt.meta["metrics"]["test_acc"])
    assert stats["test_acc_mean"] == pytest.approx(np.mean(accs))
    assert stats["test_acc_std"] == pytest.approx(np.std(accs, ddof=1))
    assert len(set(accs)) > 1 or len({r["test_loss"] for r in stats["runs"]}) == 3   # different seeds, different runs
    text = run_softmax("train", CONFIGS / "digits.yaml", "--quiet", "--repeat", "2", "--set", "train.epochs=2",
                       "--set", "output.dir=out2", cwd=tmp_path, timeout=300)
    assert text.returncode == 0, text.stderr
    assert "test accuracy over 2 seeds (0-1): mean" in text.stdout and "standard deviation" in text.stdout


def test_repeat_with_resume_is_refused(tmp_path):
    proc = run_softmax("train", "--resume", "x/last.npz", "--repeat", "2", cwd=tmp_path, timeout=60)
    assert_user_error(proc, "--resume", "no CONFIG, --set or --repeat")
