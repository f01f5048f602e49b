"""read_parquet: many files, columns, filter, hive-partitioned folders.

The driver reads one footer (the first file's, for the schema every file must
match and to check ``columns``); every other footer is read by the task that
reads the file, so ten thousand small files cost one listing, not ten
thousand round trips before the first block.  (pyarrow.dataset is imported
when a parquet read is made: it costs a second at import.)
"""
from __future__ import annotations

from typing import Iterable, List, Optional

import pyarrow as pa

from pyray.data.context import DataContext
from pyray.data.datasource.file_based_datasource import (PATH_COLUMN, FileBasedDatasource,
                                                         file_error, group_by_size)
from pyray.data.datasource.partitioning import Partitioning

# bytes in memory per byte of parquet on disk (Ray uses the same guess)
_ENCODING_RATIO = 5.0
_MIN_BATCH_ROWS = 64


class ParquetDatasource(FileBasedDatasource):
    _open_kind = "none"
    _inmemory_ratio = _ENCODING_RATIO

    def __init__(self, paths, *, columns: Optional[List[str]] = None,
                 filter=None, schema: Optional[pa.Schema] = None,
                 batch_size: Optional[int] = None, use_threads: bool = False,
                 partitioning: Optional[Partitioning] = Partitioning("hive"), **kwargs):
        import pyarrow.dataset as pads
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise TypeError(f"columns must be a list of column names, not {columns!r}")
            columns = list(columns)
        if filter is not None and not isinstance(filter, pads.Expression):
            raise TypeError("filter must be a pyarrow.dataset expression such as "
                            f"pyarrow.dataset.field('x') > 3, not {type(filter).__name__}")
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(f"schema must be a pyarrow.Schema, not {type(schema).__name__}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        super().__init__(paths, partitioning=partitioning, **kwargs)
        self._columns = columns
        self._filter = filter
        self._batch_size = batch_size
        self._use_threads = use_threads
        self._format = pads.ParquetFileFormat()
        first = self._files[0][0]
        if schema is None:
            try:
                schema = self._format.make_fragment(first, self._fs).physical_schema
            except Exception as e:
                raise file_error(first, e) from e
            self._ref = (first, schema)
        else:
            self._ref = None          # the user's schema: files are cast to it
        self._file_schema = schema
        # the scan schema: the files' columns, then the partition columns
        full = schema
        for name in self._partition_values(first):
            if full.get_field_index(name) < 0:
                full = full.append(pa.field(name, self._partitioning.arrow_type(name)))
        self._scan_schema = full
        if columns is not None:
            known = set(full.names) | ({PATH_COLUMN} if self._include_paths else set())
            for c in columns:
                if c not in known:
                    raise ValueError(f"read_parquet: column {c!r} does not exist in {first}; "
                                     f"its columns are {full.names}")


    def _reference(self):
        return self._ref

    def _wanted_columns(self):
        return None if self._columns is None else set(self._columns)

    def _partition_expression(self, path: str):
        import pyarrow.dataset as pads
        expr = None
        for name, value in self._partition_values(path).items():
            e = pads.field(name) == pa.scalar(value, self._partitioning.arrow_type(name))
            expr = e if expr is None else expr & e
        return expr

    def _read_units(self, files, parallelism):
        """Whole files; when there are fewer files than tasks, the big files are cut
        into runs of row groups (their footers, and only theirs, read here)."""
        units = super()._read_units(files, parallelism)
        if len(files) >= parallelism:
            return units
        share = max(1, sum(size for _, size in files) // parallelism)
        out = []
        for (path, _), size in units:
            pieces = min(-(-size // share), parallelism)
            if pieces > 1:
                out.extend(self._row_group_runs(path, size, pieces))
            else:
                out.append(((path, None), size))
        return out

    def _row_group_runs(self, path: str, size: int, pieces: int):
        import pyarrow.parquet as pq
        try:
            md = pq.read_metadata(path, filesystem=self._fs)
        except Exception as e:
            raise file_error(path, e) from e
        groups = [(i, md.row_group(i).total_byte_size) for i in range(md.num_row_groups)]
        if len(groups) < 2:
            return [((path, None), size)]
        total = sum(b for _, b in groups) or 1
        return [((path, tuple(i for i, _ in run)), int(size * sum(b for _, b in run) / total))
                for run in group_by_size(groups, pieces)]

    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        return self._scan(path, None)

    def _read_piece(self, path: str, row_groups) -> Iterable[pa.Table]:
        return self._scan(path, list(row_groups))

    def _scan(self, path: str, row_groups) -> Iterable[pa.Table]:
        expr = self._partition_expression(path)
        kwargs = {}
        if expr is not None:
            kwargs["partition_expression"] = expr
        if row_groups is not None:
            kwargs["row_groups"] = row_groups
        frag = self._format.make_fragment(path, self._fs, **kwargs)
        self._check_schema(path, frag.physical_schema, check_types=True)
        cols = None
        if self._columns is not None:
            cols = [c for c in self._columns if c != PATH_COLUMN]
        batch_size = self._batch_size or self._rows_per_block(frag, cols)
        for batch in frag.to_batches(schema=self._scan_schema, columns=cols,
                                     filter=self._filter, batch_size=batch_size,
                                     use_threads=self._use_threads):
            if batch.num_rows:
                yield pa.Table.from_batches([batch])

    def _rows_per_block(self, frag, cols) -> int:
        """Rows that fill about one block, from the footer's uncompressed sizes."""
        target = self._max_bytes or DataContext.get_current().target_max_block_size
        md = frag.metadata
        rows = md.num_rows
        if not rows or not md.num_row_groups:
            return 1 << 17
        total = 0
        wanted = set(cols) if cols is not None else None
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            for j in range(rg.num_columns):
                col = rg.column(j)
                if wanted is None or col.path_in_schema.split(".")[0] in wanted:
                    total += col.total_uncompressed_size
        per_row = max(1.0, total / rows)
        return max(_MIN_BATCH_ROWS, int(target / per_row))
