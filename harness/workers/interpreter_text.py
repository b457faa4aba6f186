"""Where a worker ran, as the terminal tables and the report say it: the one-line text of the facts a
worker records in its entry's ``environment["interpreter"]`` (``interpreter_facts.describe``)."""

from __future__ import annotations


def interpreter_lines(entries: list[dict], always: bool = False) -> list[str]:
    """"torch ran in ..." once per backend (a bench has an entry per job), when the entries did not all
    run in one interpreter (``--python``), or ``always``; else nothing."""
    ran: dict[str, dict] = {}
    for e in entries:
        where = (e.get("environment") or {}).get("interpreter")
        if where:
            ran.setdefault(e["name"], where)
    if not always and len({(where["executable"], where["prefix"]) for where in ran.values()}) < 2:
        return []
    return [f"{name} ran in {interpreter_text(where)}" for name, where in ran.items()]


def interpreter_text(where: dict) -> str:
    """``/venv/bin/python (Python 3.11.7, prefix /venv): torch 2.13.0, numpy 2.4.6`` (an entry's
    ``environment["interpreter"]``, as its worker recorded it)."""
    packages = ", ".join(f"{name} {version or '(version unknown)'}"
                         for name, version in (where.get("packages") or {}).items())
    return f"{where['executable']} (Python {where['version']}, prefix {where['prefix']})" + (
        f": {packages}" if packages else "")
