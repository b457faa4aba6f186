"""alexbench's version: a leaf module, so every layer can read it without importing the package's
public API (``alexbench/__init__.py`` imports the harness; importing it from below would be a cycle)."""

__version__ = "0.1.0"
