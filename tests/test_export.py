"""``softmax export``: the ONNX graph computes the checkpoint's logits and probabilities, for
every activation, both dtypes and any depth; the command verifies, never overwrites, and
refuses what it cannot export in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import SAMPLES, SOFTMAX, assert_user_error, run_softmax
from softmax_cli import __version__, export
from softmax_cli.checkpoint import load_checkpoint, save_checkpoint
from softmax_cli.data import Preprocessor
from softmax_cli.errors import UserError
from softmax_cli.nn import ACTIVATIONS, MLP


def make_checkpoint(path: Path, hidden: list[int], activation: str, dtype, temperature: float | None = None,
                    seed: int = 0):
    """A small checkpoint (3x4 images, pixel_max 255, three classes) with random weights and a
    per-pixel preprocessing, as a training run would save it."""
    rng = np.random.default_rng(seed)
    sizes = [12, *hidden, 3]
    model = MLP(sizes, activation, dtype=dtype, rng=rng)
    for p in model.params:                      # biases too, so that a dropped Add shows
        p += rng.normal(0, 0.5, p.shape).astype(dtype)
    pre = Preprocessor(rng.uniform(50, 150, 12).astype(np.float32), rng.uniform(40, 90, 12).astype(np.float32),
                       255.0, "per_feature")
    meta = {"classes": ["cat", "dog", "fish"], "image_shape": [3, 4], "image_style": "mnist", "config": {}}
    if temperature is not None:
        meta["calibration"] = {"temperature": temperature}
    save_checkpoint(path, model, pre, meta)
    return load_checkpoint(path)


def run_exported(proto, X):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probabilities"], {"pixels": X.astype(np.float32)})


@pytest.mark.parametrize("hidden", [[], [7], [9, 6, 5, 4]], ids=["no-hidden", "one-hidden", "four-hidden"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_graph_computes_the_checkpoints_logits_and_probabilities(tmp_path, activation, dtype, hidden):
    ckpt = make_checkpoint(tmp_path / "m.npz", hidden, activation, dtype, temperature=1.7)
    proto = export.to_onnx(ckpt)
    X = np.random.default_rng(1).uniform(0, 255, (50, 12)).astype(np.float32)
    logits, proba = run_exported(proto, X)
    assert logits.dtype == proba.dtype == dtype and proba.shape == (50, 3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(logits, ckpt.logits(X), rtol=tol, atol=tol)
    np.testing.assert_allclose(proba, ckpt.predict_proba(X), rtol=0, atol=tol)   # softmax(logits / 1.7)
    assert not np.allclose(proba, ckpt.model.predict_proba(ckpt.preprocessor.transform(X, dtype)), atol=1e-3)


def test_metadata_and_checker(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.npz", [5], "tanh", np.float32, temperature=2.0)
    proto = export.to_onnx(ckpt, opset=13)
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["cat", "dog", "fish"]
    assert json.loads(props["image_shape"]) == [3, 4]
    assert props["package_version"] == __version__ and proto.producer_version == __version__
    assert float(props["temperature"]) == 2.0 and float(props["pixel_max"]) == 255
    assert proto.opset_import[0].version == 13 and proto.ir_version == 7     # the lowest IR for opset 13
    assert [i.name for i in proto.graph.input] == ["pixels"]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 12)


def test_every_activation_has_an_onnx_operator():
    assert set(export.ONNX_ACTIVATIONS) == set(ACTIVATIONS)


def test_what_cannot_be_exported_is_a_user_error(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "m.npz", [4], "relu", np.float32)
    with pytest.raises(UserError, match="--opset: expected 13 to"):
        export.to_onnx(ckpt, opset=12)
    monkeypatch.setattr(export, "MAX_PROTO_BYTES", 300)
    with pytest.raises(UserError, match="m.npz: cannot export: its parameters take 364 bytes, and one ONNX file holds less than 2 GiB"):
        export.to_onnx(ckpt)
    monkeypatch.setattr(ckpt.model, "activation", "swish")
    with pytest.raises(UserError, match="activation 'swish' has no ONNX operator"):
        export.to_onnx(ckpt)


def test_a_shipped_models_default_output_is_the_current_directory(tmp_path):
    inside = Path(export.__file__).parent / "models" / "mnist.npz"
    assert export.default_output(inside) == Path("mnist.onnx")
    assert export.default_output(tmp_path / "runs" / "best.npz") == tmp_path / "runs" / "best.onnx"


# ---------------------------------------------------------------------------------- the command
def test_export_verifies_on_the_test_split_and_never_overwrites(digits_run, tmp_path):
    target = tmp_path / "digits.onnx"
    proc = run_softmax("export", digits_run["best_checkpoint"], "-o", target, "--verify", "--json",
                       cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    check = result["verify"]
    assert result["onnx"] == str(target) and check["n"] == 360        # digits: 20% of 1797 rows
    assert check["max_abs_diff"] <= 1e-5 and check["classes_identical"] and check["classes_differ"] == 0
    first = target.read_bytes()
    assert len(first) == result["bytes"]

    # the file's classes give the accuracy `softmax eval` prints for the same split
    from softmax_cli.config import config_from_dict
    from softmax_cli.experiment import prepare_data

    ckpt = load_checkpoint(digits_run["best_checkpoint"])
    _, splits = prepare_data(config_from_dict(ckpt.meta["config"]))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    proba = session.run(["probabilities"], {"pixels": splits.X_test})[0]
    evaluated = json.loads(run_softmax("eval", digits_run["best_checkpoint"], "--json", cwd=digits_run["cwd"]).stdout)
    assert (proba.argmax(1) == splits.y_test).mean() == pytest.approx(evaluated["accuracy"], abs=1e-12)

    again = run_softmax("export", digits_run["best_checkpoint"], "-o", target, cwd=digits_run["cwd"])
    assert again.returncode == 0, again.stderr
    assert target.read_bytes() == first
    assert (tmp_path / "digits-2.onnx").read_bytes() == first
    assert f"{target} exists and was left as it was; wrote {tmp_path / 'digits-2.onnx'}" in again.stderr
    assert again.stdout.startswith(f"onnx            {tmp_path / 'digits-2.onnx'} (opset 17, ")


def test_export_text_output_and_default_file(digits_run, tmp_path):
    ckpt = tmp_path / "best.npz"
    ckpt.write_bytes(Path(digits_run["best_checkpoint"]).read_bytes())
    proc = run_softmax("export", ckpt, "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"onnx            {tmp_path / 'best.onnx'} (opset 17, ")
    assert lines[1] == "input           pixels float32 (N, 64), raw pixels 0 to 16"
    assert lines[3].startswith("verified        onnxruntime ") and lines[3].endswith("on the test split, 360 images")
    assert lines[5] == "classes         identical (360 of 360 the same)"
    assert (tmp_path / "best.onnx").is_file() and proc.stderr == ""


@pytest.mark.parametrize("args, fragments", [
    (["{png}"], ["mnist-7.png: not a softmax checkpoint"]),
    (["{ckpt}", "--format", "tflite"], ["--format: expected onnx, got 'tflite'"]),
    (["{ckpt}", "--opset", "12"], ["--opset: expected 13 to"]),
    (["{ckpt}", "-o", "{tmp}/missing/m.onnx"], ["--output: the folder", "does not exist"]),
    (["{ckpt}", "-o", "{tmp}"], ["--output is a folder; give a file name such as"]),
])
def test_bad_export_arguments_are_one_line(digits_run, tmp_path, args, fragments):
    values = {"png": SAMPLES / "mnist-7.png", "ckpt": digits_run["best_checkpoint"], "tmp": tmp_path}
    proc = run_softmax("export", *[a.format(**values) for a in args], cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_verification_writes_nothing_and_exits_1(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from softmax_cli.cli import app

    make_checkpoint(tmp_path / "m.npz", [4], "relu", np.float32)
    monkeypatch.setattr(export, "test_rows", lambda ckpt: np.full((5, 12), 100, np.float32))
    real_run = export.run_onnx
    monkeypatch.setattr(export, "run_onnx", lambda data, X: [a + 1e-3 for a in real_run(data, X)])
    result = CliRunner().invoke(app, ["export", str(tmp_path / "m.npz"), "--verify", "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["verify"]["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert "does not match the checkpoint (largest difference of probabilities 0.001" in result.stderr
    assert "nothing written" in result.stderr and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_export_is_exit_130_and_one_line(mnist_run, tmp_path, sig):
    """Sent as soon as onnx's native extension is mapped: during its import, which a signal
    once crashed (exit -11, no message; the import now holds signals until it is done), or
    after, while --verify reads the MNIST test split."""
    target = tmp_path / "m.onnx"
    proc = subprocess.Popen([SOFTMAX, "export", mnist_run["best_checkpoint"], "--verify", "-o", str(target)],
                            cwd=mnist_run["cwd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "onnx_cpp2py_export" not in Path(f"/proc/{proc.pid}/maps").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == f"softmax: interrupted ({sig.name})\n" and out == ""
    assert not target.exists()


@pytest.mark.parametrize("command, extra", [("export", "export"), ("serve", "serve")])
def test_a_missing_extra_is_named_in_one_line(tmp_path, monkeypatch, command, extra):
    import importlib.util

    from typer.testing import CliRunner

    from softmax_cli.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "uvicorn") else
                        real(name, *a))
    result = CliRunner().invoke(app, [command, str(tmp_path / "m.npz")])
    assert result.exit_code == 2
    missing = "onnx" if command == "export" else "uvicorn"
    assert result.stderr == f"softmax: error: this command needs {missing}: pip install 'softmax-cli[{extra}]'\n"
