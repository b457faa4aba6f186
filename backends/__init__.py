"""Backends: one module per framework behind the interface in ``base.py``, found by name in
``registry.py`` and run in worker processes (``worker.py``, ``runner.py``)."""
