"""alexbench: does a network compiled into two frameworks compute the same function?

Importing this package is cheap: no deep-learning framework is imported until a backend
worker needs one. The public entry points live in the subpackages:

- ``alexbench.spec``: load and validate a YAML spec, shapes/params/MACs, canonical weights.
- ``alexbench.backends``: the reference (float64 NumPy), torch, keras and ONNX Runtime backends.
- ``alexbench.harness``: compare, bench, report and the command line.
"""

__version__ = "0.1.0"
