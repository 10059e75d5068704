"""Hostile and careless input, round two (issue 19): bounded memory, untrusted checkpoints,
every path kind, every signal, spreadsheet-safe CSV, strict YAML, valid output.

Each test drives the real ``softmax`` command where it can. The bad-input corpus
(``tests/bad_inputs/``, made by ``scripts/make_bad_inputs.py``) holds the one-line refusals;
these tests hold what a corpus case cannot say: memory under a cap, signals sent while a
command runs, what must *not* be printed, and the content of written files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import NOTE, SAMPLES, SOFTMAX, assert_user_error, run_softmax
from softmax_cli.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from softmax_cli.data.prepare import Preprocessor
from softmax_cli.errors import UserError
from softmax_cli.nn import MLP

# the units added for issue 19 are imported in their tests, so that the tests of the command
# line can run against the code before it (and fail there)

MiB = 2**20


def make_checkpoint(path: Path, classes: list[str], side: int = 28, config: dict | None = None,
                    hidden: tuple = (), scale: float = 1.0) -> Path:
    """A valid checkpoint for ``side`` x ``side`` images and ``classes``, its weights times ``scale``."""
    d = side * side
    model = MLP([d, *hidden, len(classes)], rng=np.random.default_rng(0))
    model.params[0][...] *= np.float32(scale)
    pre = Preprocessor(np.zeros(d, np.float32), np.full(d, 255.0, np.float32), 255.0, "global")
    meta = {"classes": classes, "image_shape": [side, side], "image_style": "mnist",
            "config": config or {"data": {"source": "digits"}}, "epoch": 1, "metrics": {}}
    save_checkpoint(path, model, pre, meta)
    return path


def digit_png(path: Path, size: int = 28, column: int = 12) -> Path:
    """A white image with a dark vertical bar (a "1"), as a PNG."""
    pixels = np.full((size, size), 255, np.uint8)
    pixels[size // 7: size - size // 7, column * size // 28: (column + 4) * size // 28] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def image_folder(root: Path, classes: list[str], per_class: int, size: int = 28) -> Path:
    """``root/<class>/<n>.png``: one PNG per class, hard-linked ``per_class`` times."""
    for k, name in enumerate(classes):
        first = digit_png(root / name / "0.png", size, column=4 + 6 * (k % 4))
        for i in range(1, per_class):
            os.link(first, root / name / f"{i}.png")
    return root


# =============================================================================== memory
def run_capped(args: list, cwd: Path, cap: int, timeout: float = 120) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``softmax ARGS`` with its address space capped at ``cap`` bytes (``RLIMIT_AS``);
    return the finished process and its peak resident memory in bytes."""
    wrapper = ("import json, resource, subprocess, sys\n"
               f"resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
               "print(json.dumps([p.returncode, p.stdout, p.stderr, peak]))\n")
    out = subprocess.run([sys.executable, "-c", wrapper, SOFTMAX, *map(str, args)], cwd=cwd,
                         capture_output=True, text=True, timeout=timeout)
    code, stdout, stderr, peak = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, code, stdout, stderr), peak


def npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def replace_member(good: Path, out: Path, name: str, write) -> Path:
    """``good`` with member ``name`` (``W0.npy``) written by ``write(zipfile, name)`` instead."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info, src.read(info))
        write(dst, name)
    return out


def inflating_member(shape: tuple):
    """A writer of a deflated ``.npy`` member of zeros of ``shape`` (float32), made a
    mebibyte at a time: the archive stays about a thousandth of the array."""
    def write(zf: zipfile.ZipFile, name: str) -> None:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(npy_header(shape))
            left, chunk = int(np.prod(shape)) * 4, bytes(MiB)
            while left > 0:
                f.write(chunk[:min(left, MiB)])
                left -= MiB
    return write


def test_a_checkpoint_declaring_a_954_gib_array_is_refused_from_its_header(tmp_path):
    good = make_checkpoint(tmp_path / "good.npz", ["a", "b"], side=2)
    shape = (500_000, 512_000)                             # 954 GiB of float32, in a 9 kB file
    bomb = replace_member(good, tmp_path / "bomb.npz", "W0.npy",
                          lambda zf, name: zf.writestr(name, npy_header(shape) + bytes(8000)))
    assert bomb.stat().st_size < 12_000
    proc, peak = run_capped(["inspect", "bomb.npz"], tmp_path, 300 * MiB)
    assert_user_error(proc, "bomb.npz", "not a softmax checkpoint", "W0", "954 GiB")
    assert peak < 300 * MiB


def test_a_checkpoint_inflating_to_1_gib_is_refused_before_it_is_inflated(tmp_path):
    good = make_checkpoint(tmp_path / "good.npz", ["a", "b"], side=2)
    bomb = replace_member(good, tmp_path / "bomb.npz", "W0.npy", inflating_member((16384, 16384)))
    assert bomb.stat().st_size < 2 * MiB
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("W0.npy").file_size > 2**30   # a gibibyte once inflated
    for command in (["inspect", "bomb.npz"], ["eval", "bomb.npz"], ["predict", "-c", "bomb.npz", "x.png"]):
        proc, peak = run_capped(command, tmp_path, 300 * MiB)
        assert_user_error(proc, "bomb.npz", "W0 shape (16384, 16384)", "do not match", "expected (4, 2)")
        assert peak < 300 * MiB, command


def test_a_50_mb_config_is_refused_before_it_is_parsed(tmp_path):
    (tmp_path / "big.yaml").write_text("model: {hidden: [" + "1, " * (25 * MiB) + "1]}\n")
    proc, peak = run_capped(["train", "big.yaml"], tmp_path, 300 * MiB)
    assert_user_error(proc, "big.yaml", "larger than 1 MiB", "too large for a config file")
    assert peak < 300 * MiB
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_at_the_limits_still_loads(tmp_path):
    # optimiser state and metadata of a real size are not mistaken for bombs
    model = MLP([4, 3, 2], rng=np.random.default_rng(0))
    pre = Preprocessor(np.zeros(4), np.ones(4), 255.0, "global")
    meta = {"classes": [f"c{i}" for i in range(2)], "image_shape": [2, 2], "image_style": "mnist",
            "config": {"data": {"source": "digits"}}, "notes": "x" * (3 * MiB)}
    state = {f"m{i}": np.zeros(p.size, p.dtype) for i, p in enumerate(model.params)}
    save_checkpoint(tmp_path / "c.npz", model, pre, meta, state)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert sorted(ckpt.optimizer_state) == ["m0", "m1", "m2", "m3"] and len(ckpt.meta["notes"]) == 3 * MiB


# =================================================================== untrusted checkpoints
SECRET = "root:$6$SECRETHASH$abcdefgh:19000:0:99999:7:::\ndaemon:*:SECRET2:0:99999:7:::\n"


@pytest.mark.parametrize("secret", [
    pytest.param(SECRET, id="cells"),
    pytest.param("root:$6$SECRETHASH$abcdefgh\n1\n", id="header"),   # a header row, listed as columns
])
def test_eval_never_prints_content_of_a_file_the_checkpoint_names(tmp_path, secret):
    (tmp_path / "shadow").write_text(secret)
    evil = make_checkpoint(tmp_path / "evil.npz", ["0", "1"], side=2,
                           config={"data": {"source": "csv", "train": str(tmp_path / "shadow")}})
    proc = run_softmax("eval", evil, cwd=tmp_path)
    assert_user_error(proc, "shadow", "<content not shown: the file was named by checkpoint", "evil.npz")
    assert "SECRET" not in proc.stderr + proc.stdout
    note = proc.stderr.splitlines()[0]           # announced before it was read
    assert note.startswith(NOTE) and "evil.npz" in note and f"{tmp_path / 'shadow'} (data.train)" in note
    # the same file named by the user's own config: its content is what helps them fix it
    (tmp_path / "mine.yaml").write_text(f"data: {{source: csv, train: {tmp_path / 'shadow'}}}\n")
    mine = run_softmax("eval", evil, "--data", "mine.yaml", cwd=tmp_path)
    assert_user_error(mine, "shadow", "SECRET")


def test_eval_refuses_a_system_folder_a_checkpoint_names(tmp_path):
    evil = make_checkpoint(tmp_path / "evil.npz", ["0", "1"], config={"data": {"source": "folder", "root": "/etc"}})
    started = time.monotonic()
    proc = run_softmax("eval", evil, cwd=tmp_path, timeout=60)
    assert_user_error(proc, "evil.npz", "/etc (data.root)", "inside the system folder /etc", "--data CONFIG")
    assert time.monotonic() - started < 30           # refused, not walked


def test_eval_announces_the_files_it_reads_for_a_checkpoint(tmp_path):
    image_folder(tmp_path / "digits", ["a", "b"], 10)
    ckpt = make_checkpoint(tmp_path / "model.npz", ["a", "b"],
                           config={"data": {"source": "folder", "root": str(tmp_path / "digits"), "test_fraction": 0.5,
                                            "val_fraction": 0.0}})
    proc = run_softmax("eval", ckpt, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    announced = [line for line in proc.stderr.splitlines() if "records no fingerprints" not in line]
    assert announced == [
        f"{NOTE}eval reads the folder data that {ckpt} names in its saved config: {tmp_path / 'digits'} "
        f"(data.root); their content is not shown in messages"]
    assert json.loads(proc.stdout)["n"] == 10


def test_quote_data_hides_content_only_inside_hiding_data():
    from softmax_cli.errors import hiding_data, quote_data

    assert quote_data("daemon:*:1") == "'daemon:*:1'"
    with hiding_data("the file was named by checkpoint x.npz"):
        assert quote_data("daemon:*:1") == "<content not shown: the file was named by checkpoint x.npz>"
        assert quote_data(7.5, bare=True) == "<content not shown: the file was named by checkpoint x.npz>"
    assert quote_data(7.5, bare=True) == "7.5"


# ========================================================================== path kinds
def test_a_socket_or_device_given_as_a_checkpoint_is_refused(tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.npz"))
    (tmp_path / "null.npz").symlink_to("/dev/null")
    try:
        for name in ("sock.npz", "null.npz"):
            assert_user_error(run_softmax("inspect", name, cwd=tmp_path, timeout=60), name, "not a regular file")
    finally:
        server.close()


def test_predict_refuses_fifos_but_classifies_the_other_images(tmp_path):
    ckpt = make_checkpoint(tmp_path / "model.npz", ["a", "b"])
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "scans").mkdir()
    os.mkfifo(tmp_path / "scans" / "in-folder.png")
    digit_png(tmp_path / "scans" / "ok.png")
    proc = run_softmax("predict", "-c", ckpt, SAMPLES / "digits-3.png", "pipe.png", "scans", "scan*/*.png",
                       cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "softmax: error: pipe.png: not a regular file, expected an image file",
        "softmax: error: scans/in-folder.png: not a regular file, expected an image file",
        "softmax: error: scans/in-folder.png: not a regular file, expected an image file"]
    assert [r.split()[0] for r in proc.stdout.splitlines()[2:]] == [str(SAMPLES / "digits-3.png"), "scans/ok.png",
                                                                    "scans/ok.png"]


def test_permissions_apply_in_these_tests_even_as_root(tmp_path):
    # the means the permission cases rely on (tests/conftest.py): without it they would prove nothing
    (tmp_path / "cfg.yaml").write_text("data: {source: digits}\n")
    (tmp_path / "cfg.yaml").chmod(0)
    probe = subprocess.run(["cat", "cfg.yaml"], cwd=tmp_path, capture_output=True,
                           preexec_fn=__import__("conftest")._without_file_permission_override)
    assert probe.returncode != 0 and b"Permission denied" in probe.stderr


def test_predict_names_an_unreachable_file_permission_denied_not_missing(tmp_path):
    ckpt = make_checkpoint(tmp_path / "model.npz", ["a", "b"])
    digit_png(tmp_path / "locked" / "img.png")
    (tmp_path / "locked").chmod(0)
    try:
        proc = run_softmax("predict", "-c", ckpt, "locked/img.png", "missing.png", cwd=tmp_path, unprivileged=True)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "softmax: error: locked/img.png: permission denied (a folder on its way cannot be searched)",
        "softmax: error: missing.png: file not found"]


def test_a_write_permission_problem_is_exit_2_and_named(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    ckpt = make_checkpoint(tmp_path / "model.npz", ["a", "b"])
    try:
        proc = run_softmax("predict", "-c", ckpt, SAMPLES / "digits-3.png", "--output", "out/p.csv",
                           cwd=tmp_path, unprivileged=True)
    finally:
        (tmp_path / "out").chmod(0o755)
    assert_user_error(proc, "out/p.csv", "permission denied")


# ============================================================================== signals
def wait_until_reading(proc: subprocess.Popen, folder: Path, timeout: float = 60) -> None:
    """Return once ``proc`` has a file of ``folder`` open: it is reading the data set."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            targets = [os.readlink(fd) for fd in fds.iterdir()]
        except OSError:          # an fd closed while listed
            continue
        if any(t.startswith(str(folder)) for t in targets):
            return
        time.sleep(0.002)
    raise AssertionError("the command never read the data set")


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    """Two classes of 1000 images of 280 x 280 pixels: seconds of reading."""
    return image_folder(tmp_path_factory.mktemp("signals") / "digits", ["a", "b"], 1000, size=280)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", ["train loading", "eval", "predict"])
