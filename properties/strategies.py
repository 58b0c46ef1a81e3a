"""Hypothesis strategies for qcow2 images, reusable from other projects' test suites.

    from hypothesis import given
    from qcow2harness.properties.corruptions import base_image
    from qcow2harness.properties.strategies import targeted_corruptions

    @given(targeted_corruptions())
    def test_my_reader_rejects(drawn):
        corruption, params = drawn
        data = bytearray(base_image(corruption.base, WORKDIR))
        corruption.apply(data, **params)
        ...  # my reader must refuse `data`, or report corruption.clause

Each drawn value is a `Corruption` (which knows the clause it breaks) and a
parameter dict for it: one value per free parameter, drawn from the choices the
corruption declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from .corruptions import CORRUPTIONS, Corruption

__all__ = ["corruption_params", "targeted_corruptions"]


def corruption_params(corruption: Corruption) -> st.SearchStrategy[dict[str, Any]]:
    """Parameter dicts for one corruption: each free parameter sampled from its choices."""
    return st.fixed_dictionaries(
        {name: st.sampled_from(tuple(values)) for name, values in corruption.params.items()}
    )


def targeted_corruptions(
    *, clauses: Iterable[str] | None = None, bases: Iterable[str] | None = None,
) -> st.SearchStrategy[tuple[Corruption, dict[str, Any]]]:
    """(corruption, params) pairs, optionally limited to some clauses or base image kinds.

    Shrinks towards the first corruption in spec order and each parameter's default.
    """
    wanted_clauses = None if clauses is None else set(clauses)
    wanted_bases = None if bases is None else set(bases)
    chosen = [
        c for c in CORRUPTIONS
        if (wanted_clauses is None or c.clause in wanted_clauses)
        and (wanted_bases is None or c.base in wanted_bases)
    ]
    if not chosen:
        raise ValueError(
            f"no corruption matches clauses={sorted(wanted_clauses or [])} "
            f"bases={sorted(wanted_bases or [])}"
        )
    return st.sampled_from(chosen).flatmap(
        lambda c: corruption_params(c).map(lambda params: (c, params))
    )
