"""``softmax serve``: a checkpoint behind an HTTP API (FastAPI under uvicorn), with a page to
draw a digit on. FastAPI, uvicorn and python-multipart are the ``serve`` extra
(``pip install 'softmax-cli[serve]'``); only ``softmax serve`` imports this package.

:mod:`.app` is the application, :mod:`.limits` its request size limit, :mod:`.server` runs it.
"""