def test_a_signal_in_any_phase_is_exit_130_and_one_line(tmp_path, big_folder, phase, sig):
    (tmp_path / "cfg.yaml").write_text(f"data: {{source: folder, root: {big_folder}}}\ntrain: {{epochs: 1}}\n")
    ckpt = make_checkpoint(tmp_path / "model.npz", ["a", "b"])
    args = {"train loading": ["train", "cfg.yaml", "--quiet"],
            "eval": ["eval", ckpt, "--data", "cfg.yaml"],
            "predict": ["predict", "-c", ckpt, big_folder]}[phase]
    proc = subprocess.Popen([SOFTMAX, *map(str, args)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_until_reading(proc, big_folder)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == [f"softmax: interrupted ({sig.name})"] and stdout == ""
    assert not (tmp_path / "runs").exists()


def test_an_error_a_signal_caused_in_a_library_is_reported_as_the_interrupt(monkeypatch, capsys):
    """The SIGTERM race seen under load: the KeyboardInterrupt landed while Pillow imported a
    plugin and surfaced as a RuntimeError (exit 1 and a traceback). After a signal, any error
    is the interrupt; without one, an unexpected error still propagates (it is a bug to see)."""
    import typer

    from softmax_cli import cli

    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)   # keep pytest's own

    @cli._handle_errors
    def command():
        raise RuntimeError("import of GifImagePlugin interrupted")

    with pytest.raises(RuntimeError):
        command()
    monkeypatch.setattr(cli, "_received", ["SIGTERM"])
    with pytest.raises(typer.Exit) as exc:
        command()
    assert exc.value.exit_code == 130
    assert capsys.readouterr().err == "softmax: interrupted (SIGTERM)\n"

    @cli._handle_errors
    def stops_on_its_own():             # serve and tune say the interrupt their own way
        raise typer.Exit(130)

    with pytest.raises(typer.Exit):
        stops_on_its_own()
    assert capsys.readouterr().err == ""


# ======================================================================= spreadsheet CSV
@pytest.mark.parametrize("value, cell", [
    ("=1+2", "'=1+2"), ("+SUM(1)", "'+SUM(1)"), ("@x", "'@x"), ("-2+3", "'-2+3"), ("\tx", "'\tx"),
    ("\r=1", "'\r=1"), ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
    ("-1", "-1"), ("+2.5e-3", "+2.5e-3"), ("7", "7"), ("a=b", "a=b"), ("", ""),
    (-0.25, -0.25), (3, 3), (None, None), (True, "True"),
])
def test_safe_cell(value, cell):
    from softmax_cli.csvout import safe_cell

    assert safe_cell(value) == cell


def test_csv_text_quotes_and_neutralises():
    from softmax_cli.csvout import csv_text

    text = csv_text(["class", "p"], [['=HYPERLINK("http://x")', -0.5], ["a,b\nc", 1]])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["class", "p"], ["'=HYPERLINK(\"http://x\")", "-0.5"], ["a,b\nc", "1"]]


