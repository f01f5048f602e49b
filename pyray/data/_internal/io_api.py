"""The file readers (``ray.data.read_*``) and writers (``Dataset.write_*``).

Signatures follow Ray Data 2.x.  Readers build a file datasource (which lists
the paths at once, so a missing path or an empty folder fails here) and hand
it to ``read_datasource``; writers build a file datasink and hand it to
``Dataset.write_datasink``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

from pyray.data.datasource.file_datasink import (CSVDatasink, FilenameProvider,
                                                 JSONDatasink, NumpyDatasink, ParquetDatasink)
from pyray.data.datasource.file_datasources import (BinaryDatasource, CSVDatasource,
                                                    ImageDatasource, JSONDatasource,
                                                    NumpyDatasource, TextDatasource)
from pyray.data.datasource.parquet_datasource import ParquetDatasource
from pyray.data.datasource.partitioning import Partitioning, PathPartitionFilter

Paths = Union[str, List[str]]
_PARQUET_READ_ARGS = ("filter", "schema", "batch_size", "use_threads")


def _pinned_to_this_node(ray_remote_args: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """local:// paths exist on the driver's node only: run the tasks there."""
    import pyray
    from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    if not pyray.is_initialized():
        pyray.init()
    args = dict(ray_remote_args or {})
    args["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
        pyray.get_runtime_context().get_node_id(), soft=False)
    return args


def _with_resources(ray_remote_args, num_cpus, num_gpus, memory) -> Optional[Dict[str, Any]]:
    """num_cpus=/num_gpus=/memory= of a reader (newer Ray's shortcuts) as task options."""
    given = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                               ("memory", memory)) if v is not None}
    if not given:
        return ray_remote_args
    return {**(ray_remote_args or {}), **given}


def _read(datasource, *, parallelism, override_num_blocks, ray_remote_args, concurrency):
    from pyray.data.read_api import read_datasource
    if not datasource.supports_distributed_reads:
        ray_remote_args = _pinned_to_this_node(ray_remote_args)
    return read_datasource(datasource, parallelism=parallelism,
                           override_num_blocks=override_num_blocks,
                           ray_remote_args=ray_remote_args, concurrency=concurrency)


def _file_args(filesystem, file_extensions, partitioning, partition_filter, include_paths,
               ignore_missing_paths, shuffle, arrow_open_stream_args) -> Dict[str, Any]:
    return dict(filesystem=filesystem, file_extensions=file_extensions,
                partitioning=partitioning, partition_filter=partition_filter,
                include_paths=include_paths, ignore_missing_paths=ignore_missing_paths,
                shuffle=shuffle, arrow_open_stream_args=arrow_open_stream_args)


def _only(kwargs: Dict[str, Any], allowed, fn: str) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword argument(s) {unknown}; "
                        f"the pyarrow options it takes are {sorted(allowed)}")


