"""Tests written for mutants that survived ``scripts/mutation.sh`` (docs/testing.md lists
the rest, each with the reason it is equivalent): small checks of what the other tests left
open, each named after the behaviour it pins down."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_cli.config import ScheduleConfig
from softmax_cli.nn import MLP
from softmax_cli.nn.functional import softmax
from softmax_cli.nn.gradcheck import check_gradients
from softmax_cli.nn.mlp import init_weights
from softmax_cli.optim import SGD, Adam, make_optimizer
from softmax_cli.schedules import Plateau, scheduled_lr


# ------------------------------------------------------------------------------- optim.py
@pytest.mark.parametrize("bad", [np.ones((3, 4))[:, ::2], np.ones(3, np.int64), [1.0, 2.0]],
                         ids=["not-contiguous", "integer", "a-list"])
def test_an_optimizer_refuses_parameters_it_cannot_update_in_place(bad):
    with pytest.raises(ValueError, match=r"^parameters must be C-contiguous float32 or float64 arrays$"):
        SGD([np.ones(2), bad], lr=0.1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_float32_parameters_keep_float32_state_and_take_gradients_of_any_layout(name):
    def run(grads):
        W = np.ones((3, 2), np.float32)
        opt = make_optimizer(name, [W], decay=[True], lr=0.1, momentum=0.9)
        for g in grads:
            opt.step([g])
        return W, opt

    g = np.arange(6, dtype=np.float64).reshape(3, 2) / 10
    W, opt = run([g.astype(np.float32), g.astype(np.float32)])
    assert W.dtype == np.float32 and all(a.dtype == np.float32 and a.shape == (6,)
                                         for a in opt.state_arrays().values())
    # a float64 gradient, and a non-contiguous one (a transposed view): converted, same update
    W64, _ = run([g, np.asfortranarray(g)])
    np.testing.assert_array_equal(W64, W)


def test_optimizer_state_round_trips_and_refuses_what_does_not_fit():
    p, q = np.ones(3), np.ones(2)
    adam = Adam([p, q], lr=0.1)
    adam.step([np.full(3, 0.5), np.full(2, -1.0)])
    state = {k: a.copy() for k, a in adam.state_arrays().items()}
    assert sorted(state) == ["m0", "m1", "v0", "v1"]
    np.testing.assert_allclose(state["m0"], 0.1 * 0.5) and np.testing.assert_allclose(state["v1"], 0.001)
    fresh = Adam([np.ones(3), np.ones(2)], lr=0.1)
    fresh.load_state(1, state)
    assert fresh.t == 1 and all(np.array_equal(a, state[k]) for k, a in fresh.state_arrays().items())
    assert sorted(SGD([p], lr=0.1, momentum=0.5).state_arrays()) == ["velocity0"]
    for broken in ({k: v for k, v in state.items() if k != "v1"}, {**state, "m0": np.zeros(4)},
                   {**state, "v0": np.zeros(3, np.float32)}):
        with pytest.raises(ValueError, match=r"optimizer state '(v1|m0|v0)' missing or not float64 of shape"):
            Adam([np.ones(3), np.ones(2)], lr=0.1).load_state(1, broken)


def test_adam_flushes_subnormal_gradients_and_moments_to_zero():
    # float32: a gradient below the smallest normal number counts as 0 (no NaN, no slow path),
    # and a normal one updates as the formula says
    tiny = np.finfo(np.float32).tiny
    p = np.ones(2, np.float32)
    adam = Adam([p], lr=0.1)
    adam.step([np.array([tiny / 4, 1.0], np.float32)])
    assert adam.m[0][0] == 0 and adam.v[0][0] == 0 and p[0] == 1.0
    assert p[1] == pytest.approx(0.9, rel=1e-6)


# --------------------------------------------------------------------------- schedules.py
def test_a_schedule_names_the_epoch_outside_the_run_and_plateau_resumes_its_lr():
    with pytest.raises(ValueError, match=r"^epoch 0 outside 1\.\.8$"):
        scheduled_lr(ScheduleConfig(), 0.1, 0, 8)
    resumed = Plateau(ScheduleConfig(name="plateau", patience=1, factor=0.5), 0.1, lr=0.025)
    assert resumed.lr == 0.025 and resumed.update(1) == 0.0125


# --------------------------------------------------------------------------------- nn/
def test_softmax_is_per_row_in_any_dtype_and_divides_by_the_temperature():
    Z = np.array([[1000.0, 1001.0], [0.0, 1.0], [-5.0, 3.0]])     # rows far apart: no row may underflow
    expected = np.exp(Z - Z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(Z), expected, rtol=1e-12)
    hot = np.exp((Z - Z.max(axis=1, keepdims=True)) / 2.5)
    np.testing.assert_allclose(softmax(Z, 2.5), hot / hot.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(softmax(Z[1], 2.5), softmax(Z[1:2], 2.5)[0], rtol=1e-12)   # one row, 1-D
    assert softmax(Z.astype(np.float32), 2.5).dtype == np.float32


@pytest.mark.parametrize("activation, std", [("relu", np.sqrt(2 / 400)), ("leaky_relu", np.sqrt(2 / 400)),
                                             ("tanh", np.sqrt(6 / 500) / np.sqrt(3))])
def test_initial_weights_follow_he_for_rectifiers_and_glorot_otherwise(activation, std):
    W = init_weights(400, 100, activation, np.random.default_rng(0), np.float32)
    assert W.dtype == np.float32 and W.shape == (400, 100)
    assert W.std() == pytest.approx(std, rel=0.03)
    assert (np.abs(W).max() <= np.sqrt(6 / 500) * (1 + 1e-6)) == (activation == "tanh")


def test_logits_in_batches_equal_one_pass_and_inputs_are_checked():
    model = MLP([6, 5, 3], "tanh", dtype=np.float32, rng=np.random.default_rng(1))
    X = np.random.default_rng(2).normal(size=(11, 6))                     # float64: cast to the model's
    whole = model.logits(X)
    assert whole.dtype == np.float32 and whole.shape == (11, 3)
    np.testing.assert_array_equal(model.logits(X, batch_size=4), whole)   # 4 + 4 + 3 rows
    np.testing.assert_allclose(model.predict_proba(X, batch_size=4), softmax(whole), rtol=1e-6)
    for bad in (X[:, :5], X[0]):
        with pytest.raises(ValueError, match=r"^expected inputs of shape \(m, 6\), got "):
            model.logits(bad)


def test_gradcheck_samples_entries_of_large_arrays_and_reports_a_wrong_gradient():
    model = MLP([30, 4, 3], "tanh", dtype=np.float64, rng=np.random.default_rng(3))
    X, y = np.random.default_rng(4).normal(size=(5, 30)), np.array([0, 1, 2, 1, 0])
    results = check_gradients(model, X, y, max_entries=7)
    assert [(r.name, r.shape, r.checked) for r in results] == [("W0", (30, 4), 7), ("b0", (4,), 4),
                                                                ("W1", (4, 3), 7), ("b1", (3,), 3)]
    assert all(0 < r.rel_error < 1e-6 for r in results)
    real = model.loss_and_grads

    def wrong(*args, **kwargs):                              # a backprop off by a factor of 2 in W0
        loss, grads, acc = real(*args, **kwargs)
        grads[0] *= 2
        return loss, grads, acc

    model.loss_and_grads = wrong
    bad = check_gradients(model, X, y, max_entries=7)
    assert bad[0].rel_error == pytest.approx(1 / 3, rel=1e-4) and bad[1].rel_error < 1e-6


def test_make_optimizer_defaults_are_the_papers_and_an_unknown_name_is_named():
    # keys missing from the settings: plain SGD without decay; Adam's defaults are Kingma & Ba's
    p = np.ones(2)
    sgd = make_optimizer("sgd", [p], decay=[True], lr=0.1)
    assert (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.0, False, 0.0)
    adam = make_optimizer("adam", [p], decay=[True], lr=0.1)
    assert (adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (0.9, 0.999, 1e-8, 0.0)
    assert Adam([p]).lr == 1e-3
    with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop'$"):
        make_optimizer("rmsprop", [p], decay=[True], lr=0.1)


def test_a_float32_network_and_its_workspace_are_float32_and_sized_by_layer():
    from softmax_cli.nn.mlp import Workspace

    model = MLP([6, 5, 4, 3], "relu", dtype=np.float32, rng=np.random.default_rng(0))
    assert [(p.shape, p.dtype) for p in model.params] == [
        ((6, 5), np.float32), ((5,), np.float32), ((5, 4), np.float32), ((4,), np.float32),
        ((4, 3), np.float32), ((3,), np.float32)]
    again = MLP([6, 5, 4, 3], "relu", dtype=np.float32, params=[p.astype(np.float64) for p in model.params])
    assert all(p.dtype == np.float32 for p in again.params)
    ws = Workspace([6, 5, 4, 3], 7, np.float32, dropout=[0.2, 0.5, 0.0])
    assert ws.X.shape == (7, 6) and ws.y.dtype == np.int64 and ws.y.shape == (7,)
    assert [z.shape for z in ws.Z] == [(7, 5), (7, 4), (7, 3)]
    assert [a.shape for a in ws.scratch] == [a.shape for a in ws.delta] == [(7, 5), (7, 4)]
    assert [g.shape for g in ws.grads] == [p.shape for p in model.params]
    assert [None if m is None else m.shape for m in ws.mask] == [(7, 6), (7, 5), None]
    assert [None if m is None else m.shape for m in ws.dropped] == [(7, 6), (7, 5), None]
    buffers = [ws.X, *ws.Z, *ws.scratch, *ws.delta, *ws.grads, *ws.mask[:2], *ws.dropped[:2]]
    assert all(a.dtype == np.float32 for a in buffers)
    plain = Workspace([6, 5, 3], 2, np.float64)
    assert plain.mask == plain.dropped == [None, None]
    assert Workspace([6, 3], 2, np.float64, training=False).grads is None


def test_an_mlp_names_what_is_wrong_with_its_arguments():
    assert MLP([3, 1, 2], rng=np.random.default_rng(0)).sizes == [3, 1, 2]      # a 1-unit layer is a layer
    for kwargs, message in (({"sizes": [5]}, r"^need at least an input and an output size, got \[5\]$"),
                            ({"sizes": [5, 0]}, r"^need at least an input and an output size, got \[5, 0\]$"),
                            ({"sizes": [5, 2], "activation": "gelu"},
                             r"^unknown activation 'gelu'; known: relu, leaky_relu, tanh, sigmoid$"),
                            ({"sizes": [5, 2], "rng": None}, r"^give rng \(for new weights\) or params \(existing ones\)$")):
        kwargs.setdefault("rng", np.random.default_rng(0))
        with pytest.raises(ValueError, match=message):
            MLP(**kwargs)
    with pytest.raises(MemoryError, match=r"^a 4294967296 x 4294967296 weight matrix is beyond NumPy's array size$"):
        MLP([2**32, 2**32], rng=np.random.default_rng(0))
