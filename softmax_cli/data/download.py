"""Data sets known by name (``data.source: mnist | fashion-mnist | kmnist``), downloaded with
pooch on first use and verified by SHA-256.

Each data set is the four IDX files of MNIST's layout. On first use they are downloaded into
``data.cache_dir`` (default :func:`softmax_cli.cache.data_cache_dir`), each one checked against
its SHA-256 before it is kept: pooch downloads to a temporary file beside the target and moves
it into place only once its hash matches, so an interrupted or corrupt download never leaves
a file that looks complete. Later uses read the cache (pooch hashes each file again; a file
that no longer matches is fetched again). ``data.root`` reads a local copy instead, unchecked.

Checksums (SHA-256 of the published ``.gz`` files, as torchvision's dataset registry lists
them): MNIST from the mirrors torchvision uses (the original site no longer serves the files
reliably); Fashion-MNIST from Zalando Research's repository and S3 site; Kuzushiji-MNIST from
ROIS-CODH. EMNIST is not offered: its IDX files are published only inside one 536 MB zip.

Mirrors. ``$SOFTMAX_DATA_URL`` replaces the published locations with a mirror that holds
``<name>/<file>`` (for example ``$SOFTMAX_DATA_URL/mnist/train-images-idx3-ubyte.gz``). A file
from a mirror must match, in this order: ``data.sha256sums`` (a local ``sha256sum``-format file
of the user's, when set), the mirror's own ``<name>/SHA256SUMS`` when it has one (fetched on
first use and kept in the cache folder), else the published checksum. The published sources
are only ever checked against the built-in checksums (or ``data.sha256sums``): a checksum
list fetched from a server is consulted only for a mirror the user named.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError, quote_data
from .dataset import Dataset
from .files import open_regular
from .idx import IDX_NAMES, find_in_root, load_idx_files

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig

MIRROR_ENV = "SOFTMAX_DATA_URL"
TIMEOUT_S = 60                       # per request: connect, and between bytes received
MAX_SUMS_BYTES = 64 * 1024           # a SHA256SUMS file is a few lines
FILES = {key: name + ".gz" for key, name in IDX_NAMES.items()}


@dataclass(frozen=True)
class NamedSource:
    """A data set known by name: where its files are published and their SHA-256 digests."""

    title: str
    urls: tuple[str, ...]            # base URLs, tried in order
    sha256: dict
    classes: tuple[str, ...]


SOURCES = {
    "mnist": NamedSource(
        "MNIST (LeCun, Cortes & Burges)",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
        tuple("0123456789")),
    "fashion-mnist": NamedSource(
        "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017)",
        ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
         "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        {"train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"},
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot")),
    "kmnist": NamedSource(
        "Kuzushiji-MNIST (Clanuwat et al. 2018)",
        ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {"train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
         "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
         "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"},
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
}
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def parse_sha256sums(text: str, origin: str) -> dict[str, str]:
    """``{file name: digest}`` from ``sha256sum`` output (``<64 hex digits>  <name>``).

    Raises:
        UserError: a line that is not a checksum line, naming ``origin`` and the line.
    """
    sums = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        found = _SUM_LINE.fullmatch(line.strip())
        if not found:
            raise UserError(f"{origin}: line {line_no}: expected '<64 hex digits>  <file name>' as sha256sum "
                            f"writes, got {quote_data(line)}")
        sums[Path(found.group(2)).name] = found.group(1).lower()
    return sums


def _local_sums(path: Path) -> dict[str, str]:
    with open_regular(path) as f:
        data = f.read(MAX_SUMS_BYTES + 1)
    if len(data) > MAX_SUMS_BYTES:
        raise UserError(f"{path}: data.sha256sums is larger than {MAX_SUMS_BYTES:,} bytes; expected a "
                        f"sha256sum checksum list")
    try:
        return parse_sha256sums(data.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise UserError(f"{path}: data.sha256sums is not UTF-8 text") from None


def _failure(exc: Exception, expected: str = "") -> str:
    """What went wrong with one download, in a few words."""
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".rstrip()
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect (offline, or the server is down)"
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        got = re.search(r"but got ([0-9a-fA-F]{64})", str(exc))
        return (f"its SHA-256 {got.group(1)[:16] + '... ' if got else ''}is not the expected "
                f"{expected[:16]}... (corrupt, or other bytes); nothing was kept")
    return f"{type(exc).__name__}: {quote_data(str(exc))}"


def _mirror_sums(base: str) -> dict[str, str]:
    """The mirror's ``SHA256SUMS`` beside its files, or {} when it has none (HTTP 404)."""
    import pooch
    import requests

    url, out = base + "SHA256SUMS", io.BytesIO()
    try:
        pooch.HTTPDownloader(timeout=TIMEOUT_S)(url, out, None)
    except requests.exceptions.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return {}
        raise UserError(f"{url}: download failed: {_failure(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise UserError(f"{url}: download failed: {_failure(exc)}") from None
    if out.tell() > MAX_SUMS_BYTES:
        raise UserError(f"{url}: larger than {MAX_SUMS_BYTES:,} bytes; expected a sha256sum checksum list")
    return parse_sha256sums(out.getvalue().decode("utf-8", "replace"), url)


def _mirror_expected(base: str, folder: Path) -> dict[str, str]:
    """The mirror's checksums, fetched once and kept in ``folder`` (one file per mirror URL),
    so that later uses read the cache without asking the mirror again (offline too)."""
    kept = folder / f"SHA256SUMS.mirror-{hashlib.sha256(base.encode()).hexdigest()[:12]}"
    if kept.is_file():
        return _local_sums(kept)
    sums = _mirror_sums(base)
    text = "".join(f"{digest}  {name}\n" for name, digest in sums.items())
    partial = kept.with_name(kept.name + f".{os.getpid()}.tmp")
    try:
        partial.write_text(f"# {base}\n{text}", encoding="utf-8")
        os.replace(partial, kept)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"{folder}: cannot write the download cache ({exc.strerror or exc}); set "
                        f"data.cache_dir to a folder you may write in") from None
    return sums


