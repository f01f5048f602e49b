"""Datasinks that write files: one file per write task, named as Ray names them.

A file is first written under a hidden temporary name (readers skip names
starting with ``.``) and renamed when complete, so a reader never sees half a
file.  When the write fails, ``on_write_failed`` removes every file this write
produced (all carry the write's uuid), so no partial output is left looking
complete.
"""
from __future__ import annotations

import logging
import posixpath
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional

import pyarrow as pa
import pyarrow.fs as pafs

from pyray.data.block import BlockAccessor, concat_blocks
from pyray.data.datasource.datasink import Datasink, TaskContext, WriteResult
from pyray.data.datasource.path_util import is_local_scheme, resolve_paths_and_filesystem

logger = logging.getLogger(__name__)
_TMP_PREFIX = ".tmp-"
_STREAM_BUFFER = 1 << 20


class FilenameProvider:
    """Names the files of a write (Ray's ``FilenameProvider``).

    Names must be unique and deterministic for a given task and block index.
    """

    def get_filename_for_block(self, block: pa.Table, task_index: int, block_index: int) -> str:
        raise NotImplementedError(f"{type(self).__name__}.get_filename_for_block")

    def get_filename_for_row(self, row: Dict[str, Any], task_index: int, block_index: int,
                             row_index: int) -> str:
        raise NotImplementedError(f"{type(self).__name__}.get_filename_for_row")


class _DefaultFilenameProvider(FilenameProvider):
    """``{dataset_uuid}_{task_index:06}_{block_index:06}.{file_format}``."""

    def __init__(self, dataset_uuid: Optional[str] = None, file_format: Optional[str] = None):
        self._dataset_uuid = dataset_uuid
        self._file_format = file_format

    def get_filename_for_block(self, block, task_index, block_index):
        return self._name(f"{task_index:06}_{block_index:06}")

    def get_filename_for_row(self, row, task_index, block_index, row_index):
        return self._name(f"{task_index:06}_{block_index:06}_{row_index:06}")

    def _name(self, file_id: str) -> str:
        name = f"{self._dataset_uuid}_{file_id}" if self._dataset_uuid else file_id
        return f"{name}.{self._file_format}" if self._file_format else name


