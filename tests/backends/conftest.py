"""The parity log of backend tests, printed at the end of the run (job files and the planted
plugin are in tests/conftest.py)."""

from __future__ import annotations

import pytest

# Parity figures, printed as one table at the end of the run (the issue wants test output to
# show each backend's relative error per spec) and attached to the JUnit XML as properties.
_PARITY: list[tuple[str, str, int, float, float, str]] = []


@pytest.fixture
def parity_log(record_property):
    def log(backend: str, spec: str, batch: int, rel_l2: float, max_abs_over_ref: float, worst_layer: str = ""):
        _PARITY.append((backend, spec, batch, rel_l2, max_abs_over_ref, worst_layer))
        record_property(f"{backend}:{spec}:batch{batch}", f"rel_l2={rel_l2:.3g} max_abs/max_ref={max_abs_over_ref:.3g}")
    return log


def pytest_terminal_summary(terminalreporter):
    if not _PARITY:
        return
    terminalreporter.section("parity against the float64 reference (worst over output and named layers)")
    header = f"{'backend':<12} {'spec':<20} {'batch':>5} {'rel L2':>10} {'max abs/max|ref|':>17}  layer"
    terminalreporter.write_line(header)
    for backend, spec, batch, rel_l2, rel_max, layer in _PARITY:
        terminalreporter.write_line(f"{backend:<12} {spec:<20} {batch:>5} {rel_l2:>10.2e} {rel_max:>17.2e}  {layer}")