def _retrieve(bases: list[str], name: str, digest: str, folder: Path, advice: str) -> Path:
    """``folder/name``, downloaded from the first base URL that serves it with ``digest``."""
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)      # no "Downloading file ..." chatter
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=TIMEOUT_S)
    problems = []
    for base in bases:
        try:
            return Path(pooch.retrieve(base + name, known_hash=f"sha256:{digest}", fname=name, path=folder,
                                       downloader=downloader))
        except (requests.exceptions.RequestException, ValueError) as exc:
            problems.append(_failure(exc, digest))
        except OSError as exc:
            raise UserError(f"{folder}: cannot write the download cache ({exc.strerror or exc}); set "
                            f"data.cache_dir to a folder you may write in") from None
    also = ""
    if len(bases) > 1:
        also = f" (and {len(bases) - 1} mirror{'s' * (len(bases) > 2)}: {'; '.join(problems[1:])})"
    raise UserError(f"{bases[0] + name}: download failed: {problems[0]}{also}; {advice}")


def fetch(name: str, folder: Path, sha256sums: Path | None = None) -> dict[str, Path]:
    """The four IDX files of data set ``name`` in ``folder``, downloaded if missing or changed,
    each verified by SHA-256 (see the module's rules for mirrors and checksums).

    Returns:
        ``{key: path}`` for the keys of :data:`~softmax_cli.data.idx.IDX_NAMES`.

    Raises:
        UserError: one line naming the URL, what failed (HTTP status, no connection, a
            checksum that does not match) and how to place the files by hand; or the cache
            folder cannot be written.
    """
    source = SOURCES[name]
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    bases = [mirror.rstrip("/") + f"/{name}/"] if mirror else list(source.urls)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the download cache ({exc.strerror or exc}); set "
                        f"data.cache_dir to a folder you may write in") from None
    expected = dict(source.sha256)
    if sha256sums is not None:
        expected.update(_local_sums(sha256sums))
    elif mirror:
        expected.update(_mirror_expected(bases[0], folder))
    advice = (f"to place the files by hand, download {', '.join(FILES.values())} into {folder} (they are "
              f"checked against their SHA-256), or into any folder and set data.root to it")
    if mirror:
        advice += (f"; a mirror holding other bytes of the same files lists their checksums in "
                   f"{bases[0]}SHA256SUMS, or in a local file named by data.sha256sums")
    fresh = [f for f in FILES.values() if not (folder / f).exists()]
    paths = {key: _retrieve(bases, fname, expected[fname], folder, advice) for key, fname in FILES.items()}
    if fresh:
        print(f"softmax: downloaded {source.title} ({len(fresh)} files, SHA-256 verified) into {folder}",
              file=sys.stderr)
    return paths


def load_named(cfg: DataConfig) -> Dataset:
    """The data set ``cfg.source`` names: from ``data.root`` when given (a local copy, read as
    it is), else from the download cache (``data.cache_dir``), downloading what is missing.

    Class names are the data set's own (Fashion-MNIST: ``T-shirt/top``, ``Trouser``, ...).

    Raises:
        UserError: a download that fails (see :func:`fetch`) or a malformed file.
    """
    from ..cache import data_cache_dir

    source = SOURCES[cfg.source]
    if cfg.root is not None:
        root = Path(cfg.root)
        paths = {key: find_in_root(root, key) for key in IDX_NAMES}
        where = f"{source.title}, local copy in {root}"
    else:
        folder = Path(cfg.cache_dir) if cfg.cache_dir is not None else data_cache_dir(cfg.source)
        paths = fetch(cfg.source, folder, Path(cfg.sha256sums) if cfg.sha256sums else None)
        where = f"{source.title}, {folder}"
    return load_idx_files(paths, where, names=source.classes)
