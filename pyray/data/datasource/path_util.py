"""Paths to files: which filesystem a path lives on and which files it names.

A path may be a local path, ``file://...`` (the same), ``local://...`` (a
local path that only the driver's node can see: reads and writes run there),
or any URI ``pyarrow.fs.FileSystem.from_uri`` understands (``s3://``,
``gs://``, ``hdfs://``...).  A directory stands for every file below it;
names starting with ``.`` or ``_`` (``_SUCCESS``, hidden files, unfinished
writes) are skipped, as Ray does.
"""
from __future__ import annotations

import os
import posixpath
from typing import List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import pyarrow.fs as pafs

LOCAL_SCHEME = "local://"
FILE_SCHEME = "file://"
_SKIP_PREFIXES = (".", "_")


def _as_list(paths: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    if not isinstance(paths, (list, tuple)) or not paths:
        raise ValueError(f"paths must be a path or a non-empty list of paths, not {paths!r}")
    out = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise ValueError(f"every path must be a string, not {type(p).__name__} ({p!r})")
        out.append(os.fspath(p))
    return out


def is_local_scheme(paths: Union[str, Sequence[str]]) -> bool:
    """True when the paths use ``local://`` (all or none of them must)."""
    plist = _as_list(paths)
    flags = {p.startswith(LOCAL_SCHEME) for p in plist}
    if len(flags) > 1:
        raise ValueError("either all paths use the local:// scheme or none does: "
                         f"{plist[:4]}")
    return flags.pop()


def resolve_paths_and_filesystem(
        paths: Union[str, Sequence[str]],
        filesystem: Optional[pafs.FileSystem] = None,
) -> Tuple[List[str], pafs.FileSystem]:
    """The paths as the filesystem names them, and the filesystem."""
    plist = _as_list(paths)
    if filesystem is not None and not isinstance(filesystem, pafs.FileSystem):
        raise TypeError("filesystem must be a pyarrow.fs.FileSystem, not "
                        f"{type(filesystem).__name__}")
    resolved = []
    for p in plist:
        if p.startswith(LOCAL_SCHEME):
            p = p[len(LOCAL_SCHEME):]
            fs = filesystem or pafs.LocalFileSystem()
        elif p.startswith(FILE_SCHEME):
            p = p[len(FILE_SCHEME):]
            fs = filesystem or pafs.LocalFileSystem()
        elif filesystem is not None:
            fs = filesystem
            if "://" in p:          # the filesystem is given: the scheme only names it
                parsed = urlparse(p)
                p = parsed.netloc + parsed.path
        elif "://" in p:
            try:
                fs, p = pafs.FileSystem.from_uri(p)
            except (ValueError, OSError) as e:
                raise ValueError(f"cannot find a filesystem for {p!r}: {e}") from None
        else:
            fs = pafs.LocalFileSystem()
        if isinstance(fs, pafs.LocalFileSystem):
            p = os.path.abspath(os.path.expanduser(p))
        if filesystem is None:
            filesystem = fs
        elif type(fs) is not type(filesystem):
            raise ValueError(f"all paths must be on one filesystem; {p!r} is on "
                             f"{type(fs).__name__}, earlier ones on {type(filesystem).__name__}")
        resolved.append(p)
    return resolved, filesystem


def _skipped(name: str) -> bool:
    return posixpath.basename(name).startswith(_SKIP_PREFIXES)


def _has_extension(path: str, exts: Optional[Sequence[str]]) -> bool:
    if exts is None:
        return True
    low = path.lower()
    return any(low.endswith("." + e.lower().lstrip(".")) for e in exts)


def list_files(paths: Sequence[str], fs: pafs.FileSystem, *,
               file_extensions: Optional[Sequence[str]] = None,
               ignore_missing_paths: bool = False) -> List[Tuple[str, int]]:
    """(path, size in bytes) of every file the paths name, from one listing each.

    Files (named or found inside directories) are kept when their extension is
    in ``file_extensions`` (all of them when it is None), as in Ray.
    Raises FileNotFoundError naming a path that does not exist.
    """
    out: List[Tuple[str, int]] = []
    infos = fs.get_file_info(list(paths))
    for p, info in zip(paths, infos):
        if info.type == pafs.FileType.NotFound:
            if ignore_missing_paths:
                continue
            raise FileNotFoundError(f"no such file or directory: {p!r}")
        if info.type == pafs.FileType.File:
            if not _has_extension(p, file_extensions):
                continue
            out.append((info.path if not isinstance(fs, pafs.LocalFileSystem) else p,
                        info.size or 0))
            continue
        sel = pafs.FileSelector(p, recursive=True, allow_not_found=ignore_missing_paths)
        found = []
        base = p.rstrip("/")
        for child in fs.get_file_info(sel):
            if child.type != pafs.FileType.File:
                continue
            rel = child.path[len(base):].lstrip("/") if child.path.startswith(base) else child.path
            if any(part.startswith(_SKIP_PREFIXES) for part in rel.split("/")):
                continue
            if not _has_extension(child.path, file_extensions):
                continue
            found.append((child.path, child.size or 0))
        found.sort()
        out.extend(found)
    return out


def no_files_error(paths: Sequence[str], file_extensions, partition_filter=None) -> ValueError:
    shown = ", ".join(repr(p) for p in list(paths)[:3]) + (" ..." if len(paths) > 3 else "")
    if partition_filter is not None:
        hint = "; check that partition_filter is set properly"
    elif file_extensions:
        hint = "; pass file_extensions=None to read files of any extension"
    else:
        hint = ""
    what = (f" with the following file extensions: {list(file_extensions)}"
            if file_extensions else "")
    return ValueError(f"No input files found to read{what} (paths: {shown}){hint}")
