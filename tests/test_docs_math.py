"""docs/math.md's worked examples are what the code computes.

Each ``### Example N`` section of the page has a table of ``| `quantity` | `value` |`` rows: its
inputs, then what follows from them. These tests read the inputs from the page, run them through
``softmax_cli.nn`` (and the optimiser), and check every other row: a printed number must be the
computed value rounded to the digits shown, an integer must be exact. A row these tests do not
know fails too, so nothing on the page goes unchecked.
"""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest

from conftest import REPO
from softmax_cli.nn import MLP, cross_entropy, functional, log_softmax, softmax, softmax_cross_entropy
from softmax_cli.nn.gradcheck import TOLERANCE
from softmax_cli.optim import SGD

PAGE = REPO / "docs" / "math.md"
ROW = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \|$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def parse_examples(text: str) -> dict[int, dict[str, str]]:
    """``{N: {quantity: value text}}`` for each ``### Example N: ...`` section's table rows."""
    examples = {}
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        match = re.match(r"Example (\d+):", section)
        if match:
            rows = [ROW.match(line) for line in section.split("\n## ")[0].splitlines()]
            examples[int(match.group(1))] = {r.group(1): r.group(2) for r in rows if r}
    return examples


def numbers(value: str) -> list[str]:
    """The numbers written in a value cell, as text, in reading order (``1/3`` is one)."""
    return NUMBER.findall(value)


def as_array(value: str) -> np.ndarray:
    """A value cell (a number, ``(a, b)`` or ``[[a, b], [c, d]]``) as a float64 array."""
    flat = [float(Fraction(n)) for n in numbers(value)]
    if value.startswith("[["):
        rows = value.count("[") - 1
        return np.array(flat).reshape(rows, -1)
    return np.array(flat) if value.startswith("(") else np.array(flat[0])


def assert_quoted(name: str, value: str, computed) -> None:
    """Each printed number is ``computed`` rounded to the digits shown (integers: exact)."""
    computed = np.asarray(computed, dtype=np.float64).ravel()
    printed = numbers(value)
    assert len(printed) == computed.size, (name, value, computed)
    for text, got in zip(printed, computed):
        decimals = len(text.split(".")[1]) if "." in text else None
        tolerance = 1e-12 if decimals is None else 0.5 * 10.0 ** -decimals + 1e-12
        assert abs(float(text) - got) <= tolerance, f"{name}: the page says {text}, the code computes {got:.6g}"


def check_rows(rows: dict[str, str], inputs: tuple[str, ...], computed: dict) -> None:
    """Every row of an example is one of its ``inputs`` or a ``computed`` quantity, each
    computed quantity is on the page, and its printed numbers are the computed values."""
    unknown = set(rows) - set(inputs) - set(computed)
    assert not unknown, f"docs/math.md rows no test checks: {sorted(unknown)}"
    missing = set(computed) - set(rows)
    assert not missing, f"docs/math.md lacks the rows: {sorted(missing)}"
    for name, value in computed.items():
        assert_quoted(name, rows[name], value)