class BlockBasedFileDatasink(Datasink):
    """Writes the blocks of each write task into one file.  Subclasses implement
    ``write_block_to_file(table, file)``."""

    def __init__(self, path: str, *, filesystem: Optional[pafs.FileSystem] = None,
                 try_create_dir: bool = True,
                 open_stream_args: Optional[Dict[str, Any]] = None,
                 filename_provider: Optional[FilenameProvider] = None,
                 dataset_uuid: Optional[str] = None, file_format: Optional[str] = None,
                 min_rows_per_file: Optional[int] = None):
        if not isinstance(path, str):
            raise TypeError(f"path must be a string naming a directory, not {path!r}")
        if filename_provider is not None and not isinstance(filename_provider,
                                                            FilenameProvider):
            raise TypeError("filename_provider must be a FilenameProvider, not "
                            f"{type(filename_provider).__name__}")
        if min_rows_per_file is not None and (not isinstance(min_rows_per_file, int)
                                              or min_rows_per_file < 1):
            raise ValueError(f"min_rows_per_file must be a positive int, not "
                             f"{min_rows_per_file!r}")
        self._local = is_local_scheme(path)
        paths, self.filesystem = resolve_paths_and_filesystem(path, filesystem)
        self.path = paths[0]
        self.unresolved_path = path
        self.try_create_dir = try_create_dir
        # a buffered stream: the writers make many small writes
        self.open_stream_args = {"buffer_size": _STREAM_BUFFER, **(open_stream_args or {})}
        self.dataset_uuid = dataset_uuid or uuid.uuid4().hex
        self.file_format = file_format
        self.filename_provider = filename_provider or _DefaultFilenameProvider(
            self.dataset_uuid, file_format)
        self._min_rows = min_rows_per_file
        self.has_created_dir = False

    # ---- driver side ------------------------------------------------------------
    def on_write_start(self) -> None:
        info = self.filesystem.get_file_info(self.path)
        if info.type == pafs.FileType.File:
            raise FileExistsError(f"cannot write into {self.path!r}: it is a file, "
                                  "not a directory")
        if info.type == pafs.FileType.NotFound:
            if not self.try_create_dir:
                raise FileNotFoundError(f"output directory {self.path!r} does not exist "
                                        "(and try_create_dir=False)")
            self.filesystem.create_dir(self.path, recursive=True)
            self.has_created_dir = True

    def on_write_complete(self, write_result: WriteResult) -> None:
        if self.has_created_dir and write_result.num_rows == 0:
            self._remove_dir_if_empty()

    def on_write_failed(self, error: Exception) -> None:
        removed = self._remove_own_files()
        if removed:
            logger.warning("write to %s failed; removed the %d file(s) it had written",
                           self.path, removed)
        if self.has_created_dir:
            self._remove_dir_if_empty()

    def _remove_own_files(self) -> int:
        try:
            infos = self.filesystem.get_file_info(
                pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        except OSError:
            return 0
        marks = (self.dataset_uuid, _TMP_PREFIX)
        n = 0
        for info in infos:
            if info.type == pafs.FileType.File and any(
                    m in posixpath.basename(info.path) for m in marks):
                try:
                    self.filesystem.delete_file(info.path)
                    n += 1
                except OSError:
                    pass
        return n

    def _remove_dir_if_empty(self) -> None:
        try:
            left = self.filesystem.get_file_info(
                pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
            if not any(i.type == pafs.FileType.File for i in left):
                self.filesystem.delete_dir(self.path)
        except OSError:
            pass

    @property
    def supports_distributed_writes(self) -> bool:
        return not self._local

    @property
    def min_rows_per_write(self) -> Optional[int]:
        return self._min_rows

    # ---- inside the write task --------------------------------------------------
    def write(self, blocks: Iterable, ctx: TaskContext) -> List[str]:
        tables = [b if isinstance(b, pa.Table) else BlockAccessor.for_block(b).to_arrow()
                  for b in blocks]
        table = concat_blocks(tables)
        if table.num_rows == 0:
            return []
        return self.write_table(table, ctx.task_idx)

    def write_table(self, table: pa.Table, task_index: int) -> List[str]:
        name = self.filename_provider.get_filename_for_block(table, task_index, 0)
        return [self._write_file(posixpath.join(self.path, name), table)]

    def _write_file(self, final: str, table: pa.Table) -> str:
        """Write under a hidden name, then rename: the final name only ever holds
        a whole file."""
        parent, name = posixpath.split(final)
        tmp = posixpath.join(parent, f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}")
        if parent != self.path or self.try_create_dir:
            # (a write task may run where on_write_start's directory is not seen yet)
            self.filesystem.create_dir(parent, recursive=True)
        try:
            with self.filesystem.open_output_stream(tmp, **self.open_stream_args) as f:
                self.write_block_to_file(table, f)
            self.filesystem.move(tmp, final)
        except BaseException:
            try:
                self.filesystem.delete_file(tmp)
            except OSError:
                pass
            raise
        return final

    def write_block_to_file(self, table: pa.Table, file) -> None:
        raise NotImplementedError(f"{type(self).__name__}.write_block_to_file")


def _writer_args(fixed: Dict[str, Any], args_fn: Optional[Callable[[], Dict[str, Any]]],
                 what: str) -> Dict[str, Any]:
    args = dict(fixed)
    if args_fn is not None:
        extra = args_fn()
        if not isinstance(extra, dict):
            raise TypeError(f"{what} must return a dict of keyword arguments, not "
                            f"{type(extra).__name__}")
        args.update(extra)
    return args


def _dictionary_columns(schema: pa.Schema) -> Optional[List[str]]:
    """The Parquet leaf columns to dictionary-encode: all but floating point ones
    (on floats the encoder nearly always gives up after trying, which costs two
    to three times the write).  None (pyarrow's default) for nesting other than
    lists of scalars."""
    t = pa.types
    columns = []
    for field in schema:
        typ = (field.type.storage_type if isinstance(field.type, pa.BaseExtensionType)
               else field.type)
        if t.is_list(typ) or t.is_large_list(typ) or t.is_fixed_size_list(typ):
            leaf, path = typ.value_type, f"{field.name}.list.element"
        else:
            leaf, path = typ, field.name
        if t.is_nested(leaf):
            return None
        if not t.is_floating(leaf):
            columns.append(path)
    return columns


def _parquet_writer_args() -> set:
    """The keyword arguments pyarrow.parquet.write_table takes (itself or its writer)."""
    import inspect

    import pyarrow.parquet as pq
    names = set(inspect.signature(pq.write_table).parameters)
    names |= set(inspect.signature(pq.ParquetWriter.__init__).parameters)
    return names - {"self", "table", "where", "schema", "filesystem", "kwargs", "options"}


class ParquetDatasink(BlockBasedFileDatasink):
    """pyarrow.parquet.write_table; with ``partition_cols``, hive folders
    ``col=value/`` holding the rows of each value (those columns left out of the file)."""

    def __init__(self, path: str, *, partition_cols: Optional[List[str]] = None,
                 arrow_parquet_args_fn: Optional[Callable[[], Dict[str, Any]]] = None,
                 arrow_parquet_args: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(path, file_format="parquet", **kwargs)
        if partition_cols is not None:
            if isinstance(partition_cols, str) or not partition_cols:
                raise ValueError("partition_cols must be a non-empty list of column names")
            partition_cols = list(partition_cols)
        self.partition_cols = partition_cols
        self._args = dict(arrow_parquet_args or {})
        unknown = sorted(set(self._args) - _parquet_writer_args())
        if unknown:
            raise TypeError(f"write_parquet() got unexpected keyword argument(s) {unknown}; "
                            "other keyword arguments go to pyarrow.parquet.write_table")
        self._args_fn = arrow_parquet_args_fn


    def write_table(self, table: pa.Table, task_index: int) -> List[str]:
        if not self.partition_cols:
            return super().write_table(table, task_index)
        missing = [c for c in self.partition_cols if c not in table.column_names]
        if missing:
            raise ValueError(f"write_parquet: partition column(s) {missing} do not exist; "
                             f"the columns are {table.column_names}")
        keys = table.select(self.partition_cols).group_by(self.partition_cols).aggregate([])
        import pyarrow.compute as pc
        rest = [c for c in table.column_names if c not in self.partition_cols]
        written = []
        for i, key in enumerate(keys.to_pylist()):
            mask = None
            for col, val in key.items():
                m = pc.is_null(table[col]) if val is None else pc.equal(table[col], val)
                mask = m if mask is None else pc.and_(mask, m)
            part = table.filter(mask).select(rest)
            sub = "/".join(f"{c}={key[c]}" for c in self.partition_cols)
            name = self.filename_provider.get_filename_for_block(part, task_index, i)
            written.append(self._write_file(posixpath.join(self.path, sub, name), part))
        return written

    def write_block_to_file(self, table: pa.Table, file) -> None:
        import pyarrow.parquet as pq
        args = _writer_args(self._args, self._args_fn, "arrow_parquet_args_fn")
        if "use_dictionary" not in args:
            columns = _dictionary_columns(table.schema)
            if columns is not None:
                args["use_dictionary"] = columns
        pq.write_table(table, file, **args)


class CSVDatasink(BlockBasedFileDatasink):
    def __init__(self, path: str, *, arrow_csv_args_fn=None,
                 arrow_csv_args: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(path, file_format="csv", **kwargs)
        self._args = dict(arrow_csv_args or {})
        self._args_fn = arrow_csv_args_fn


    def write_block_to_file(self, table: pa.Table, file) -> None:
        import pyarrow.csv as pacsv
        pacsv.write_csv(table, file, **_writer_args(self._args, self._args_fn,
                                                    "arrow_csv_args_fn"))


class JSONDatasink(BlockBasedFileDatasink):
    """JSON lines through pandas ``to_json(orient="records", lines=True)``, as Ray."""

    def __init__(self, path: str, *, pandas_json_args_fn=None,
                 pandas_json_args: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(path, file_format="json", **kwargs)
        self._args = {"orient": "records", "lines": True, **(pandas_json_args or {})}
        import inspect

        from pyray.data.block import require_pandas
        known = set(inspect.signature(require_pandas("write_json").DataFrame.to_json).parameters)
        unknown = sorted(set(self._args) - (known - {"self", "path_or_buf"}))
        if unknown:
            raise TypeError(f"write_json() got unexpected keyword argument(s) {unknown}; "
                            "other keyword arguments go to pandas.DataFrame.to_json")
        self._args_fn = pandas_json_args_fn


    def write_block_to_file(self, table: pa.Table, file) -> None:
        df = BlockAccessor(table).to_pandas()
        args = _writer_args(self._args, self._args_fn, "pandas_json_args_fn")
        text = df.to_json(**args)
        file.write(text.encode("utf-8"))


class NumpyDatasink(BlockBasedFileDatasink):
    """One ``.npy`` per write task holding ``column`` (rows along the first axis)."""

    def __init__(self, path: str, column: str, **kwargs):
        if not isinstance(column, str):
            raise TypeError(f"write_numpy needs column=<name of the column to save>, "
                            f"not {column!r}")
        super().__init__(path, file_format="npy", **kwargs)
        self.column = column


    def write_block_to_file(self, table: pa.Table, file) -> None:
        import numpy as np
        if self.column not in table.column_names:
            raise ValueError(f"write_numpy: column {self.column!r} does not exist; the "
                             f"columns are {table.column_names}")
        arr = BlockAccessor(table).to_numpy([self.column])[self.column]
        np.save(file, arr, allow_pickle=False)
