"""Ground truth of NAS-Bench-201 from a CSV file (pure Python/NumPy, no pandas).

Any CSV with a header row, an ``arch`` column holding NB201 cell strings and any number of
numeric columns works, e.g. ``../shared/data/nasbench201/nb201_cifar10_accuracy.csv``
(``index, arch, cifar10_test_200ep, cifar10_valid_val_12ep, cifar10_test_12ep``)::

    gt = load_ground_truth("nb201_cifar10_accuracy.csv")
    acc = gt.column("cifar10_test_200ep")          # float64, one value per row
    rows = gt.lookup(encodings)                     # row index per encoding, -1 if absent
    i_truth, i_query = gt.align(cell_strings)       # join by architecture
    gt.best("cifar10_test_200ep")                   # Best(row=..., arch=..., value=94.3733)

Rows are joined by architecture (the encoding parsed from the cell string), never by the
benchmark's index, whose order differs from :func:`fbnas_jax.spaces.nb201.all_encodings`.
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from fbnas_jax.spaces.nb201 import (
    NUM_ARCHS,
    NUM_EDGES,
    SearchSpaceError,
    encoding_to_index,
    encoding_to_string,
    parse_archs,
    string_to_encoding,
    validate_encodings,
)

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
    encodings: np.ndarray  # (n, 6) int32
    columns: dict[str, np.ndarray]  # name -> (n,) float64
    source: str = ""
    _row_of: np.ndarray = field(default=None, repr=False, compare=False)  # (15625,) int64
    #: columns left out because some values are not numbers -> which rows (for messages)
    text_columns: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        enc = validate_encodings(np.asarray(self.encodings).reshape(-1, NUM_EDGES))
        if len(self.archs) != len(enc):
            raise GroundTruthError(f"{len(self.archs)} archs but {len(enc)} encodings")
        for name, col in self.columns.items():
            if len(col) != len(enc):
                raise GroundTruthError(f"column {name!r} has {len(col)} values for {len(enc)} rows")
        row_of = np.full(NUM_ARCHS, -1, dtype=np.int64)
        flat = encoding_to_index(enc)
        uniq, first, counts = np.unique(flat, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = int(uniq[counts > 1][0])
            rows = np.flatnonzero(flat == dup).tolist()
            raise GroundTruthError(
                f"{self.source or 'ground truth'}: architecture {self.archs[rows[0]]!r} appears in "
                f"{len(rows)} rows (data rows {rows[:5]}); each architecture must appear once"
            )
        row_of[uniq] = first
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
        """Row index of each architecture (encodings ``(n, 6)`` or cell strings), -1 if absent."""
        enc = _query_encodings(encodings)
        return self._row_of[encoding_to_index(enc)] if len(enc) else np.zeros(0, np.int64)

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


def _query_encodings(archs) -> np.ndarray:
    if isinstance(archs, str):
        return string_to_encoding(archs)[None]
    if isinstance(archs, np.ndarray):
        if archs.ndim == 1 and archs.shape == (NUM_EDGES,) and archs.dtype.kind in "iu":
            archs = archs[None]
        if archs.dtype.kind in "iu":
            return validate_encodings(archs.reshape(-1, NUM_EDGES) if archs.size == 0 else archs)
    return parse_archs(list(archs))


def _parse_float(text: str) -> float | None:
    t = text.strip()
    if t.lower() in _MISSING:
        return math.nan
    try:
        return float(t)
    except ValueError:
        return None


def load_ground_truth(
    path: str | os.PathLike, columns: Sequence[str] | None = None
) -> GroundTruth:
    """Read a ground-truth CSV with an ``arch`` column of NB201 cell strings.

    ``columns``: the numeric columns to keep (an error names any that is absent or not
    numeric); by default every column other than ``arch`` whose values all parse as
    numbers (or are empty) is kept, and other text columns are ignored.
    """
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
        if ARCH_COLUMN not in header:
            raise GroundTruthError(
                f"{path}: no {ARCH_COLUMN!r} column in the header (found {header}); a ground-truth "
                f"CSV needs an '{ARCH_COLUMN}' column of NB201 cell strings"
            )
        if len(set(header)) != len(header):
            raise GroundTruthError(f"{path}: duplicate column names in header {header}")
        if columns is not None:
            columns = list(columns)
            missing = [c for c in columns if c not in header or c == ARCH_COLUMN]
            if missing:
                raise GroundTruthError(
                    f"{path}: requested column(s) {missing} not available; columns are "
                    f"{[h for h in header if h != ARCH_COLUMN]}"
                )
        arch_i = header.index(ARCH_COLUMN)
        wanted = columns if columns is not None else [h for h in header if h != ARCH_COLUMN]
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
                enc = string_to_encoding(row[arch_i])
            except SearchSpaceError as err:
                raise GroundTruthError(f"{path}, line {line}: bad arch: {err}") from None
            encs.append(enc)
            archs.append(encoding_to_string(enc))
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
    enc_arr = np.stack(encs) if encs else np.zeros((0, NUM_EDGES), np.int32)
    return GroundTruth(archs=archs, encodings=enc_arr, columns=cols, source=path, text_columns=text)


def _describe_bad(bad: list[tuple[int, str]], n_rows: int) -> str:
    shown = ", ".join(f"line {line} ({cell!r})" for line, cell in bad[:_SHOW_BAD])
    more = f" and {len(bad) - _SHOW_BAD} more" if len(bad) > _SHOW_BAD else ""
    return f"{len(bad)} of {n_rows} rows are not numbers: {shown}{more}"
