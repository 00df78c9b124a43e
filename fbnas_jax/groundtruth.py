"""Ground truth of a benchmark (NAS-Bench-201, NAS-Bench-101, ...) from a CSV file (no pandas).

Any CSV with a header row, an ``arch`` column holding the space's architecture strings (or
the space's :attr:`~fbnas_jax.spaces.base.SearchSpace.table_columns`, e.g. NB101's
``adjacency`` and ``ops``) and any number of numeric columns works, e.g.
``../shared/data/nasbench201/nb201_cifar10_accuracy.csv``
(``index, arch, cifar10_test_200ep, cifar10_valid_val_12ep, cifar10_test_12ep``)::

    gt = load_ground_truth("nb201_cifar10_accuracy.csv")
    acc = gt.column("cifar10_test_200ep")          # float64, one value per row
    rows = gt.lookup(encodings)                     # row index per encoding, -1 if absent
    i_truth, i_query = gt.align(cell_strings)       # join by architecture
    gt.best("cifar10_test_200ep")                   # Best(row=..., arch=..., value=94.3733)

    gt101 = load_ground_truth("nb101_subset.csv", space="nb101")   # adjacency + ops columns

Rows are joined by architecture (:meth:`SearchSpace.key`: NB201's cell string, NB101's
isomorphism-invariant hash), never by the benchmark's index, whose order differs from
:func:`fbnas_jax.spaces.nb201.all_encodings`.
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from fbnas_jax.spaces import SearchSpace, SearchSpaceError
from fbnas_jax.spaces import get as get_space

__all__ = ["GroundTruth", "GroundTruthError", "Best", "load_ground_truth"]

ARCH_COLUMN = "arch"
_MISSING = {"", "na", "nan", "none", "null"}


class GroundTruthError(ValueError):
    """A ground-truth file or query that cannot be used (bad CSV, unknown column, ...)."""


class NonNumericColumnWarning(UserWarning):
    """A mostly numeric column has some values that are not numbers; it was left out."""


_SHOW_BAD = 5  # non-numeric cells quoted in a message


class Best(NamedTuple):
    row: int
    arch: str
    value: float


@dataclass(frozen=True)
class GroundTruth:
    """Architectures of a ground-truth table and their numeric columns, row-aligned.

    ``archs[i]`` (canonical cell string), ``encodings[i]`` and ``columns[name][i]`` all
    describe row ``i``. Missing values (empty cells, ``nan``, ``NA``) are NaN.
    """

    archs: list[str]
    encodings: np.ndarray  # (n, *encoding_shape) int32
    columns: dict[str, np.ndarray]  # name -> (n,) float64
    source: str = ""
    space: Any = "nb201"  # a SearchSpace or its name (stored as the SearchSpace)
    _row_of: Any = field(default=None, repr=False, compare=False)  # key -> row (see _rows)
    #: columns left out because some values are not numbers -> which rows (for messages)
    text_columns: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        space = get_space(self.space)
        shape = tuple(space.encoding_shape)
        enc = np.asarray(self.encodings)
        enc = space.validate_batch(enc.reshape((-1,) + shape) if enc.size == 0 else enc)
        if len(self.archs) != len(enc):
            raise GroundTruthError(f"{len(self.archs)} archs but {len(enc)} encodings")
        for name, col in self.columns.items():
            if len(col) != len(enc):
                raise GroundTruthError(f"column {name!r} has {len(col)} values for {len(enc)} rows")
        ids = _ids(space, enc)
        row_of: Any
        if space.enumerable:
            row_of = np.full(space.size, -1, dtype=np.int64)
            uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
            dup = int(uniq[counts > 1][0]) if (counts > 1).any() else None
            row_of[uniq] = first
        else:
            row_of, dup = {}, None
            for i, k in enumerate(ids):
                if k in row_of and dup is None:
                    dup = k
                row_of.setdefault(k, i)
        if dup is not None:
            rows = [i for i, k in enumerate(ids) if k == dup]
            raise GroundTruthError(
                f"{self.source or 'ground truth'}: architecture {self.archs[rows[0]]!r} appears in "
                f"{len(rows)} rows (data rows {rows[:5]}); each architecture must appear once"
            )
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "encodings", enc)
        object.__setattr__(self, "_row_of", row_of)

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def column(self, name: str) -> np.ndarray:
        """The float64 values of column ``name`` (one per row)."""
        if name in self.text_columns:
            raise GroundTruthError(f"column {name!r} of {self.source or 'ground truth'} is not numeric: "
                                   f"{self.text_columns[name]}")
        try:
            return self.columns[name]
        except KeyError:
            raise GroundTruthError(
                f"no column {name!r} in {self.source or 'ground truth'}; available numeric "
                f"columns: {self.column_names}"
            ) from None

    def lookup(self, encodings) -> np.ndarray:
        """Row index of each architecture (encodings ``(n, *encoding_shape)`` or architecture
        strings), -1 if absent."""
        enc = _query_encodings(encodings, self.space)
        if not len(enc):
            return np.zeros(0, np.int64)
        ids = _ids(self.space, enc)
        if isinstance(self._row_of, np.ndarray):
            return self._row_of[ids]
        return np.asarray([self._row_of.get(k, -1) for k in ids], np.int64)

    def align(self, archs) -> tuple[np.ndarray, np.ndarray]:
        """Join query architectures (cell strings or encodings) with the table.

        Returns ``(idx_in_truth, idx_in_query)``: for every query item present in the table,
        its row here and its position in ``archs``, in query order.
        """
        rows = self.lookup(archs)
        idx_query = np.flatnonzero(rows >= 0)
        return rows[idx_query], idx_query

    def values(self, name: str, archs) -> np.ndarray:
        """Column ``name`` for each query architecture; NaN where it is not in the table."""
        col = self.column(name)
        rows = self.lookup(archs)
        out = np.full(len(rows), np.nan)
        ok = rows >= 0
        out[ok] = col[rows[ok]]
        return out

    def best(self, name: str) -> Best:
        """The row with the highest value in column ``name`` (NaNs ignored)."""
        col = self.column(name)
        if len(col) == 0 or np.all(np.isnan(col)):
            raise GroundTruthError(f"column {name!r} has no values")
        row = int(np.nanargmax(col))
        return Best(row, self.archs[row], float(col[row]))


def _ids(space: SearchSpace, enc: np.ndarray):
    """Join ids: positions in the enumerated space, else :meth:`SearchSpace.key` strings."""
    return space.index(enc) if space.enumerable else [space.key(e) for e in enc]


def _query_encodings(archs, space: SearchSpace) -> np.ndarray:
    shape = tuple(space.encoding_shape)
    if isinstance(archs, str):
        return space.parse(archs)[None]
    if isinstance(archs, np.ndarray):
        if archs.shape == shape and archs.dtype.kind in "iu":
            archs = archs[None]
        if archs.dtype.kind in "iu":
            return space.validate_batch(archs.reshape((-1,) + shape) if archs.size == 0 else archs)
    return space.parse_many(list(archs))


def _parse_float(text: str) -> float | None:
    t = text.strip()
    if t.lower() in _MISSING:
        return math.nan
    try:
        return float(t)
    except ValueError:
        return None


def load_ground_truth(
    path: str | os.PathLike, columns: Sequence[str] | None = None, space: SearchSpace | str = "nb201"
) -> GroundTruth:
    """Read a ground-truth CSV of ``space`` architectures.

    Architectures come from an ``arch`` column (the space's string form) or, when there is
    none, from the space's :attr:`~fbnas_jax.spaces.base.SearchSpace.table_columns` (NB101:
    ``adjacency`` + ``ops``). ``columns``: the numeric columns to keep (an error names any
    that is absent or not numeric); by default every column other than the architecture
    columns whose values all parse as numbers (or are empty) is kept, and other text
    columns (e.g. NB101's ``nb101_hash``) are ignored.
    """
    space = get_space(space)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ground-truth CSV not found: {path!r} (expected a CSV with an 'arch' column, e.g. "
            f"../shared/data/nasbench201/nb201_cifar10_accuracy.csv)"
        )
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise GroundTruthError(f"{path}: empty file, expected a header row with an 'arch' column")
        header = [h.strip() for h in header]
        arch_cols = [ARCH_COLUMN] if ARCH_COLUMN in header else list(space.table_columns)
        if not all(c in header for c in arch_cols):
            also = (f" or the columns {list(space.table_columns)}" if tuple(space.table_columns) != (ARCH_COLUMN,)
                    else "")
            raise GroundTruthError(
                f"{path}: no {ARCH_COLUMN!r} column in the header (found {header}); a ground-truth "
                f"CSV needs an '{ARCH_COLUMN}' column of {space.name} {space.string_name}s{also}"
            )
        if len(set(header)) != len(header):
            raise GroundTruthError(f"{path}: duplicate column names in header {header}")
        if columns is not None:
            columns = list(columns)
            missing = [c for c in columns if c not in header or c in arch_cols]
            if missing:
                raise GroundTruthError(
                    f"{path}: requested column(s) {missing} not available; columns are "
                    f"{[h for h in header if h != ARCH_COLUMN]}"
                )
        arch_i = [header.index(c) for c in arch_cols]
        wanted = columns if columns is not None else [h for h in header if h not in arch_cols]
        col_i = {name: header.index(name) for name in wanted}
        values: dict[str, list[float]] = {name: [] for name in wanted}
        not_numeric: dict[str, list[tuple[int, str]]] = {}  # name -> [(line, cell)]
        archs: list[str] = []
        encs: list[np.ndarray] = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            line = reader.line_num
            if len(row) != len(header):
                raise GroundTruthError(
                    f"{path}, line {line}: {len(row)} fields, the header has {len(header)}"
                )
            try:
                if arch_cols == [ARCH_COLUMN]:
                    enc = space.from_string(row[arch_i[0]])
                else:
                    enc = space.from_table_row([row[i] for i in arch_i])
            except SearchSpaceError as err:
                raise GroundTruthError(f"{path}, line {line}: bad arch: {err}") from None
            encs.append(enc)
            archs.append(space.to_string(enc))
            for name, i in col_i.items():
                v = _parse_float(row[i])
                if v is None:
                    not_numeric.setdefault(name, []).append((line, row[i]))
                    v = math.nan
                values[name].append(v)
    n_rows = len(archs)
    text = {n: _describe_bad(bad, n_rows) for n, bad in not_numeric.items()}
    if columns is not None and text:
        name = next(iter(text))
        raise GroundTruthError(f"{path}: column {name!r} is not numeric: {text[name]}")
    for name, bad in not_numeric.items():
        if len(bad) < n_rows:  # a number column with a few bad cells; wholly-text columns are just skipped
            warnings.warn(NonNumericColumnWarning(f"{path}: column {name!r} left out: {text[name]}"),
                          stacklevel=2)
    cols = {n: np.asarray(v, dtype=np.float64) for n, v in values.items() if n not in not_numeric}
    enc_arr = np.stack(encs) if encs else np.zeros((0,) + tuple(space.encoding_shape), np.int32)
    return GroundTruth(archs=archs, encodings=enc_arr, columns=cols, source=path, space=space,
                       text_columns=text)


def _describe_bad(bad: list[tuple[int, str]], n_rows: int) -> str:
    shown = ", ".join(f"line {line} ({cell!r})" for line, cell in bad[:_SHOW_BAD])
    more = f" and {len(bad) - _SHOW_BAD} more" if len(bad) > _SHOW_BAD else ""
    return f"{len(bad)} of {n_rows} rows are not numbers: {shown}{more}"
