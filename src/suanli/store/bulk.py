"""Many rows that differ in a few columns, inserted with one ``executemany`` straight to the driver.

An ORM or Core bulk INSERT converts every value of every row (10,000 rows × 15 columns: the
JSON spec dumped 10,000 times, each time stamp formatted 10,000 times) and spends four times
longer in Python than SQLite spends writing. Rows of a job array are one row with a different
id and index, so the shared values are converted once, by their columns' own types (exactly
what SQLAlchemy would have sent), and each row adds only its few plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from suanli.store.models import Base


def insert_many(
    session: Session,
    model: type[Base],
    shared: Mapping[str, Any],
    varying: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """Insert one row per item of ``rows`` into ``model``'s table, in ``session``'s transaction: the
    columns of ``shared`` take its values, converted once; the ``varying`` columns take each
    row's values in that order, as given (so they must be of types the driver takes as they
    are: str, int, None)."""
    connection = session.connection()
    dialect = connection.dialect
    names = [*shared, *varying]
    table = model.__table__
    compiled = insert(model).compile(dialect=dialect, column_keys=names)
    stored: dict[str, Any] = {}
    for name, value in shared.items():
        # The dialect's own form of the type (SQLite's DATETIME writes its text format, JSON
        # dumps): what the compiled statement would have sent.
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        stored[name] = process(value) if process is not None and value is not None else value
    params: list[Any]
    if compiled.positional:
        # Each row's values, then the shared ones: one C-level pick per row puts them in order.
        constants = tuple(stored.values())
        at = {n: i for i, n in enumerate(varying)} | {n: len(varying) + i for i, n in enumerate(stored)}
        pick = itemgetter(*(at[n] for n in compiled.positiontup or ()))
        params = [pick((*row, *constants)) for row in rows]
    else:
        params = [{**stored, **dict(zip(varying, row, strict=True))} for row in rows]
    if params:
        connection.exec_driver_sql(compiled.string, params)
