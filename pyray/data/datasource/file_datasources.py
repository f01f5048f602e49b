"""The row-file readers: CSV, JSON, numpy, text, binary files and images.

Each reads one file with pyarrow's (or numpy's, Pillow's) reader inside a read
task; the base class does listing, grouping, block sizing and error naming.
"""
from __future__ import annotations

import io
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from pyray.data.block import batch_to_block
from pyray.data.datasource.file_based_datasource import FileBasedDatasource

_COMPRESSIONS = ("gz", "br", "zst", "lz4", "bz2")


def _with_compressed(exts: List[str]) -> List[str]:
    return exts + [f"{e}.{c}" for e in exts for c in _COMPRESSIONS]


class CSVDatasource(FileBasedDatasource):
    """CSV with pyarrow.csv, streamed block by block; every file needs the same header."""

    _FILE_EXTENSIONS = _with_compressed(["csv"])

    def __init__(self, paths, *, read_options=None, parse_options=None,
                 convert_options=None, **kwargs):
        import pyarrow.csv as pacsv
        for name, value, cls in (("read_options", read_options, pacsv.ReadOptions),
                                 ("parse_options", parse_options, pacsv.ParseOptions),
                                 ("convert_options", convert_options, pacsv.ConvertOptions)):
            if value is not None and not isinstance(value, cls):
                raise TypeError(f"{name} must be a pyarrow.csv.{cls.__name__}, "
                                f"not {type(value).__name__}")
        super().__init__(paths, **kwargs)
        self._read_options = read_options or pacsv.ReadOptions()
        self._parse_options = parse_options or pacsv.ParseOptions()
        self._convert_options = convert_options or pacsv.ConvertOptions()
        self._ref: Optional[Tuple[str, pa.Schema]] = None
        self._first_path = self._files[0][0]


    def _open_reader(self, f):
        import pyarrow.csv as pacsv
        return pacsv.open_csv(f, read_options=self._read_options,
                              parse_options=self._parse_options,
                              convert_options=self._convert_options)

    def _reference(self):
        # the first file's header, read (one block of it) by the task that needs it
        if self._ref is None:
            first = self._first_path
            with self._fs.open_input_stream(first, **self._open_args) as f:
                self._ref = (first, self._open_reader(f).schema)
        return self._ref

    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        reader = self._open_reader(f)
        self._check_schema(path, reader.schema, check_types=False)
        for batch in reader:
            yield pa.Table.from_batches([batch])


class JSONDatasource(FileBasedDatasource):
    """JSON lines with pyarrow.json; a file holding one JSON array (or object) also reads.

    ``lines=True``: JSON lines only; ``lines=False``: each file is one JSON
    document (an array of objects gives rows, an object one row); None: either.
    """

    _FILE_EXTENSIONS = _with_compressed(["json", "jsonl"])

    def __init__(self, paths, *, lines: Optional[bool] = None, read_options=None,
                 parse_options=None, **kwargs):
        import pyarrow.json as pajson
        if lines not in (None, True, False):
            raise TypeError(f"lines must be True, False or None, not {lines!r}")
        for name, value, cls in (("read_options", read_options, pajson.ReadOptions),
                                 ("parse_options", parse_options, pajson.ParseOptions)):
            if value is not None and not isinstance(value, cls):
                raise TypeError(f"{name} must be a pyarrow.json.{cls.__name__}, "
                                f"not {type(value).__name__}")
        super().__init__(paths, **kwargs)
        self._read_options = read_options
        self._parse_options = parse_options
        self._lines = lines


    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        import pyarrow.json as pajson
        data = f.read()
        if not data.strip():
            return
        if self._lines is False or (self._lines is None and data.lstrip()[:1] == b"["):
            yield self._from_python(json.loads(data))
            return
        kwargs = {}
        if self._read_options is not None:
            kwargs["read_options"] = self._read_options
        if self._parse_options is not None:
            kwargs["parse_options"] = self._parse_options
        try:
            yield pajson.read_json(io.BytesIO(data), **kwargs)
        except pa.ArrowInvalid:
            # one pretty-printed object per file is JSON too; anything else: Arrow's error
            if self._lines:
                raise
            try:
                obj = json.loads(data)
            except ValueError:
                raise
            yield self._from_python(obj)

    @staticmethod
    def _from_python(obj) -> pa.Table:
        rows = obj if isinstance(obj, list) else [obj]
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("a JSON array file must hold objects (one per row)")
        return pa.Table.from_pylist(rows)


class NumpyDatasource(FileBasedDatasource):
    """.npy files: one row per element of the first axis, in column "data"."""

    _FILE_EXTENSIONS = ["npy"]

    def __init__(self, paths, *, numpy_load_args: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(paths, **kwargs)
        self._load_args = dict(numpy_load_args or {})


    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        arr = np.load(io.BytesIO(f.read()), **self._load_args)
        if not isinstance(arr, np.ndarray):
            raise ValueError("expected one array (.npy), got "
                             f"{type(arr).__name__}; .npz archives are not read")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        yield batch_to_block({"data": arr})


class TextDatasource(FileBasedDatasource):
    """One row per line, in column "text"."""

    def __init__(self, paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
                 **kwargs):
        "".encode(encoding)          # an unknown encoding fails here, not in a task
        super().__init__(paths, **kwargs)
        self._encoding = encoding
        self._drop_empty = drop_empty_lines


    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        lines = f.read().decode(self._encoding).split("\n")
        if self._drop_empty:
            lines = [ln for ln in lines if ln.strip()]
        yield pa.table({"text": pa.array(lines, pa.string())})


class BinaryDatasource(FileBasedDatasource):
    """One row per file: its contents in column "bytes"."""


    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        yield pa.table({"bytes": pa.array([f.read()], pa.binary())})


class ImageDatasource(FileBasedDatasource):
    """One row per image file, decoded by Pillow into column "image" (height, width[, C])."""

    _FILE_EXTENSIONS = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]

    def __init__(self, paths, *, size: Optional[Tuple[int, int]] = None,
                 mode: Optional[str] = None, **kwargs):
        try:
            import PIL.Image  # noqa: F401
        except ImportError:
            raise ImportError('read_images needs Pillow: pip install "pyray[data]"') from None
        if size is not None:
            if (not isinstance(size, (tuple, list)) or len(size) != 2
                    or not all(isinstance(s, int) and s > 0 for s in size)):
                raise ValueError(f"size must be (height, width) of positive ints, not {size!r}")
            size = (int(size[0]), int(size[1]))
        super().__init__(paths, **kwargs)
        self._size = size
        self._mode = mode


    def _read_file(self, f, path: str) -> Iterable[pa.Table]:
        from PIL import Image
        image = Image.open(io.BytesIO(f.read()))
        if self._mode is not None:
            image = image.convert(self._mode)
        if self._size is not None:
            height, width = self._size
            image = image.resize((width, height), resample=Image.BILINEAR)
        arr = np.asarray(image)
        # one row; a fresh array so the leading axis has an ordinary stride
        rows = np.empty((1,) + arr.shape, dtype=arr.dtype)
        rows[0] = arr
        yield batch_to_block({"image": rows})
