"""``softmax tune``: a hyperparameter search over a config, on Optuna (one machine, or many
sharing a database) or Ray Tune (a cluster).

- :mod:`.space`: the search space file, checked against the config's schema;
- :mod:`.trial`: one trial, an ordinary training reporting each epoch through a callback;
- :mod:`.study`: the sweep's settings, its study in storage, which trials count;
- :mod:`.optuna_backend`, :mod:`.ray_backend`: the two ways to run the trials;
- :mod:`.outputs`: ``trials.csv``, ``best.yaml`` and pictures from the study;
- :mod:`.sweep`: :func:`~.sweep.prepare` and :func:`~.sweep.run_sweep`, what the command calls.

The search reaches the training loop only through the engine's public interface
(:func:`softmax_cli.engine.train` and a :class:`~softmax_cli.engine.Callback`).
"""
