"""The CLI end to end, through the installed ``softmax`` entry point, on real data."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, SAMPLES, assert_usage_error, assert_user_error, run_softmax


def test_help_and_version(tmp_path):
    proc = run_softmax("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("train", "eval", "predict", "inspect", "gradcheck"):
        assert command in proc.stdout
    proc = run_softmax("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("softmax ")


def test_digits_training_reaches_098_and_writes_the_run_directory(digits_run):
    assert digits_run["test_acc"] >= 0.98
    run_dir = digits_run["cwd"] / "runs" / "digits"
    assert digits_run["run_dir"] == "runs/digits"
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "metrics.csv", "best.npz", "last.npz",
                                                   "curves.png"}
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, digits_run["epochs_run"] + 1))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["name"] == "digits" and saved["model"]["hidden"] == [512]
    assert saved["train"]["monitor"] == "val_acc"   # the best epoch: highest val_acc, then lowest val_loss
    best = max(rows, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))
    assert int(best["epoch"]) == digits_run["best_epoch"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_eval_reproduces_the_accuracy_printed_by_training(digits_run):
    proc = run_softmax("eval", digits_run["best_checkpoint"], "--json", cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["accuracy"] == pytest.approx(digits_run["test_acc"], abs=1e-12)
    assert result["loss"] == pytest.approx(digits_run["test_loss"], rel=1e-5)
    cm = np.array(result["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == result["n"] == 360
    assert np.trace(cm) / cm.sum() == pytest.approx(result["accuracy"])
    assert [c["class"] for c in result["per_class"]] == [str(i) for i in range(10)]
    assert sum(c["support"] for c in result["per_class"]) == 360

    val = json.loads(run_softmax("eval", digits_run["best_checkpoint"], "--split", "val", "--json",
                                 cwd=digits_run["cwd"]).stdout)
    assert val["accuracy"] == pytest.approx(digits_run["val_acc"], abs=1e-12)

    # the reject report: answering only at probability >= t, for the default range of t
    rows = result["reject_report"]
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
    assert rows[0]["answered"] == 360 and rows[0]["coverage"] == 1.0
    assert rows[0]["accuracy"] == pytest.approx(result["accuracy"], abs=1e-12)
    answered = [r["answered"] for r in rows]
    assert answered == sorted(answered, reverse=True) and answered[-1] < 360
    assert all(r["coverage"] == pytest.approx(r["answered"] / 360) for r in rows)
    # a confident answer is right more often (the point of the option)
    assert rows[4]["accuracy"] > rows[0]["accuracy"]


def test_eval_text_report(digits_run):
    proc = run_softmax("eval", digits_run["best_checkpoint"], cwd=digits_run["cwd"])
    assert proc.returncode == 0
    assert f"accuracy    {digits_run['test_acc']:.4f}" in proc.stdout
    assert "confusion matrix" in proc.stdout and "precision" in proc.stdout and "recall" in proc.stdout
    report = proc.stdout.split("answering only above a probability threshold")[1].splitlines()
    assert report[1].split() == ["threshold", "coverage", "accuracy", "answered"]
    assert report[2].split() == ["0", "1.0000", f"{digits_run['test_acc']:.4f}", "360"]
    assert [line.split()[0] for line in report[2:10]] == ["0", "0.5", "0.7", "0.8", "0.9", "0.95", "0.99", "0.999"]


def test_a_second_run_never_overwrites_the_first(tmp_path):
    args = ("train", CONFIGS / "digits.yaml", "--set", "train.epochs=1", "--quiet", "--json")
    first = json.loads(run_softmax(*args, cwd=tmp_path).stdout)
    before = (tmp_path / first["run_dir"] / "best.npz").read_bytes()
    second = json.loads(run_softmax(*args, cwd=tmp_path).stdout)
    assert (first["run_dir"], second["run_dir"]) == ("runs/digits", "runs/digits-2")
    assert (tmp_path / first["run_dir"] / "best.npz").read_bytes() == before


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    args = ("train", CONFIGS / "digits.yaml", "--set", "train.epochs=3", "--quiet", "--json")
    runs = [json.loads(run_softmax(*args, cwd=tmp_path).stdout)["run_dir"] for _ in range(2)]

    def metrics(run):
        with open(tmp_path / run / "metrics.csv") as f:
            return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]

    assert metrics(runs[0]) == metrics(runs[1])
    other = json.loads(run_softmax(*args, "--set", "seed=1", cwd=tmp_path).stdout)["run_dir"]
    assert metrics(other) != metrics(runs[0])


def test_set_overrides_reach_the_model(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "model.hidden=[32,16]", "--set",
                       "model.activation=tanh", "--set", "train.epochs=2", "--set", "name=small",
                       "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_softmax("eval", "runs/small/last.npz", "--json", cwd=tmp_path)
    assert proc.returncode == 0
    import softmax_cli.checkpoint as ck

    model = ck.load_checkpoint(tmp_path / "runs/small/last.npz").model
    assert model.sizes == [64, 32, 16, 10] and model.activation == "tanh"


def test_progress_lines_go_to_stderr_and_results_to_stdout(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0
    assert "epoch   1/2" in proc.stderr
    assert not any(line.startswith("epoch") for line in proc.stdout.splitlines())
    assert "test accuracy" in proc.stdout and "test accuracy" not in proc.stderr
    quiet = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.epochs=2", "-q", cwd=tmp_path)
    assert quiet.stderr == ""


def test_predict_sample_pngs_with_a_checkpoint_file(digits_run):
    files = sorted(SAMPLES.glob("digits-*.png"))
    proc = run_softmax("predict", *files, "-c", "runs/digits/best.npz", "--json", cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                                   # a checkpoint given: nothing to say
    preds = json.loads(proc.stdout)                            # one document: an array
    assert [p["path"] for p in preds] == [str(f) for f in files]
    assert {p["checkpoint"] for p in preds} == {"runs/digits/best.npz"} and {p["error"] for p in preds} == {None}
    correct = sum(p["class"] == f.stem.split("-")[1] for p, f in zip(preds, files))
    assert correct >= 8, preds
    # the probabilities are the model's on the image preprocessed as the training data was
    # (a predict that skipped or changed the preprocessing still gets most classes right)
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.data.images import image_to_input

    ckpt = load_checkpoint(digits_run["best_checkpoint"])
    rows = np.stack([image_to_input(f, ckpt.image_shape, ckpt.preprocessor.pixel_max, ckpt.meta["image_style"])
                     for f in files])
    proba = ckpt.predict_proba(rows)                           # calibrated: softmax(logits / T)
    assert ckpt.temperature != 1.0
    for p, expected in zip(preds, proba):
        assert p["class"] == ckpt.classes[expected.argmax()]
        assert p["probability"] == pytest.approx(float(expected.max()), rel=1e-6)


def test_predict_without_checkpoint_uses_the_shipped_model_never_a_run(digits_run, tmp_path):
    # a newer training run lies in runs/ (the 0-1 model of issue 16 answered "0" for a 3 this way)
    (tmp_path / "runs" / "digits").mkdir(parents=True)
    shutil.copy(digits_run["best_checkpoint"], tmp_path / "runs" / "digits" / "best.npz")
    seven = SAMPLES / "mnist-7.png"
    proc = run_softmax("predict", seven, "--jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("using the shipped model mnist (") and "runs" not in proc.stderr
    (pred,) = map(json.loads, proc.stdout.splitlines())
    assert pred["class"] == "7" and pred["checkpoint"] == "mnist"
    named = run_softmax("predict", seven, "-c", "mnist", "--jsonl", cwd=tmp_path)
    assert named.returncode == 0 and named.stderr == ""        # asked for by name: nothing to say
    assert json.loads(named.stdout) == pred                    # the same model, the same answer
    table = run_softmax("predict", seven, cwd=tmp_path).stdout.splitlines()
    assert table[0] == "checkpoint  mnist" and table[1].split() == ["path", "class", "probability"]


def test_predict_top_k_text(digits_run):
    proc = run_softmax("predict", SAMPLES / "digits-0.png", SAMPLES / "digits-1.png", "--top-k", "3", "-c",
                       digits_run["best_checkpoint"], cwd=digits_run["cwd"])
    assert proc.returncode == 0
    named, head, *rows = proc.stdout.splitlines()
    assert named == f"checkpoint  {digits_run['best_checkpoint']}"
    assert head.split() == ["path", "class", "probability", "top", "3"]
    assert len(rows) == 2 and rows[0].startswith(str(SAMPLES / "digits-0.png"))
    for row in rows:
        path, label, probability, top = row.split(maxsplit=3)
        assert top.count("(") == 3
        probs = [float(part.split("(")[1].rstrip(")")) for part in top.split("  ")]
        assert probs == sorted(probs, reverse=True) and probs[0] == float(probability)
        assert top.startswith(f"{label} (")
    # the columns line up: every class starts where the header's does
    assert {row.index(" " + row.split()[1] + " ") + 1 for row in rows} == {head.index("class")}


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def test_predict_takes_files_folders_and_globs(digits_run, tmp_path):
    three, seven = SAMPLES / "digits-3.png", SAMPLES / "digits-7.png"
    _copy(three, tmp_path / "scans" / "a" / "three")          # no extension: told by content
    _copy(seven, tmp_path / "scans" / "b" / "c" / "seven.png")
    _copy(seven, tmp_path / "scans" / ".hidden" / "seven.png")  # hidden: not searched
    _copy(seven, tmp_path / "scans" / ".seven.png")
    (tmp_path / "scans" / "notes.txt").write_text("not an image\n")
    _copy(three, tmp_path / "odd[1].png")                     # exists: taken literally, not as a pattern
    _copy(seven, tmp_path / "odd1.png")                       # what "odd[1].png" would match as a glob
    (tmp_path / "empty").mkdir()
    proc = run_softmax("predict", "scans", "scans/**/seven*", "odd[1].png", "missing.png", "none-*.png",
                       "empty", "-c", digits_run["best_checkpoint"], "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [                      # one line each, in the order given
        "softmax: error: scans/notes.txt: not an image file Pillow can read",
        "softmax: error: missing.png: file not found",
        "softmax: error: none-*.png: no file matches this pattern",
        "softmax: error: empty: folder holds no files",
    ]
    preds = json.loads(proc.stdout)                           # an object per input, in order, errors too
    assert [(p["path"], p["class"], p["error"]) for p in preds] == [
        ("scans/notes.txt", None, "not an image file Pillow can read"), ("scans/a/three", "3", None),
        ("scans/b/c/seven.png", "7", None), ("scans/b/c/seven.png", "7", None),
        ("odd[1].png", "3", None), ("missing.png", None, "file not found"),
        ("none-*.png", None, "no file matches this pattern"), ("empty", None, "folder holds no files")]
    assert {p["checkpoint"] for p in preds} == {digits_run["best_checkpoint"]}
    assert all(p["probability"] is None and p["top_k"] == [] for p in preds if p["error"])


def test_predict_writes_csv_and_never_overwrites(digits_run, tmp_path):
    files = sorted(SAMPLES.glob("digits-*.png"))
    (tmp_path / "preds.csv").write_text("mine\n")
    args = ("predict", *files, "-c", digits_run["best_checkpoint"], "--top-k", "2")
    proc = run_softmax(*args, "--output", "preds.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""                                   # the CSV replaces the table
    assert proc.stderr.strip() == "wrote 10 predictions to preds-2.csv (preds.csv exists and was left as it was)"
    assert (tmp_path / "preds.csv").read_text() == "mine\n"
    proc = run_softmax(*args, "-o", "preds.csv", "--json", cwd=tmp_path)
    assert "to preds-3.csv" in proc.stderr
    as_json = json.loads(proc.stdout)
    for name in ("preds-2.csv", "preds-3.csv"):
        with open(tmp_path / name, newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["path", "class", "probability", "top1_class", "top1_probability",
                                 "top2_class", "top2_probability", "checkpoint", "error"]
        assert [r["path"] for r in rows] == [str(f) for f in files]
        assert {r["checkpoint"] for r in rows} == {digits_run["best_checkpoint"]}
        assert {r["error"] for r in rows} == {""}
        for row, obj in zip(rows, as_json, strict=True):
            assert row["class"] == obj["class"] == row["top1_class"]
            assert float(row["probability"]) == pytest.approx(obj["probability"], rel=1e-6)
            assert row["top2_class"] == obj["top_k"][1]["class"]
            assert float(row["top2_probability"]) == pytest.approx(obj["top_k"][1]["probability"], rel=1e-6)


def test_predict_csv_has_a_row_per_input_in_order_with_the_errors(digits_run, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    three, seven = SAMPLES / "digits-3.png", SAMPLES / "digits-7.png"
    proc = run_softmax("predict", three, "notes.txt", "missing.png", seven, "-c", digits_run["best_checkpoint"],
                       "-k", "2", "-o", "p.csv", cwd=tmp_path)
    assert proc.returncode == 1                                # something could not be read
    assert proc.stderr.splitlines() == ["softmax: error: notes.txt: not an image file Pillow can read",
                                        "softmax: error: missing.png: file not found",
                                        "wrote 2 predictions and 2 error rows to p.csv"]
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["class"], r["error"]) for r in rows] == [
        (str(three), "3", ""), ("notes.txt", "", "not an image file Pillow can read"),
        ("missing.png", "", "file not found"), (str(seven), "7", "")]
    assert [r["probability"] == "" for r in rows] == [False, True, True, False]
    assert all(r["top1_class"] == r["top2_probability"] == "" for r in rows[1:3])
    assert {r["checkpoint"] for r in rows} == {digits_run["best_checkpoint"]}


def test_predict_reject_threshold_answers_unknown_below_it(digits_run, tmp_path):
    files = sorted(SAMPLES.glob("*.png"))
    base = ("predict", *files, "-c", digits_run["best_checkpoint"], "--json")
    plain = json.loads(run_softmax(*base, cwd=tmp_path).stdout)
    p = sorted(x["probability"] for x in plain)[len(plain) // 2]           # the median: half answered
    proc = run_softmax(*base, "--reject-threshold", repr(p), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    gated = json.loads(proc.stdout)
    for before, after in zip(plain, gated, strict=True):
        expected = before["class"] if before["probability"] >= p else "unknown"
        assert after["class"] == expected and after["probability"] == before["probability"]
        assert after["top_k"] == before["top_k"]                       # the best guess stays visible
    assert 0 < sum(x["class"] == "unknown" for x in gated) < len(gated)
    table = run_softmax(*base[:-1], "--reject-threshold", "1", cwd=tmp_path).stdout.splitlines()[2:]
    assert {row.split()[1] for row in table if float(row.split()[2]) < 1} == {"unknown"}


# every activation and every depth through the real command (test_math.py checks each
# pair of them in-process); the shipped digits config adds dropout masks and label smoothing
@pytest.mark.parametrize("activation,hidden", [("relu", "[32,16]"), ("tanh", "[32]"), ("sigmoid", "[]"),
                                               ("leaky_relu", "[32,16]")])
def test_gradcheck_passes_for_every_activation_and_depth(tmp_path, activation, hidden):
    proc = run_softmax("gradcheck", CONFIGS / "digits.yaml", "--set", f"model.activation={activation}",
                       "--set", f"model.hidden={hidden}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n_arrays = 2 * (len(yaml.safe_load(hidden)) + 1)
    lines = [l for l in proc.stdout.splitlines() if l[:1] in "Wb" and l[1:2].isdigit()]
    assert len(lines) == n_arrays
    assert all(float(l.split()[-1]) < 1e-6 for l in lines)
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS")


def test_eval_val_split_reproduces_the_best_epoch_row(digits_run):
    with open(digits_run["cwd"] / "runs/digits/metrics.csv") as f:
        row = list(csv.DictReader(f))[digits_run["best_epoch"] - 1]
    val = json.loads(run_softmax("eval", digits_run["best_checkpoint"], "--split", "val", "--json",
                                 cwd=digits_run["cwd"]).stdout)
    # best.npz is that epoch; the curves show the loss before temperature scaling
    assert val["uncalibrated_loss"] == pytest.approx(float(row["val_loss"]), rel=1e-6)
    assert val["temperature"] != 1.0 and val["loss"] < val["uncalibrated_loss"]  # T fitted on val lowers its NLL
    assert val["accuracy"] == pytest.approx(float(row["val_acc"]), abs=1e-12)


def test_preprocessing_is_fitted_on_the_training_split(digits_run):
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.config import load_config
    from softmax_cli.experiment import prepare_data

    _, splits = prepare_data(load_config(CONFIGS / "digits.yaml"))
    pre = load_checkpoint(digits_run["best_checkpoint"]).preprocessor
    assert pre.offset[0] == pytest.approx(splits.X_train.mean(), rel=1e-6)
    assert pre.scale[0] == pytest.approx(splits.X_train.std(), rel=1e-6)
    everything = np.concatenate([splits.X_train, splits.X_val, splits.X_test])
    assert pre.offset[0] != pytest.approx(everything.mean(), rel=1e-6)


def test_eval_on_other_data_maps_class_names(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, [3, 5])
    rows = np.column_stack([digits.target[keep], digits.data[keep]]).astype(int)
    np.savetxt(tmp_path / "d35.csv", rows, fmt="%d", delimiter=",")
    (tmp_path / "d35.yaml").write_text("data: {source: csv, train: d35.csv, label_column: first, pixel_max: 16}\n")
    result = json.loads(run_softmax("eval", digits_run["best_checkpoint"], "--data", "d35.yaml", "--json",
                                    cwd=tmp_path).stdout)
    assert result["accuracy"] > 0.9                      # labels 3 and 5, not 0 and 1
    cm = np.array(result["confusion_matrix"])
    assert cm[[3, 5]].sum() == result["n"] and cm[[0, 1]].sum() == 0


def test_early_stopping_waits_patience_epochs(tmp_path):
    # min_delta 10 nats: no epoch after the first counts as better, so training stops at 1 + patience
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.early_stopping={patience: 2, min_delta: 10}",
                       "--quiet", "--json", cwd=tmp_path)
    summary = json.loads(proc.stdout)
    assert (summary["best_epoch"], summary["epochs_run"], summary["stopped_early"]) == (1, 3, True)
    # without the weight average, whose validation loss keeps falling slowly for many epochs
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.early_stopping.patience=2",
                       "--set", "train.epochs=200", "--set", "train.monitor=val_loss", "--set", "train.ema=null",
                       "--quiet", "--json", cwd=tmp_path)
    summary = json.loads(proc.stdout)
    assert summary["stopped_early"] and summary["epochs_run"] == summary["best_epoch"] + 2
    with open(tmp_path / summary["run_dir"] / "metrics.csv") as f:
        losses = [float(r["val_loss"]) for r in csv.DictReader(f)]
    assert min(losses) == losses[summary["best_epoch"] - 1] < min(losses[-2:])


@pytest.mark.parametrize("args, command, message", [
    (["predict", "--top-k", "0", "x.png"], "predict", "Invalid value for '--top-k' / '-k': 0 is not in the range x>=1."),
    (["predict", "--bogus", "x.png"], "predict", "No such option: --bogus"),
    (["eval"], "eval", "Missing argument 'checkpoint'."),
    (["eval", "m.npz", "--reject-threshold", "half"], "eval", "'half' is not a valid float."),
    (["frobnicate"], "", "No such command 'frobnicate'."),
])
def test_bad_usage_shows_the_usage_line_and_exits_2(tmp_path, args, command, message):
    assert_usage_error(run_softmax(*args, cwd=tmp_path), command, message)
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_run_stops_with_a_clear_message(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.optimizer={name: sgd, lr: 1.0e+30}",
                       "--set", "train.epochs=3", "--quiet", cwd=tmp_path)
    assert_user_error(proc, "epoch 1: the train loss became", "try a lower train.optimizer.lr",
                      "no checkpoint was written to runs/digits", code=1)   # and no NumPy warnings
    assert not (tmp_path / "runs/digits/best.npz").exists()   # no checkpoint of garbage weights


@pytest.mark.parametrize("width", ["100000000000", "4611686018427387904"])   # 2^62: beyond NumPy's sizes
def test_a_network_too_large_for_memory_is_refused(tmp_path, width):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", f"model.hidden=[{width}]", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("softmax: error: out of memory")
    assert not (tmp_path / "runs").exists()


def test_predict_reads_16_bit_images_like_8_bit_ones(digits_run, tmp_path):
    from PIL import Image

    gray8 = np.asarray(Image.open(SAMPLES / "digits-3.png").convert("L"), dtype=np.uint16)
    Image.fromarray(gray8 * 200 + 5000).save(tmp_path / "three16.png")     # 16-bit, grey paper
    assert Image.open(tmp_path / "three16.png").mode.startswith("I")
    outputs = [json.loads(run_softmax("predict", path, "-c", digits_run["best_checkpoint"], "--jsonl",
                                      cwd=tmp_path).stdout) for path in (SAMPLES / "digits-3.png", tmp_path / "three16.png")]
    assert outputs[0]["class"] == outputs[1]["class"] == "3"
    assert outputs[1]["probability"] == pytest.approx(outputs[0]["probability"], abs=1e-3)
