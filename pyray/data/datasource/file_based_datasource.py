"""Datasources over files: list once, group files into read tasks, read in the tasks.

The driver lists the paths once (names and sizes from the same listing; no
file is opened there) and groups the files into read tasks of about equal
bytes, in path order.  Each task opens its files, streams them with
pyarrow's readers and yields Tables of at most
``DataContext.target_max_block_size`` bytes, merging small files into one
block and splitting big ones.  Every error raised while reading a file names
that file.
"""
from __future__ import annotations

import copy
import random
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.fs as pafs

from pyray.data._internal.ref_bundle import BlockMetadata
from pyray.data.context import DataContext
from pyray.data.datasource.datasource import Datasource, ReadTask
from pyray.data.datasource.partitioning import (Partitioning, PathPartitionFilter,
                                                PathPartitionParser)
from pyray.data.datasource.path_util import (is_local_scheme, list_files, no_files_error,
                                             resolve_paths_and_filesystem)

PATH_COLUMN = "path"
_DEFAULT = object()      # file_extensions not given: the datasource's own list


def file_error(path: str, err: BaseException) -> BaseException:
    """``err`` again, of the same type where possible, with the file named first."""
    msg = str(err)
    if path in msg:
        return err
    text = f"{path}: {msg}"
    if isinstance(err, FileNotFoundError):
        return FileNotFoundError(text)
    try:
        return type(err)(text)
    except Exception:
        # an exception type that needs other arguments: its nearest plain base
        for base in (ValueError, TypeError, OSError, RuntimeError):
            if isinstance(err, base):
                return base(text)
        return RuntimeError(text)


def split_table(table: pa.Table, max_bytes: int) -> Iterator[pa.Table]:
    """Slices of ``table`` of at most about ``max_bytes`` each (at least one row)."""
    n = table.num_rows
    size = table.nbytes
    if n <= 1 or size <= max_bytes:
        yield table
        return
    rows = max(1, int(n * max_bytes / size))
    for start in range(0, n, rows):
        yield table.slice(start, rows)


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a file's column type reads as the first file's without loss of meaning
    (the same type, nulls, a wider number, a string of another width)."""
    t = pa.types
    if have == want or t.is_null(have) or t.is_null(want):
        return True
    if t.is_integer(have) and (t.is_integer(want) or t.is_floating(want)):
        return True
    if t.is_floating(have) and t.is_floating(want):
        return True
    if (t.is_string(have) or t.is_large_string(have)) and (t.is_string(want) or
                                                          t.is_large_string(want)):
        return True
    return t.is_dictionary(have) and _castable(have.value_type, want)


class BlockBuffer:
    """Collects small tables and hands out blocks of at most ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._tables: List[pa.Table] = []
        self._bytes = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        for piece in split_table(table, self.max_bytes):
            if self._tables and self._bytes + piece.nbytes > self.max_bytes:
                yield from self.flush()
            self._tables.append(piece)
            self._bytes += piece.nbytes
            if self._bytes >= self.max_bytes:
                yield from self.flush()

    def flush(self) -> Iterator[pa.Table]:
        if not self._tables:
            return
        tables, self._tables, self._bytes = self._tables, [], 0
        if len(tables) == 1:
            yield tables[0]
            return
        try:
            yield pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # files whose types differ cannot share a block: keep them apart
            yield from tables


def group_by_size(files: Sequence[Tuple[str, int]], n: int) -> List[List[Tuple[str, int]]]:
    """``files`` split, in order, into at most ``n`` groups of about equal bytes."""
    if not files:
        return []
    n = max(1, min(n, len(files)))
    if n == len(files):
        return [[f] for f in files]
    total = sum(max(s, 1) for _, s in files)
    groups: List[List[Tuple[str, int]]] = []
    cur: List[Tuple[str, int]] = []
    cur_bytes = 0
    done = 0
    for i, f in enumerate(files):
        cur.append(f)
        cur_bytes += max(f[1], 1)
        left_files = len(files) - i - 1
        left_groups = n - len(groups) - 1
        target = (total - done) / (left_groups + 1)
        if left_groups and (cur_bytes >= target or left_files == left_groups):
            groups.append(cur)
            done += cur_bytes
            cur, cur_bytes = [], 0
    if cur:
        groups.append(cur)
    return groups