def read_parquet(paths: Paths, *, filesystem=None, columns: Optional[List[str]] = None,
                 parallelism: int = -1, num_cpus: Optional[float] = None,
                 num_gpus: Optional[float] = None, memory: Optional[float] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None,
                 partition_filter: Optional[PathPartitionFilter] = None,
                 partitioning: Optional[Partitioning] = Partitioning("hive"),
                 shuffle: Optional[Literal["files"]] = None, include_paths: bool = False,
                 file_extensions: Optional[List[str]] = None,
                 concurrency: Optional[int] = None, override_num_blocks: Optional[int] = None,
                 **arrow_parquet_args):
    """Parquet files, folders of them, or hive-partitioned folders.

    ``columns`` selects columns, ``filter`` (a ``pyarrow.dataset`` expression,
    partition columns included) selects rows; ``schema``, ``batch_size`` and
    ``use_threads`` go to pyarrow's scanner.
    """
    _only(arrow_parquet_args, _PARQUET_READ_ARGS, "read_parquet")
    ds = ParquetDatasource(paths, columns=columns, **arrow_parquet_args,
                           **_file_args(filesystem, file_extensions, partitioning,
                                        partition_filter, include_paths, False, shuffle, None))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_csv(paths: Paths, *, filesystem=None, parallelism: int = -1,
             num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
             memory: Optional[float] = None, ray_remote_args: Optional[Dict[str, Any]] = None,
             arrow_open_stream_args: Optional[Dict[str, Any]] = None,
             partition_filter: Optional[PathPartitionFilter] = None,
             partitioning: Optional[Partitioning] = Partitioning("hive"),
             include_paths: bool = False, ignore_missing_paths: bool = False,
             shuffle: Optional[Literal["files"]] = None,
             file_extensions: Optional[List[str]] = None, concurrency: Optional[int] = None,
             override_num_blocks: Optional[int] = None, **arrow_csv_args):
    """CSV files; ``read_options``/``parse_options``/``convert_options`` are pyarrow.csv's."""
    _only(arrow_csv_args, ("read_options", "parse_options", "convert_options"), "read_csv")
    ds = CSVDatasource(paths, **arrow_csv_args,
                       **_file_args(filesystem, file_extensions, partitioning, partition_filter,
                                    include_paths, ignore_missing_paths, shuffle,
                                    arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_json(paths: Paths, *, lines: Optional[bool] = None, filesystem=None,
              parallelism: int = -1, num_cpus: Optional[float] = None,
              num_gpus: Optional[float] = None, memory: Optional[float] = None,
              ray_remote_args: Optional[Dict[str, Any]] = None,
              arrow_open_stream_args: Optional[Dict[str, Any]] = None,
              partition_filter: Optional[PathPartitionFilter] = None,
              partitioning: Optional[Partitioning] = Partitioning("hive"),
              include_paths: bool = False, ignore_missing_paths: bool = False,
              shuffle: Optional[Literal["files"]] = None,
              file_extensions: Optional[List[str]] = JSONDatasource._FILE_EXTENSIONS,
              concurrency: Optional[int] = None, override_num_blocks: Optional[int] = None,
              **arrow_json_args):
    """JSON lines files (a file holding one JSON array of objects also reads;
    ``lines=True`` reads JSON lines only, ``lines=False`` each file as one document)."""
    _only(arrow_json_args, ("read_options", "parse_options"), "read_json")
    ds = JSONDatasource(paths, lines=lines, **arrow_json_args,
                        **_file_args(filesystem, file_extensions, partitioning,
                                     partition_filter, include_paths, ignore_missing_paths,
                                     shuffle, arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_numpy(paths: Paths, *, filesystem=None, parallelism: int = -1,
               num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
               memory: Optional[float] = None,
               ray_remote_args: Optional[Dict[str, Any]] = None,
               arrow_open_stream_args: Optional[Dict[str, Any]] = None,
               partition_filter: Optional[PathPartitionFilter] = None,
               partitioning: Optional[Partitioning] = None, include_paths: bool = False,
               ignore_missing_paths: bool = False, shuffle: Optional[Literal["files"]] = None,
               file_extensions: Optional[List[str]] = NumpyDatasource._FILE_EXTENSIONS,
               concurrency: Optional[int] = None, override_num_blocks: Optional[int] = None,
               **numpy_load_args):
    """.npy files; each element of an array's first axis is a row of column "data"."""
    ds = NumpyDatasource(paths, numpy_load_args=numpy_load_args,
                         **_file_args(filesystem, file_extensions, partitioning,
                                      partition_filter, include_paths, ignore_missing_paths,
                                      shuffle, arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_text(paths: Paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
              filesystem=None, parallelism: int = -1, num_cpus: Optional[float] = None,
              num_gpus: Optional[float] = None, memory: Optional[float] = None,
              ray_remote_args: Optional[Dict[str, Any]] = None,
              arrow_open_stream_args: Optional[Dict[str, Any]] = None,
              partition_filter: Optional[PathPartitionFilter] = None,
              partitioning: Optional[Partitioning] = None, include_paths: bool = False,
              ignore_missing_paths: bool = False, shuffle: Optional[Literal["files"]] = None,
              file_extensions: Optional[List[str]] = None, concurrency: Optional[int] = None,
              override_num_blocks: Optional[int] = None):
    """Text files, one row per line in column "text"."""
    ds = TextDatasource(paths, encoding=encoding, drop_empty_lines=drop_empty_lines,
                        **_file_args(filesystem, file_extensions, partitioning,
                                     partition_filter, include_paths, ignore_missing_paths,
                                     shuffle, arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_binary_files(paths: Paths, *, include_paths: bool = False, filesystem=None,
                      parallelism: int = -1, num_cpus: Optional[float] = None,
                      num_gpus: Optional[float] = None, memory: Optional[float] = None,
                      ray_remote_args: Optional[Dict[str, Any]] = None,
                      arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                      partition_filter: Optional[PathPartitionFilter] = None,
                      partitioning: Optional[Partitioning] = None,
                      ignore_missing_paths: bool = False,
                      shuffle: Optional[Literal["files"]] = None,
                      file_extensions: Optional[List[str]] = None,
                      concurrency: Optional[int] = None,
                      override_num_blocks: Optional[int] = None):
    """One row per file: its contents in column "bytes" (and its path in "path")."""
    ds = BinaryDatasource(paths, **_file_args(filesystem, file_extensions, partitioning,
                                              partition_filter, include_paths,
                                              ignore_missing_paths, shuffle,
                                              arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def read_images(paths: Paths, *, filesystem=None, parallelism: int = -1,
                num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                memory: Optional[float] = None,
                ray_remote_args: Optional[Dict[str, Any]] = None,
                arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                partition_filter: Optional[PathPartitionFilter] = None,
                partitioning: Optional[Partitioning] = None,
                size: Optional[Tuple[int, int]] = None, mode: Optional[str] = None,
                include_paths: bool = False, ignore_missing_paths: bool = False,
                shuffle: Optional[Literal["files"]] = None,
                file_extensions: Optional[List[str]] = ImageDatasource._FILE_EXTENSIONS,
                concurrency: Optional[int] = None, override_num_blocks: Optional[int] = None):
    """Image files decoded by Pillow into column "image" (an array per row);
    ``size=(height, width)`` resizes, ``mode=`` converts (e.g. "RGB", "L")."""
    ds = ImageDatasource(paths, size=size, mode=mode,
                         **_file_args(filesystem, file_extensions, partitioning,
                                      partition_filter, include_paths, ignore_missing_paths,
                                      shuffle, arrow_open_stream_args))
    return _read(ds, parallelism=parallelism, override_num_blocks=override_num_blocks,
                 ray_remote_args=_with_resources(ray_remote_args, num_cpus, num_gpus, memory),
                 concurrency=concurrency)


def _rows_per_file(min_rows_per_file, num_rows_per_file) -> Optional[int]:
    if min_rows_per_file is not None and num_rows_per_file is not None:
        raise ValueError("pass min_rows_per_file or num_rows_per_file (its old name), "
                         "not both")
    return min_rows_per_file if min_rows_per_file is not None else num_rows_per_file


class WriteMixin:
    """Dataset.write_parquet/csv/json/numpy: one file per write task, named
    ``{uuid}_{task_index:06}_{block_index:06}.{ext}`` as in Ray."""

    def _write_files(self, sink, ray_remote_args, concurrency):
        # (write_datasink runs a local:// sink's tasks on this node)
        return self.write_datasink(sink, ray_remote_args=ray_remote_args,
                                   concurrency=concurrency)

    def write_parquet(self, path: str, *, partition_cols: Optional[List[str]] = None,
                      filesystem=None, try_create_dir: bool = True,
                      arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                      filename_provider: Optional[FilenameProvider] = None,
                      arrow_parquet_args_fn: Optional[Callable[[], Dict[str, Any]]] = None,
                      min_rows_per_file: Optional[int] = None,
                      ray_remote_args: Optional[Dict[str, Any]] = None,
                      concurrency: Optional[int] = None,
                      num_rows_per_file: Optional[int] = None,
                      **arrow_parquet_args) -> None:
        sink = ParquetDatasink(
            path, partition_cols=partition_cols, filesystem=filesystem,
            try_create_dir=try_create_dir, open_stream_args=arrow_open_stream_args,
            filename_provider=filename_provider, arrow_parquet_args_fn=arrow_parquet_args_fn,
            arrow_parquet_args=arrow_parquet_args,
            min_rows_per_file=_rows_per_file(min_rows_per_file, num_rows_per_file))
        return self._write_files(sink, ray_remote_args, concurrency)

    def write_csv(self, path: str, *, filesystem=None, try_create_dir: bool = True,
                  arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                  filename_provider: Optional[FilenameProvider] = None,
                  arrow_csv_args_fn: Optional[Callable[[], Dict[str, Any]]] = None,
                  min_rows_per_file: Optional[int] = None,
                  ray_remote_args: Optional[Dict[str, Any]] = None,
                  concurrency: Optional[int] = None, num_rows_per_file: Optional[int] = None,
                  **arrow_csv_args) -> None:
        _only(arrow_csv_args, ("write_options",), "write_csv")
        sink = CSVDatasink(
            path, filesystem=filesystem, try_create_dir=try_create_dir,
            open_stream_args=arrow_open_stream_args, filename_provider=filename_provider,
            arrow_csv_args_fn=arrow_csv_args_fn, arrow_csv_args=arrow_csv_args,
            min_rows_per_file=_rows_per_file(min_rows_per_file, num_rows_per_file))
        return self._write_files(sink, ray_remote_args, concurrency)

    def write_json(self, path: str, *, filesystem=None, try_create_dir: bool = True,
                   arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                   filename_provider: Optional[FilenameProvider] = None,
                   pandas_json_args_fn: Optional[Callable[[], Dict[str, Any]]] = None,
                   min_rows_per_file: Optional[int] = None,
                   ray_remote_args: Optional[Dict[str, Any]] = None,
                   concurrency: Optional[int] = None, num_rows_per_file: Optional[int] = None,
                   **pandas_json_args) -> None:
        sink = JSONDatasink(
            path, filesystem=filesystem, try_create_dir=try_create_dir,
            open_stream_args=arrow_open_stream_args, filename_provider=filename_provider,
            pandas_json_args_fn=pandas_json_args_fn, pandas_json_args=pandas_json_args,
            min_rows_per_file=_rows_per_file(min_rows_per_file, num_rows_per_file))
        return self._write_files(sink, ray_remote_args, concurrency)

    def write_numpy(self, path: str, *, column: str, filesystem=None,
                    try_create_dir: bool = True,
                    arrow_open_stream_args: Optional[Dict[str, Any]] = None,
                    filename_provider: Optional[FilenameProvider] = None,
                    min_rows_per_file: Optional[int] = None,
                    ray_remote_args: Optional[Dict[str, Any]] = None,
                    concurrency: Optional[int] = None,
                    num_rows_per_file: Optional[int] = None) -> None:
        sink = NumpyDatasink(
            path, column, filesystem=filesystem, try_create_dir=try_create_dir,
            open_stream_args=arrow_open_stream_args, filename_provider=filename_provider,
            min_rows_per_file=_rows_per_file(min_rows_per_file, num_rows_per_file))
        return self._write_files(sink, ray_remote_args, concurrency)


__all__ = ["read_parquet", "read_csv", "read_json", "read_numpy", "read_text",
           "read_binary_files", "read_images", "WriteMixin"]
