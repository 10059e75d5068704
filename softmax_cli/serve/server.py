"""Running the application under uvicorn: the listening socket, the worker processes, and
the limit that holds for the whole server process (Pillow's decompression-bomb limit)."""

from __future__ import annotations

import os
import socket
from typing import Callable

from ..checkpoint import Checkpoint
from ..errors import UserError

# Pillow refuses images of more than Image.MAX_IMAGE_PIXELS pixels before decoding them (its
# decompression-bomb guard, 89,478,485 by default: about 1 GB to decode one). A server decodes
# for strangers, several at once, so it takes at most 4096 x 4096 pixels (16.8 MP: a 12 MP
# phone photo passes).
MAX_IMAGE_PIXELS = 4096 * 4096
# how `--workers N` passes the checkpoint and the body limit to the worker processes uvicorn
# starts (each loads the checkpoint itself)
CHECKPOINT_ENV, MAX_BODY_ENV = "SOFTMAX_SERVE_CHECKPOINT", "SOFTMAX_SERVE_MAX_BODY_BYTES"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), IPv6 when ``host`` holds a ``:``.

    Raises:
        UserError: the address cannot be bound (in use, not this machine's, a privileged port).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"{url(host, port)}: cannot listen there ({why}); choose another --host or --port") from None
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def limit_images() -> None:
    """Set Pillow's decompression-bomb limit to :data:`MAX_IMAGE_PIXELS` in this process, and
    silence its warning: the app refuses larger images from their header before any decoder
    sees them (:func:`softmax_cli.serve.app._format_problem`)."""
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def app_from_environment():
    """The application of a worker process started by ``--workers N`` (uvicorn's factory)."""
    from ..checkpoint import load_checkpoint
    from .app import create_app

    limit_images()
    return create_app(load_checkpoint(os.environ[CHECKPOINT_ENV]), int(os.environ[MAX_BODY_ENV]))


def run(ckpt: Checkpoint, host: str, port: int, workers: int, max_body_bytes: int, log_level: str,
        announce: Callable[[str], None]) -> None:
    """Serve ``ckpt`` on ``host:port`` until SIGINT or SIGTERM.

    One worker serves from this process; ``workers > 1`` has uvicorn start that many
    processes sharing the port, each loading the checkpoint from its file. ``announce`` is
    called with the URL once the port is bound.

    Raises:
        UserError: the port cannot be bound.
        KeyboardInterrupt: the server stopped on SIGINT or SIGTERM (the caller makes SIGTERM
            raise it too), after finishing the requests in progress.
        RuntimeError: the server failed to start.
    """
    import uvicorn

    sock = listen(host, port)
    port = sock.getsockname()[1]
    options = dict(log_level=log_level, access_log=log_level in ("info", "debug"), server_header=False,
                   timeout_graceful_shutdown=5)
    if workers == 1:
        from .app import create_app

        limit_images()
        server = uvicorn.Server(uvicorn.Config(create_app(ckpt, max_body_bytes), **options))
        sock.listen(2048)
        announce(url(host, port))
        server.run(sockets=[sock])      # re-raises the signal that stopped it (uvicorn >= 0.29)
        if not server.started:
            raise RuntimeError("the server did not start (see uvicorn's message above)")
        raise KeyboardInterrupt         # an older uvicorn returns after the signal
    sock.close()                        # uvicorn binds the port again, for all its workers
    os.environ[CHECKPOINT_ENV], os.environ[MAX_BODY_ENV] = str(ckpt.path.absolute()), str(max_body_bytes)
    announce(url(host, port))
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, host=host, port=port, workers=workers,
                **options)
    raise KeyboardInterrupt   # uvicorn's supervisor returns only once a signal stopped the workers