FORMULAS = ["=1+2", "+SUM(1)", "@x", "-1"]


def test_predict_csv_and_per_class_csv_hold_no_live_formula(tmp_path):
    data = image_folder(tmp_path / "digits", FORMULAS, 6)
    ckpt = make_checkpoint(tmp_path / "model.npz", FORMULAS, hidden=(4,))
    (tmp_path / "cfg.yaml").write_text(f"data: {{source: folder, root: {data}, test_fraction: 0.5, "
                                       f"val_fraction: 0}}\n")
    proc = run_softmax("eval", ckpt, "--data", "cfg.yaml", "--report", "report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "report" / "per_class.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["'=1+2", "'+SUM(1)", "'@x", "-1"]       # "-1" is a number
    assert all(float(v) >= 0 for r in rows[1:] for v in r[1:])

    digit_png(tmp_path / "@img.png")
    proc = run_softmax("predict", "-c", ckpt, "@img.png", "-k", "4", "-o", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "p.csv", newline="") as f:
        _, row = list(csv.reader(f))
    assert row[-2:] == [str(ckpt), ""]                          # the checkpoint column, no error
    cells = [c for c in row[:-2] if not c.replace(".", "").replace("e-", "").isdigit()]
    assert cells[0] == "'@img.png" and all(c[0] == "'" or c == "-1" for c in cells)
    assert sorted(cells[2:]) == sorted(["'+SUM(1)", "-1", "'=1+2", "'@x"])


# ========================================================================== strict YAML
@pytest.mark.parametrize("text, value", [
    ("1:30", "1:30"), ("yes", "yes"), ("no", "no"), ("on", "on"), ("1_000", "1_000"), ("010", 10),
    ("0x1F", 31), ("0o17", 15), ("1e-3", 0.001), ("+2.5", 2.5), (".inf", float("inf")), ("true", True),
    ("null", None), ("~", None),
])
def test_plain_scalars_read_as_yaml_1_2(text, value):
    from softmax_cli.config import load_yaml

    assert load_yaml(f"k: {text}\n") == {"k": value}


def test_duplicate_keys_name_both_lines():
    from softmax_cli.config import DuplicateKeyError, load_yaml

    with pytest.raises(DuplicateKeyError) as info:
        load_yaml("train:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n")
    assert "duplicate key 'epochs' (first given at line 2, column 3)" in str(info.value)
    assert info.value.problem_mark.line + 1 == 4
    assert load_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n") == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}


def test_the_saved_config_reads_back_the_same(tmp_path):
    from softmax_cli.config import load_yaml

    proc = run_softmax("train", SAMPLES.parent.parent / "configs" / "digits.yaml", "--quiet", "--set",
                       "train.epochs=1", "--set", "name='1e3'", "--set", "model.hidden=[8]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "runs" / "1e3" / "config.yaml").read_text()
    assert load_yaml(text) == yaml.safe_load(text) and load_yaml(text)["name"] == "1e3"


# ========================================================================= valid output
def test_eval_json_of_a_diverged_checkpoint_is_strict_json(tmp_path):
    ckpt = make_checkpoint(tmp_path / "huge.npz", [str(i) for i in range(10)], side=8, scale=3e37)
    proc = run_softmax("eval", ckpt, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    result = json.loads(proc.stdout, parse_constant=refuse)
    assert result["loss"] is None and "loss (nan)" in result["note"] or "loss (inf)" in result["note"]


def test_dumps_is_strict_json_and_notes_what_it_nulled():
    from softmax_cli.jsonout import dumps

    text = dumps({"a": float("nan"), "b": [1.0, float("-inf")], "c": "x"})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": "x",
                                "note": "not finite, written as null: a (nan), b[1] (-inf)"}
    assert dumps({"a": 1.5}) == '{"a": 1.5}'


NASTY = ["a\nb", "\x1b[31mred", "tab\there"]


def test_class_names_are_escaped_in_every_table(tmp_path):
    data = image_folder(tmp_path / "digits", NASTY, 6)
    ckpt = make_checkpoint(tmp_path / "model.npz", NASTY, hidden=(4,))
    (tmp_path / "cfg.yaml").write_text(f"data: {{source: folder, root: {data}, test_fraction: 0.5, "
                                       f"val_fraction: 0}}\n")
    outputs = [run_softmax("eval", ckpt, "--data", "cfg.yaml", cwd=tmp_path),
               run_softmax("inspect", ckpt, cwd=tmp_path),
               run_softmax("predict", "-c", ckpt, SAMPLES / "digits-3.png", "-k", "3", cwd=tmp_path)]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\t" not in proc.stdout and "\\x1b[31mred" in proc.stdout
        assert "a\\nb" in proc.stdout and not any(line.startswith("b") for line in proc.stdout.splitlines())


def test_a_save_removes_stale_temporary_files_of_its_target(tmp_path):
    from softmax_cli.checkpoint import remove_stale_temporaries

    target = tmp_path / "last.npz"
    stale = tmp_path / ".last.npz.k1ll3d.tmp"           # left by kill -9 during a save
    young = tmp_path / ".last.npz.young.tmp"             # just made by another process
    other = tmp_path / ".best.npz.k1ll3d.tmp"            # another target's
    for path in (stale, young, other):
        path.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 60,) * 2)
    os.utime(other, (time.time() - 60,) * 2)
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new" and not stale.exists() and young.exists() and other.exists()

    import fcntl

    with open(young, "rb") as held:                      # being written: locked, kept however old
        fcntl.flock(held, fcntl.LOCK_EX)
        os.utime(young, (time.time() - 60,) * 2)
        assert remove_stale_temporaries(target) == [] and young.exists()
    assert remove_stale_temporaries(target) == [young] and not young.exists()


# ================================================================== accepted but wrong
def test_a_checkpoint_with_repeated_class_names_is_refused(tmp_path):
    bad = make_checkpoint(tmp_path / "ten.npz", ["1"] * 10, side=8)
    assert_user_error(run_softmax("inspect", bad, cwd=tmp_path), "ten.npz", "names '1' more than once")


def test_user_error_key_blames_a_set_item(tmp_path):
    from softmax_cli.config import blame_override

    exc = UserError("digits: cannot split", key="data.val_fraction")
    assert str(blame_override(exc, ["train.epochs=2", "data.val_fraction=0.99"])) == \
        "--set data.val_fraction=0.99: digits: cannot split"
    assert blame_override(exc, ["train.epochs=2"]) is exc
    assert str(blame_override(UserError("trian: unknown key"), ["trian.epochs=3"])).startswith("--set trian.epochs=3: ")
