"""The Python API: SoftmaxClassifier as scikit-learn expects an estimator to be, train(), load()."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import CONFIGS, SAMPLES, run_softmax
from softmax_cli import SoftmaxClassifier

# small and quick: the estimator checks fit it about a hundred times on blobs of a few hundred rows
CHECKED = SoftmaxClassifier(hidden=(16,), epochs=20, lr=0.02, batch_size=32, random_state=0)


def expected_failures(estimator) -> dict[str, str]:
    """Checks expected to fail, with the reason (scikit-learn's own convention): none."""
    return {}


@parametrize_with_checks([CHECKED], expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def small(**params) -> SoftmaxClassifier:
    return SoftmaxClassifier(**{"hidden": (32,), "epochs": 8, "lr": 0.01, "pixel_max": 16, "random_state": 0,
                                **params})


def test_grid_search_over_two_learning_rates_in_parallel(digits):
    from sklearn.model_selection import GridSearchCV

    X, y = digits
    search = GridSearchCV(small(), {"lr": [0.001, 0.01]}, cv=3, n_jobs=2).fit(X, y)
    scores = dict(zip(search.cv_results_["param_lr"], search.cv_results_["mean_test_score"]))
    assert set(scores) == {0.001, 0.01}
    assert search.best_params_ == {"lr": 0.01} and scores[0.01] > scores[0.001] and scores[0.01] > 0.9
    # the same search in this process gives the same scores: the workers ran the same code
    serial = GridSearchCV(small(), {"lr": [0.001, 0.01]}, cv=3, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(serial.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"])
    assert search.best_estimator_.score(X, y) > 0.95


def test_pipeline_and_cross_val_score(digits):
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = digits
    scores = cross_val_score(make_pipeline(StandardScaler(), small(normalize="none", pixel_max=1.0)), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9


def test_fit_runs_the_engine_the_command_line_runs(digits, tmp_path):
    # the CLI on a CSV of these rows, and fit() on the same rows: the same split of training
    # and validation rows, the same weights, the same best epoch
    from softmax_cli.checkpoint import load_checkpoint

    X, y = digits
    np.savetxt(tmp_path / "d.csv", np.column_stack([y, X]).astype(int), fmt="%d", delimiter=",")
    np.savetxt(tmp_path / "t.csv", np.column_stack([y[:20], X[:20]]).astype(int), fmt="%d", delimiter=",")
    (tmp_path / "cfg.yaml").write_text(
        "data: {source: csv, train: d.csv, test: t.csv, label_column: first, pixel_max: 16}\n"
        "model: {hidden: [32]}\ntrain: {epochs: 5, optimizer: {name: adam, lr: 0.01}, monitor: val_acc}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = load_checkpoint(tmp_path / json.loads(proc.stdout)["best_checkpoint"])
    clf = small(epochs=5, monitor="val_acc").fit(X.astype(np.float32), y)
    assert clf.best_epoch_ == ckpt.meta["epoch"]
    for ours, theirs in zip(clf.checkpoint_.model.params, ckpt.model.params):
        np.testing.assert_array_equal(ours, theirs)
    assert clf.checkpoint_.meta["splits"]["train"] == ckpt.meta["splits"]["train"]


def test_pickle_save_and_load_keep_the_predictions(digits, tmp_path):
    X, y = digits
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    clf = small(image_shape=(8, 8)).fit(X, labels)
    proba = clf.predict_proba(X)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    clf.save(tmp_path / "m.npz")
    loaded = SoftmaxClassifier.load(tmp_path / "m.npz")
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    assert (loaded.predict(X) == clf.predict(X)).all() and loaded.score(X, labels) > 0.95
    # the command line reads it as any checkpoint: 8x8 images on 0-16, the digits' style
    proc = run_softmax("predict", "-c", tmp_path / "m.npz", SAMPLES / "digits-7.png", "--jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["class"] == "seven"


def test_partial_fit_trains_epoch_by_epoch_from_the_first_calls_classes(digits):
    X, y = digits
    clf = small()
    with pytest.raises(ValueError, match="first call of partial_fit needs every class"):
        clf.partial_fit(X, y)
    losses = []
    for _ in range(4):
        clf.partial_fit(X[:900], y[:900], classes=np.arange(10))
        losses.append(-np.log(clf.predict_proba(X[:900])[np.arange(900), y[:900]]).mean())
    assert clf.n_iter_ == 4 and losses == sorted(losses, reverse=True)    # each epoch lowers the loss
    assert clf.score(X[900:], y[900:]) > 0.85
    with pytest.raises(ValueError, match="label 11 is not among classes"):
        clf.partial_fit(X[:3], [1, 2, 11])


def test_bad_parameters_are_named_by_their_config_key(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"SoftmaxClassifier: train.optimizer.lr: expected a value > 0, got -1.0"):
        small(lr=-1).fit(X, y)
    with pytest.raises(ValueError, match="model.activation: expected one of relu"):
        small(activation="swish").fit(X, y)


def test_train_takes_a_dict_and_a_callback_can_read_metrics_and_stop(tmp_path):
    import softmax_cli
    from softmax_cli import Callback
    from softmax_cli.checkpoint import load_checkpoint

    class StopAtEpoch2(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, state, metrics):
            self.seen.append(metrics)
            if metrics["epoch"] == 2:
                self.request_stop("enough")

    import yaml

    config = yaml.safe_load((CONFIGS / "digits.yaml").read_text())
    config["output"] = {"dir": str(tmp_path / "runs")}
    stop = StopAtEpoch2()
    result = softmax_cli.train(config, ["model.hidden=[16]", "train.augment=null"], callbacks=[stop])
    assert result.outcome == "stopped" and result.stop_reason == "enough" and result.epochs_run == 2
    assert [m["epoch"] for m in stop.seen] == [1, 2] and stop.seen == result.history
    assert result.run_dir == tmp_path / "runs" / "digits" and 0 < result.test_acc <= 1
    assert load_checkpoint(result.run_dir / "best.npz").meta["metrics"]["test_acc"] == result.test_acc
    # a stopped run is not finished: it can be continued to its 150 epochs
    assert load_checkpoint(result.run_dir / "last.npz").meta["train_state"]["epoch"] == 2
    described = run_softmax("inspect", result.run_dir / "last.npz", "--json", cwd=tmp_path)
    assert json.loads(described.stdout)["training_state"]["finished"] is False


def test_load_gives_probabilities_of_rows_images_and_files(digits, tmp_path):
    import softmax_cli

    X, y = digits
    result = softmax_cli.train(CONFIGS / "digits.yaml", ["train.epochs=3", "model.hidden=[16]",
                                                         f"output.dir={tmp_path}"])
    model = softmax_cli.load(result.run_dir / "best.npz")
    rows = model.predict_proba(X[:5])
    np.testing.assert_array_equal(rows, model.checkpoint.predict_proba(X[:5]))
    np.testing.assert_array_equal(model.predict_proba(X[:5].reshape(5, 8, 8)), rows)     # images
    np.testing.assert_array_equal(model.predict_proba(X[0].reshape(8, 8)), model.predict_proba(X[:1]))  # one
    proc = run_softmax("predict", "-c", result.run_dir / "best.npz", SAMPLES / "digits-7.png", "--jsonl",
                       "--top-k", "10", cwd=tmp_path)
    by_cli = {p["class"]: p["probability"] for p in json.loads(proc.stdout)["top_k"]}
    from_file = model.predict_proba(SAMPLES / "digits-7.png")[0]
    assert from_file == pytest.approx([by_cli[c] for c in model.classes], rel=1e-6)
    with pytest.raises(ValueError, match=r"expected rows \(n, 64\), images \(n, 8, 8\)"):
        model.predict_proba(np.zeros((2, 5)))
    # a run's checkpoint as an estimator: its config's parameters, its class names
    clf = SoftmaxClassifier.load(result.run_dir / "best.npz")
    assert clf.hidden == (16,) and clf.epochs == 3 and list(clf.classes_) == model.classes
    np.testing.assert_array_equal(clf.predict_proba(X[:5]), rows)