@pytest.fixture(scope="module")
def examples() -> dict[int, dict[str, str]]:
    return parse_examples(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_the_seven_examples(examples):
    assert sorted(examples) == list(range(1, 8))
    assert all(len(rows) >= 3 for rows in examples.values())


def test_example_1_one_step_of_a_one_layer_classifier(examples):
    rows = examples[1]
    x, y, W, b, lr = (as_array(rows[k]) for k in ("x", "y", "W", "b", "η"))
    label = np.array([int(np.argmax(y))])
    model = MLP([3, 3], dtype=np.float64, params=[W.T.copy(), b.copy()])   # row layout holds Wᵀ
    z = model.logits(x[None])
    loss, grads, _ = model.loss_and_grads(x[None], label)
    dW, db = grads[0].T.copy(), grads[1].copy()
    _, dz = softmax_cross_entropy(z.copy(), label)
    SGD(model.params, lr=float(lr)).step(grads)
    check_rows(rows, ("x", "y", "W", "b", "η"), {
        "z = W x + b": z, "a = softmax(z)": softmax(z), "C = -ln a_1": loss, "∂C/∂z = a - y": dz,
        "∂C/∂W = (a - y) xᵀ": dW, "∂C/∂b = a - y": db,
        "W - η ∂C/∂W": model.params[0].T, "b - η ∂C/∂b": model.params[1]})


def test_example_2_four_classes_and_the_jacobian(examples):
    rows = examples[2]
    z, y = as_array(rows["z"])[None], as_array(rows["y"])
    a = softmax(z)[0]
    jacobian = np.diag(a) - np.outer(a, a)
    # the formula against central differences of the code's softmax, column by column
    eps = 1e-6
    numeric = np.stack([(softmax(z + eps * e)[0] - softmax(z - eps * e)[0]) / (2 * eps) for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(jacobian, numeric, atol=1e-8)
    loss, dz = softmax_cross_entropy(z.copy(), y[None])
    check_rows(rows, ("z", "y"), {
        "a = softmax(z)": a, "C = -ln a_2": loss, "∂a/∂z = diag(a) - a aᵀ": jacobian,
        "(∂a/∂z)ᵀ (-y / a)": jacobian.T @ (-y / a), "∂C/∂z = a - y": dz})


def test_example_3_the_loss_is_smallest_where_the_prediction_is_the_target(examples):
    rows = examples[3]
    y, a0 = as_array(rows["y"]), as_array(rows["a_0"])
    a = np.stack([a0, 2 / 3 * (1 - a0), 1 / 3 * (1 - a0)], axis=1)
    costs = [cross_entropy(np.log(row)[None], y[None]) for row in a]    # softmax(ln a) = a
    entropy = cross_entropy(np.log(y)[None], y[None])
    assert np.argmin(costs) == int(np.flatnonzero(np.isclose(a0, y[0]))[0])
    check_rows(rows, ("y", "a_0"), {"C": costs, "H(y) = -Σ_j y_j ln y_j": entropy})


def test_example_4_a_batch_of_two(examples):
    rows = examples[4]
    Z, labels = as_array(rows["Z"]), as_array(rows["labels"]).astype(int)
    per_example = [cross_entropy(Z[i:i + 1], labels[i:i + 1]) for i in range(len(Z))]
    loss, delta = softmax_cross_entropy(Z.copy(), labels)
    check_rows(rows, ("Z", "labels"), {
        "A = softmax(Z)": softmax(Z), "C_i": per_example, "J = (C_0 + C_1) / 2": loss,
        "Δ = (A - Y) / m": delta, "∂J/∂b = column sums of Δ": delta.sum(axis=0)})


def test_example_5_label_smoothing(examples):
    rows = examples[5]
    z, label, eps = as_array(rows["z"])[None], as_array(rows["label"]).astype(int)[None], float(as_array(rows["ε"]))
    loss, dz = softmax_cross_entropy(z.copy(), label, label_smoothing=eps)
    check_rows(rows, ("z", "label", "ε"), {
        "y": functional.smooth_labels(label, 3, eps), "C = -Σ_j y_j ln a_j": loss, "∂C/∂z = a - y": dz})


def test_example_6_a_hidden_layer(examples):
    rows = examples[6]
    names = ("X", "labels", "W_1", "b_1", "W_2", "b_2")
    X, labels, W1, b1, W2, b2 = (as_array(rows[k]) for k in names)
    labels = labels.astype(int)
    model = MLP([2, 2, 2], "relu", dtype=np.float64, params=[W1, b1, W2, b2])
    first = MLP([2, 2], dtype=np.float64, params=[W1, b1])                # Z_1 alone
    Z1 = first.logits(X)
    A1 = functional.ACTIVATIONS["relu"](Z1.copy(), np.empty_like(Z1))
    Z2 = model.logits(X)
    loss, grads, _ = model.loss_and_grads(X, labels)
    grads = [g.copy() for g in grads]
    _, delta2 = softmax_cross_entropy(Z2.copy(), labels)
    back = delta2 @ W2.T
    delta1 = functional.ACTIVATION_GRADS["relu"](A1, back.copy(), np.empty(2))
    np.testing.assert_allclose(grads[0], X.T @ delta1, atol=1e-15)       # the loop agrees with its steps
    check_rows(rows, names, {
        "Z_1 = X W_1 + b_1": Z1, "A_1 = relu(Z_1)": A1, "Z_2 = A_1 W_2 + b_2": Z2, "A_2 = softmax(Z_2)": softmax(Z2),
        "J": loss, "Δ_2 = (A_2 - Y) / m": delta2, "∂J/∂W_2 = A_1ᵀ Δ_2": grads[2], "∂J/∂b_2": grads[3],
        "Δ_2 W_2ᵀ": back, "Δ_1 = (Δ_2 W_2ᵀ) ⊙ relu'(Z_1)": delta1, "∂J/∂W_1 = Xᵀ Δ_1": grads[0],
        "∂J/∂b_1": grads[1]})


def test_example_7_logits_of_magnitude_1000(examples):
    rows = examples[7]
    Z, labels = as_array(rows["Z"]), as_array(rows["labels"]).astype(int)
    with np.errstate(all="ignore"):
        assert not np.isfinite(np.log(softmax(Z))).all()               # what the page warns about
    check_rows(rows, ("Z", "labels"), {"log_softmax(Z)": log_softmax(Z), "J": cross_entropy(Z, labels)})


def test_the_page_quotes_the_gradient_checks_tolerance():
    assert f"must be below `{TOLERANCE:.0e}`".replace("e-06", "e-6") in PAGE.read_text(encoding="utf-8")


def test_a_wrong_number_on_the_page_is_caught(examples):
    """The checker itself: one digit changed, one row renamed, one row missing."""
    rows = dict(examples[4])
    rows["J = (C_0 + C_1) / 2"] = "`2.1378`".strip("`")
    with pytest.raises(AssertionError, match="the page says 2.1378"):
        test_example_4_a_batch_of_two({4: rows})
    renamed = {("J (mean)" if k.startswith("J =") else k): v for k, v in examples[4].items()}
    with pytest.raises(AssertionError, match="rows no test checks"):
        test_example_4_a_batch_of_two({4: renamed})
    with pytest.raises(AssertionError, match="lacks the rows"):
        test_example_4_a_batch_of_two({4: {k: v for k, v in examples[4].items() if not k.startswith("C_i")}})
