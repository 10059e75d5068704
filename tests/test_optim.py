"""Optimisers against their update rules written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_cli.optim import SGD, Adam, make_optimizer

G1, G2 = np.array([0.5, -2.0]), np.array([1.0, 0.25])


def run(opt_cls, grads, p0=(1.0, 1.0), **kw):
    p = np.array(p0)
    opt = opt_cls([p], **kw)
    for g in grads:
        opt.step([g.copy()])
    return p


def test_plain_sgd():
    np.testing.assert_allclose(run(SGD, [G1, G2], lr=0.1), 1 - 0.1 * G1 - 0.1 * G2)


def test_momentum_and_nesterov():
    v1 = G1
    v2 = 0.9 * v1 + G2
    np.testing.assert_allclose(run(SGD, [G1, G2], lr=0.1, momentum=0.9), 1 - 0.1 * v1 - 0.1 * v2)
    nesterov = 1 - 0.1 * (G1 + 0.9 * v1) - 0.1 * (G2 + 0.9 * v2)
    np.testing.assert_allclose(run(SGD, [G1, G2], lr=0.1, momentum=0.9, nesterov=True), nesterov)


def test_adam_two_steps_follow_algorithm_1():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    p, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    for t, g in enumerate([G1, G2], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(run(Adam, [G1, G2], lr=lr), p, rtol=1e-12)
    # the first Adam step has size lr in every coordinate, whatever the gradient's scale
    np.testing.assert_allclose(run(Adam, [G1], lr=lr), 1 - lr * np.sign(G1), rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_applies_only_to_flagged_parameters(name):
    w, b = np.array([2.0]), np.array([2.0])
    opt = make_optimizer(name, [w, b], decay=[True, False], lr=0.1, weight_decay=0.5, momentum=0.0)
    opt.step([np.zeros(1), np.zeros(1)])
    assert b[0] == 2.0                  # zero gradient, no decay: unchanged
    if name == "sgd":
        assert w[0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)
    elif name == "adamw":
        # decoupled: the loss gradient is 0, so m = 0 and only the shrink by lr * decay acts
        assert w[0] == pytest.approx(2.0 * (1 - 0.1 * 0.5), rel=1e-12)
    else:
        # L2 (coupled) decay: Adam sees g = 0.5 * w, so a second step with a different w shows
        # the coefficient: m and v accumulate 0.5 * w_t, not the bare gradient
        g1 = 0.5 * 2.0
        w1 = 2.0 - 0.1 * np.sign(g1)
        assert w[0] == pytest.approx(w1, rel=1e-6)
        opt.step([np.zeros(1), np.zeros(1)])
        g2 = 0.5 * w1
        m = 0.9 * 0.1 * g1 + 0.1 * g2
        v = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2
        expected = w1 - 0.1 * (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
        assert w[0] == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------- from the config, every setting used
def settings_of(**values) -> dict:
    """The optimizer section of a config, as the training loop passes it to make_optimizer."""
    from softmax_cli.config import OptimizerConfig

    return {k: v for k, v in vars(OptimizerConfig(**values)).items() if k != "name"}


def two_steps(name, **values):
    p = np.array([1.0, -3.0])
    opt = make_optimizer(name, [p], decay=[True], **settings_of(name=name, **values))
    for g in (G1, G2):
        opt.step([g.copy()])
    return p


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_from_a_config_uses_its_momentum_nesterov_and_weight_decay(nesterov):
    lr, mu, wd = 0.2, 0.5, 0.1                     # none of them a default
    p, v = np.array([1.0, -3.0]), np.zeros(2)
    for g in (G1, G2):
        g = g + wd * p                             # L2: the gradient of (wd / 2) ||p||^2 added
        v = mu * v + g
        p = p - lr * ((g + mu * v) if nesterov else v)
    got = two_steps("sgd", lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    np.testing.assert_allclose(got, p, rtol=1e-13)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_from_a_config_uses_its_betas_eps_and_weight_decay(name):
    lr, b1, b2, eps, wd = 0.05, 0.5, 0.75, 0.3, 0.1     # eps large enough to change the step
    p, m, v = np.array([1.0, -3.0]), np.zeros(2), np.zeros(2)
    for t, g in enumerate((G1, G2), start=1):
        g = g + (wd * p if name == "adam" else 0)       # adam: L2 into the gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        shrink = 1 - lr * wd if name == "adamw" else 1  # adamw: decoupled decay
        p = shrink * p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    got = two_steps(name, lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    np.testing.assert_allclose(got, p, rtol=1e-13)


def test_the_training_loop_builds_the_configs_optimizer():
    # what the loop builds from a config: each of these settings reaches the optimiser
    from softmax_cli.config import load_config
    from softmax_cli.engine.loop import Trainer

    sets = ["model.hidden=[4]", "train.optimizer.name=sgd", "train.optimizer.lr=0.2", "train.optimizer.momentum=0.5",
            "train.optimizer.nesterov=true", "train.optimizer.weight_decay=0.1"]
    from conftest import CONFIGS

    sgd = Trainer.build(load_config(CONFIGS / "digits.yaml", sets)).optimizer
    assert (type(sgd).__name__, sgd.lr, sgd.momentum, sgd.nesterov, sgd.weight_decay) == ("SGD", 0.2, 0.5, True, 0.1)
    sets = ["model.hidden=[4]", "train.optimizer.name=adamw", "train.optimizer.beta1=0.5",
            "train.optimizer.beta2=0.75", "train.optimizer.eps=0.3"]
    adamw = Trainer.build(load_config(CONFIGS / "digits.yaml", sets)).optimizer
    assert (type(adamw).__name__, adamw.beta1, adamw.beta2, adamw.eps) == ("AdamW", 0.5, 0.75, 0.3)
