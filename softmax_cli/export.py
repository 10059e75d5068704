"""A checkpoint as an ONNX graph, and its check against the checkpoint with onnxruntime.

The graph is built with the ``onnx`` package's helper API (``onnx.helper.make_node`` and
friends, https://onnx.ai/onnx/intro/python.html) and computes what
:meth:`~softmax_cli.checkpoint.Checkpoint.logits` and
:meth:`~softmax_cli.checkpoint.Checkpoint.predict_proba` compute, operator for operator::

    pixels  float32 (N, H*W), raw pixels 0..pixel_max (the training data's units)
    x      = Cast(pixels)                          only for a float64 model
    h_0    = (x - input_offset) / input_scale      the checkpoint's preprocessing (Sub, Div)
    h_l    = f(h_{l-1} W_l + b_l)                  hidden layers (MatMul, Add, then f)
    logits = h_{L-1} W_L + b_L                     (N, K), the model's dtype
    probabilities = Softmax(logits / T, axis=-1)   T: the calibration temperature (no Div at 1)

with ``f`` ONNX's ``Relu``, ``Tanh`` or ``Sigmoid``, or leaky ReLU as training computes it,
``Max(z, Mul(z, 0.01))`` (ONNX's ``LeakyRelu`` takes alpha as a float32 attribute, which in a
float64 model is 0.01 only to a relative 2e-10) (:data:`ONNX_ACTIVATIONS`). The model's metadata properties hold the class names
(JSON list), the image shape (JSON ``[height, width]``), the image style, ``pixel_max``, the
temperature and the package version, so that a user of the file needs nothing else.

onnx and onnxruntime are the ``export`` extra (``pip install 'softmax-cli[export]'``); they are
imported inside the functions here, and this module only by ``softmax export``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .checkpoint import Checkpoint
from .errors import UserError
from .nn.functional import ACTIVATIONS, LEAKY_RELU_SLOPE

# each hidden-layer activation of softmax_cli.nn as its ONNX operator, applied to one input;
# None: leaky ReLU, written as max(z, 0.01 z) (see the module docstring). A test checks that
# every key of ACTIVATIONS has an entry (an activation added there without one makes its
# checkpoints unexportable, with a one-line error, until it gets one here).
ONNX_ACTIVATIONS: dict[str, str | None] = {"relu": "Relu", "leaky_relu": None, "tanh": "Tanh",
                                           "sigmoid": "Sigmoid"}
# Softmax takes an axis (and the last axis by default) from opset 13; every other operator
# used here has had its present meaning since opset 13 or earlier
MIN_OPSET, DEFAULT_OPSET = 13, 17
# protobuf refuses messages of 2 GiB and more: one .onnx file holds less than that
MAX_PROTO_BYTES = 2**31 - 1
# the largest difference of probabilities from the checkpoint's that --verify accepts (issue 21)
VERIFY_TOLERANCE = 1e-5
INPUT, LOGITS, PROBABILITIES = "pixels", "logits", "probabilities"


def max_opset() -> int:
    """The newest ONNX opset the installed ``onnx`` package knows."""
    import onnx

    return onnx.defs.onnx_opset_version()


def to_onnx(ckpt: Checkpoint, opset: int = DEFAULT_OPSET):
    """Build the ONNX graph of a checkpoint (see the module docstring) and check it.

    Args:
        ckpt: a loaded checkpoint, float32 or float64, with any number of hidden layers
            (none: softmax regression).
        opset: the ONNX opset to target, :data:`MIN_OPSET` to :func:`max_opset`.

    Returns:
        ``onnx.ModelProto`` whose IR version is the lowest that the opset needs (so that
        older runtimes load it), passing ``onnx.checker.check_model(..., full_check=True)``.

    Raises:
        UserError: naming the checkpoint: an opset out of range, a hidden-layer activation
            without an ONNX operator, or parameters too large for one ONNX file (2 GiB).
    """
    import onnx
    from onnx import helper, numpy_helper

    if not MIN_OPSET <= opset <= max_opset():
        raise UserError(f"--opset: expected {MIN_OPSET} to {max_opset()} (onnx {onnx.__version__}), got {opset}")
    model = ckpt.model
    if model.activation not in ONNX_ACTIVATIONS:
        raise UserError(f"{ckpt.path}: cannot export: activation {model.activation!r} has no ONNX operator "
                        f"(exportable: {', '.join(ONNX_ACTIVATIONS)})")
    size = sum(p.nbytes for p in model.params) + ckpt.preprocessor.offset.nbytes * 2
    if size >= MAX_PROTO_BYTES:
        raise UserError(f"{ckpt.path}: cannot export: its parameters take {size:,} bytes, and one ONNX file "
                        f"holds less than 2 GiB")
    dtype = model.dtype
    onnx_dtype = helper.np_dtype_to_tensor_dtype(dtype)
    init = [numpy_helper.from_array(ckpt.preprocessor.offset.astype(dtype), "input_offset"),
            numpy_helper.from_array(ckpt.preprocessor.scale.astype(dtype), "input_scale")]
    nodes, x = [], INPUT
    if dtype != np.float32:
        nodes.append(helper.make_node("Cast", [INPUT], ["pixels_cast"], to=onnx_dtype))
        x = "pixels_cast"
    nodes += [helper.make_node("Sub", [x, "input_offset"], ["centred"]),
              helper.make_node("Div", ["centred", "input_scale"], ["h0"])]
    h, last = "h0", model.n_layers - 1
    op = ONNX_ACTIVATIONS[model.activation]
    if op is None:
        init.append(numpy_helper.from_array(np.array(LEAKY_RELU_SLOPE, dtype=dtype), "leaky_relu_slope"))
    for l, (W, b) in enumerate(zip(model.weights, model.biases)):
        init += [numpy_helper.from_array(W, f"W{l}"), numpy_helper.from_array(b, f"b{l}")]
        z = LOGITS if l == last else f"z{l + 1}"
        nodes += [helper.make_node("MatMul", [h, f"W{l}"], [f"xw{l + 1}"]),
                  helper.make_node("Add", [f"xw{l + 1}", f"b{l}"], [z])]
        if l < last:
            h = f"h{l + 1}"
            nodes += ([helper.make_node(op, [z], [h])] if op is not None else
                      [helper.make_node("Mul", [z, "leaky_relu_slope"], [f"{z}_sloped"]),
                       helper.make_node("Max", [z, f"{z}_sloped"], [h])])
    T = ckpt.temperature
    scaled = LOGITS
    if T != 1.0:
        init.append(numpy_helper.from_array(np.array(T, dtype=dtype), "temperature"))
        nodes.append(helper.make_node("Div", [LOGITS, "temperature"], ["scaled_logits"]))
        scaled = "scaled_logits"
    nodes.append(helper.make_node("Softmax", [scaled], [PROBABILITIES], axis=-1))
    d, K = model.sizes[0], model.sizes[-1]
    graph = helper.make_graph(
        nodes, "softmax_mlp",
        inputs=[helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["N", d])],
        outputs=[helper.make_tensor_value_info(LOGITS, onnx_dtype, ["N", K]),
                 helper.make_tensor_value_info(PROBABILITIES, onnx_dtype, ["N", K])],
        initializer=init)
    graph.input[0].doc_string = (f"raw pixels, one image per row in row-major order, 0 (background) to "
                                 f"{ckpt.preprocessor.pixel_max:g} (full ink), as the training data had them")
    graph.output[0].doc_string = "logits, before calibration"
    graph.output[1].doc_string = f"class probabilities, softmax(logits / {T:g}); rows sum to 1"
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="softmax",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=f"MLP {'-'.join(map(str, model.sizes))} ({model.activation}, "
                                         f"{dtype.name}) with softmax output, exported by softmax {__version__}")
    helper.set_model_props(proto, metadata(ckpt))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def metadata(ckpt: Checkpoint) -> dict[str, str]:
    """The model's metadata properties (strings; JSON for the lists): ``classes``,
    ``image_shape`` ``[height, width]``, ``image_style``, ``pixel_max``, ``temperature``,
    ``package_version`` (of softmax), ``activation``, ``sizes``."""
    return {"classes": json.dumps(ckpt.classes), "image_shape": json.dumps(list(ckpt.image_shape)),
            "image_style": ckpt.meta["image_style"], "pixel_max": f"{ckpt.preprocessor.pixel_max:g}",
            "temperature": repr(ckpt.temperature), "package_version": __version__,
            "activation": ckpt.model.activation, "sizes": json.dumps(ckpt.model.sizes)}


@dataclass
class Verification:
    """onnxruntime's answers against the checkpoint's on the same rows.

    Attributes:
        n: rows compared.
        max_abs_diff: the largest ``|p_onnx - p_checkpoint|`` over all rows and classes.
        classes_differ: rows whose most probable class differs.
        runtime: ``"onnxruntime <version>"``.
    """

    n: int
    max_abs_diff: float
    classes_differ: int
    runtime: str

    @property
    def ok(self) -> bool:
        """Within :data:`VERIFY_TOLERANCE`, and the same class for every row."""
        return self.max_abs_diff <= VERIFY_TOLERANCE and self.classes_differ == 0


def run_onnx(model_bytes: bytes, X: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Run a serialized exported model with onnxruntime (CPU) on raw rows ``X`` (n, d).

    Returns:
        ``(logits, probabilities)``, each (n, K) in the model's dtype.

    Raises:
        UserError: onnxruntime cannot load the model (an opset newer than it runs).
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:   # onnxruntime raises its own (pybind) exception types
        raise UserError(f"onnxruntime {ort.__version__} cannot load the exported model: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    X = np.ascontiguousarray(X, dtype=np.float32)
    parts = [session.run([LOGITS, PROBABILITIES], {INPUT: X[lo:lo + batch_size]})
             for lo in range(0, len(X), batch_size)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def verify(ckpt: Checkpoint, model_bytes: bytes, X: np.ndarray) -> Verification:
    """Compare the exported model's probabilities on raw rows ``X`` (n, d) with
    :meth:`Checkpoint.predict_proba`'s, the probabilities ``softmax eval`` and ``predict`` give.

    Raises:
        UserError: as :func:`run_onnx`.
    """
    import onnxruntime as ort

    _, proba = run_onnx(model_bytes, X)
    expected = ckpt.predict_proba(X)
    diff = float(np.abs(proba.astype(np.float64) - expected).max()) if len(X) else 0.0
    differ = int((proba.argmax(axis=1) != expected.argmax(axis=1)).sum())
    return Verification(len(X), diff, differ, f"onnxruntime {ort.__version__}")


def test_rows(ckpt: Checkpoint) -> np.ndarray:
    """The raw rows (n, d) float32 of the checkpoint's own test split, read with its saved config
    (the split ``softmax eval`` scores, refused as eval refuses it when it is not the split the
    checkpoint recorded at training).

    Raises:
        UserError: the config or the data cannot be read (naming them), or the split changed.
    """
    from .config import config_from_dict
    from .experiment import check_split, prepare_data

    cfg = config_from_dict(ckpt.meta["config"], origin=f"{ckpt.path} (config)")
    _, splits = prepare_data(cfg)
    check_split(ckpt, splits, "test")
    if splits.X_test.shape[1] != ckpt.model.sizes[0]:
        raise UserError(f"{ckpt.path}: its data has {splits.X_test.shape[1]} features per image, the model "
                        f"expects {ckpt.model.sizes[0]}")
    return splits.X_test


def default_output(checkpoint: Path) -> Path:
    """Where ``softmax export`` writes when not told: the checkpoint's name with ``.onnx``,
    beside it; in the current directory for a checkpoint inside the installed package (a
    shipped model), where nothing may be written."""
    package = Path(__file__).resolve().parent
    if package in Path(checkpoint).resolve().parents:
        return Path(f"{Path(checkpoint).stem}.onnx")
    return Path(checkpoint).with_suffix(".onnx")


def summary(ckpt: Checkpoint, written: Path | None, n_bytes: int, opset: int,
            check: Verification | None) -> dict:
    """What ``softmax export --json`` prints: ``{"onnx" (the file written, None when
    verification failed), "bytes", "opset", "input": {"name", "shape", "dtype", "pixel_max"},
    "outputs": [names], "classes", "temperature", "verify": None or {"split", "n",
    "max_abs_diff", "tolerance", "classes_identical", "classes_differ", "runtime"}}``."""
    d, K = ckpt.model.sizes[0], ckpt.model.sizes[-1]
    return {"onnx": None if written is None else str(written), "bytes": n_bytes, "opset": opset,
            "input": {"name": INPUT, "shape": ["N", d], "dtype": "float32",
                      "pixel_max": ckpt.preprocessor.pixel_max},
            "outputs": {LOGITS: ["N", K], PROBABILITIES: ["N", K]}, "dtype": ckpt.model.dtype.name,
            "classes": ckpt.classes, "temperature": ckpt.temperature,
            "verify": None if check is None else {
                "split": "test", "n": check.n, "max_abs_diff": check.max_abs_diff, "tolerance": VERIFY_TOLERANCE,
                "classes_identical": check.classes_differ == 0, "classes_differ": check.classes_differ,
                "runtime": check.runtime}}


def format_summary(result: dict) -> str:
    """The text ``softmax export`` prints: one ``label  value`` line per fact."""
    inp, (n, d) = result["input"], result["input"]["shape"]
    K = result["outputs"][LOGITS][1]
    lines = [("onnx", f"{result['onnx'] or '(not written)'} (opset {result['opset']}, {result['bytes']:,} bytes)"),
             ("input", f"{inp['name']} float32 ({n}, {d}), raw pixels 0 to {inp['pixel_max']:g}"),
             ("outputs", f"{LOGITS}, {PROBABILITIES} {result['dtype']} ({n}, {K}); temperature "
                         f"{result['temperature']:g}")]
    check = result["verify"]
    if check is not None:
        same = "identical" if check["classes_identical"] else f"{check['classes_differ']} differ"
        lines += [("verified", f"{check['runtime']} on the test split, {check['n']:,} images"),
                  ("max difference", f"{check['max_abs_diff']:.3g} in probability (limit {check['tolerance']:g})"),
                  ("classes", f"{same} ({check['n'] - check['classes_differ']:,} of {check['n']:,} the same)")]
    return "\n".join(f"{label:<16}{value}" for label, value in lines)
