"""Where a worker runs: its interpreter and the versions of the packages it uses.

Used twice, so that the results and the harness' check say the same thing: the worker records
``describe`` in its result, and the harness runs this file's source with ``-c`` in a ``--python``
interpreter before any work (``interpreter.py``) to learn whether it can run a worker at all.
Standard library only, and in syntax Python 2.7 parses too: any interpreter must be able to
say which Python it is, so that an old one is refused by its version, not by a SyntaxError.
"""

import json
import sys

MIN_PYTHON = (3, 10)  # pyproject's requires-python: the worker's code needs it


def describe(modules):
    """``executable``, ``version``, ``prefix``; from MIN_PYTHON on also ``packages`` (each of ``modules``
    found here -> its distribution's version, None when it has no metadata) and ``missing`` (the
    modules not found)."""
    facts = {"executable": sys.executable, "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
             "prefix": sys.prefix}
    if tuple(sys.version_info[:2]) < MIN_PYTHON:
        return facts  # the harness refuses it by its version; older ones lack what follows
    import importlib.util

    packages, missing = {}, []
    for module in modules:
        if importlib.util.find_spec(module) is None:  # found, not imported: a framework takes seconds
            missing.append(module)
        else:
            packages[module] = _version(module)
    facts.update(packages=packages, missing=missing)
    return facts


def _version(module):
    """The version of the distribution that installs ``module`` (onnxruntime may be onnxruntime-gpu)."""
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        for distribution in metadata.packages_distributions().get(module, []):
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                pass
    return None


if __name__ == "__main__":  # the harness' probe: python -c SOURCE '["numpy", "torch"]'
    print(json.dumps(describe(json.loads(sys.argv[1]))))