class FileBasedDatasource(Datasource):
    """Base of the file readers.  Subclasses implement ``_read_file``.

    ``_read_file(f, path)`` gets an open input file (``self._open_kind``
    decides random access or stream) and yields Tables; the base class adds
    partition and path columns and sizes the blocks.
    """

    _FILE_EXTENSIONS: Optional[List[str]] = None
    _open_kind = "stream"          # or "random" (seekable), or "none" (path only)
    # bytes in memory per byte on disk, for the read task size estimate
    _inmemory_ratio = 1.0
    _max_bytes: Optional[int] = None    # the driver's target_max_block_size, set per read

    def __init__(self, paths, *, filesystem: Optional[pafs.FileSystem] = None,
                 file_extensions: Optional[List[str]] = _DEFAULT,
                 partitioning: Optional[Partitioning] = None,
                 partition_filter: Optional[PathPartitionFilter] = None,
                 include_paths: bool = False, ignore_missing_paths: bool = False,
                 shuffle: Optional[str] = None,
                 arrow_open_stream_args: Optional[Dict[str, Any]] = None):
        if shuffle not in (None, "files"):
            raise ValueError(f'shuffle must be None or "files", not {shuffle!r}')
        if partitioning is not None and not isinstance(partitioning, Partitioning):
            raise TypeError("partitioning must be a pyray.data.datasource.Partitioning, "
                            f"not {type(partitioning).__name__}")
        if partition_filter is not None and not isinstance(partition_filter,
                                                           PathPartitionFilter):
            raise TypeError("partition_filter must be a PathPartitionFilter "
                            "(PathPartitionFilter.of(fn, style=...)), not "
                            f"{type(partition_filter).__name__}")
        if file_extensions is _DEFAULT:
            file_extensions = self._FILE_EXTENSIONS
        if isinstance(file_extensions, str):
            file_extensions = [file_extensions]
        self._local = is_local_scheme(paths)
        self._paths, self._fs = resolve_paths_and_filesystem(paths, filesystem)
        self._file_extensions = file_extensions
        self._partitioning = partitioning
        self._include_paths = include_paths
        self._shuffle = shuffle
        self._open_args = dict(arrow_open_stream_args or {})
        files = list_files(self._paths, self._fs, file_extensions=file_extensions,
                           ignore_missing_paths=ignore_missing_paths)
        if partition_filter is not None:
            keep = set(partition_filter([p for p, _ in files]))
            files = [f for f in files if f[0] in keep]
        if not files:
            raise no_files_error(self._paths, file_extensions, partition_filter)
        self._files: List[Tuple[str, int]] = files
        self._parser = PathPartitionParser(partitioning) if partitioning else None

    # ---- what the executor asks -------------------------------------------------
    @property
    def supports_distributed_reads(self) -> bool:
        return not self._local

    @property
    def file_paths(self) -> List[str]:
        return [p for p, _ in self._files]

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return int(sum(s for _, s in self._files) * self._inmemory_ratio)

    def get_read_tasks(self, parallelism: int) -> List[ReadTask]:
        files = list(self._files)
        if self._shuffle == "files":
            random.shuffle(files)
        ctx = DataContext.get_current()
        max_bytes = ctx.target_max_block_size
        if parallelism is None or parallelism < 1:
            parallelism = self._default_parallelism(ctx)
        # what each task carries: this reader without the listing of every file
        reader = copy.copy(self)
        reader._files = None
        reader._max_bytes = max_bytes
        tasks = []
        for group in group_by_size(self._read_units(files, parallelism), parallelism):
            units = [u for u, _ in group]
            paths = list(dict.fromkeys(path for path, _ in units))
            meta = BlockMetadata(
                num_rows=None,
                size_bytes=int(sum(s for _, s in group) * self._inmemory_ratio),
                schema=None, input_files=paths)
            tasks.append(ReadTask(reader._make_read_fn(units, max_bytes), meta))
        return tasks

    def _read_units(self, files: List[Tuple[str, int]], parallelism: int) -> list:
        """What the tasks read: ((path, piece), bytes) with piece None for a whole
        file; a subclass may cut big files into pieces when there are few files."""
        return [((path, None), size) for path, size in files]

    def _default_parallelism(self, ctx: DataContext) -> int:
        """Read tasks when none was asked for: up to ``read_op_min_num_blocks``,
        but none reading less than about ``target_min_block_size``."""
        total = self.estimate_inmemory_data_size() or 0
        by_size = -(-total // max(1, ctx.target_min_block_size))
        return max(1, min(len(self._files), ctx.read_op_min_num_blocks, by_size))

    def _make_read_fn(self, units: list, max_bytes: int):
        def read_fn() -> Iterable[pa.Table]:
            return self._read_units_of_task(units, max_bytes)
        return read_fn

    # ---- files that must agree --------------------------------------------------
    def _reference(self) -> Optional[Tuple[str, pa.Schema]]:
        """(first file, its schema) that every other file must match, or None."""
        return None

    def _check_schema(self, path: str, schema: pa.Schema, *, check_types: bool) -> None:
        """Raise ValueError naming both files and the column where ``schema`` differs."""
        ref = self._reference()
        if ref is None or ref[0] == path:
            return
        ref_path, ref_schema = ref
        wanted = self._wanted_columns()
        for field in ref_schema:
            if wanted is not None and field.name not in wanted:
                continue
            idx = schema.get_field_index(field.name)
            if idx < 0:
                raise ValueError(
                    f"schema mismatch: column {field.name!r} is in {ref_path} but not in "
                    f"{path}; read the files separately or make their columns agree")
            other = schema.field(idx).type
            if check_types and not _castable(other, field.type):
                raise ValueError(
                    f"schema mismatch: column {field.name!r} is {field.type} in {ref_path} "
                    f"but {other} in {path}; cast the files to one type or pass schema=")
        if wanted is None:
            extra = [n for n in schema.names if ref_schema.get_field_index(n) < 0]
            if extra:
                raise ValueError(
                    f"schema mismatch: column {extra[0]!r} is in {path} but not in "
                    f"{ref_path}; read the files separately or select columns=")

    def _wanted_columns(self) -> Optional[set]:
        return None

    # ---- inside the read task ---------------------------------------------------
    def _read_units_of_task(self, units: list, max_bytes: int) -> Iterator[pa.Table]:
        buf = BlockBuffer(max_bytes)
        for path, piece in units:
            for table in self._read_one(path, piece):
                if table.num_rows:
                    yield from buf.add(table)
        yield from buf.flush()

    def _read_one(self, path: str, piece=None) -> Iterator[pa.Table]:
        try:
            if piece is not None:
                for t in self._read_piece(path, piece):
                    yield self._decorate(t, path)
                return
            if self._open_kind == "none":
                tables = self._read_file(None, path)
                for t in tables:
                    yield self._decorate(t, path)
                return
            opener = (self._fs.open_input_file if self._open_kind == "random"
                      else self._fs.open_input_stream)
            kwargs = self._open_args if self._open_kind == "stream" else {}
            with opener(path, **kwargs) as f:
                for t in self._read_file(f, path):
                    yield self._decorate(t, path)
        except GeneratorExit:
            raise
        except Exception as e:
            raise file_error(path, e) from e

    def _partition_values(self, path: str) -> Dict[str, Any]:
        if self._parser is None:
            return {}
        return self._parser.typed(self._parser(path))

    def _decorate(self, table: pa.Table, path: str) -> pa.Table:
        wanted = self._wanted_columns()
        for name, value in self._partition_values(path).items():
            if name not in table.column_names and (wanted is None or name in wanted):
                t = self._partitioning.arrow_type(name)
                table = table.append_column(name, pa.array([value] * table.num_rows, t))
        if self._include_paths and PATH_COLUMN not in table.column_names:
            table = table.append_column(PATH_COLUMN, pa.array([path] * table.num_rows,
                                                              pa.string()))
        return table

    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        raise NotImplementedError(f"{type(self).__name__}._read_file")

    def _read_piece(self, path: str, piece) -> Iterable[pa.Table]:
        raise NotImplementedError(f"{type(self).__name__} does not read files in pieces")
