"""Backends: one package per framework behind the interface in ``base.py``, found by name in
``registry.py``; the harness runs each in its own worker process (``harness/workers``)."""
