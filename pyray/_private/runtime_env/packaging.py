"""Packages of a runtime env: local folders and zips are packed once by the
submitting process, uploaded once to the GCS key-value store in chunks
(``pkg://<sha>`` URIs), and unpacked once per node into a folder named by
the hash (node_setup.py calls fetch_and_unpack)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from fnmatch import fnmatch

from pyray import exceptions as exc

SCHEME = "pkg://"
CHUNK = 4 << 20
# the largest package (a working_dir or a py_module); Ray's limit is 500 MiB
MAX_PACKAGE_BYTES = int(os.environ.get("PYRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES", 500 << 20))
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)     # fixed: the same files give the same hash


class MissingPathError(exc.RuntimeEnvSetupError, ValueError):
    """A local path named by a runtime env does not exist (a ValueError too,
    as the submitting side raises it)."""


def kv_key(sha, part):
    return f"runtime_env_pkg:{sha}:{part}"


def _excluded(rel, name, is_dir, patterns):
    for pat in patterns:
        p = pat.strip()
        if not p:
            continue
        anchored = p.startswith("/")
        p = p.strip("/")
        if pat.endswith("/") and not is_dir:
            continue
        if fnmatch(rel, p) or (not anchored and fnmatch(name, p)):
            return True
        if rel.startswith(p + "/"):
            return True
    return False


def pack_dir(path, excludes=(), prefix="", limit=None):
    """Zips a folder (its contents at the top level, or under `prefix`),
    leaving out the `excludes` patterns (relative paths or names, * and ?
    allowed; 'dir/' matches folders only).  Deterministic: the bytes and so
    the hash depend only on the files.  Raises RuntimeError when the files
    exceed `limit` bytes."""
    limit = MAX_PACKAGE_BYTES if limit is None else limit
    files = []
    total = 0
    for root, dirs, names in os.walk(path):
        rel_root = os.path.relpath(root, path)
        rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/")
        keep = []
        for d in sorted(dirs):
            rel = f"{rel_root}/{d}" if rel_root else d
            if d == "__pycache__" or _excluded(rel, d, True, excludes):
                continue
            keep.append(d)
        dirs[:] = keep
        for n in sorted(names):
            rel = f"{rel_root}/{n}" if rel_root else n
            if _excluded(rel, n, False, excludes):
                continue
            full = os.path.join(root, n)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > limit:
                raise RuntimeError(_too_large(path, total, limit, partial=True))
            files.append((rel, full, st.st_mode))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for rel, full, mode in sorted(files):
            info = zipfile.ZipInfo(prefix + rel, _ZIP_TIME)
            info.external_attr = (mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                z.writestr(info, f.read())
    data = buf.getvalue()
    if len(data) > limit:
        raise RuntimeError(_too_large(path, len(data), limit))
    return data


def _too_large(path, size, limit, partial=False):
    mib = 1 << 20
    more = "at least " if partial else ""
    return (f"The runtime_env package {path!r} is {more}{size / mib:.2f} MiB, more than the "
            f"limit of {limit / mib:.2f} MiB (PYRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES). Leave out "
            "large files with runtime_env['excludes'].")


def _pack(path, excludes, top_level, what):
    if path.startswith(SCHEME):
        return None, path
    if "://" in path:
        raise ValueError(f"runtime_env[{what!r}]: remote URI {path!r} is not supported by "
                         f"pyray (local folders, .zip files and {SCHEME} URIs are)")
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        prefix = os.path.basename(full.rstrip(os.sep)) + "/" if top_level else ""
        return pack_dir(full, excludes, prefix), full
    if os.path.isfile(full) and full.endswith(".zip"):
        size = os.path.getsize(full)
        if size > MAX_PACKAGE_BYTES:
            raise RuntimeError(_too_large(full, size, MAX_PACKAGE_BYTES))
        with open(full, "rb") as f:
            return f.read(), full
    if os.path.exists(full):
        raise ValueError(f"runtime_env[{what!r}]: {path!r} must be a folder or a .zip file")
    raise MissingPathError(f"runtime_env[{what!r}]: the local path {path!r} does not exist "
                           f"(resolved to {full!r}); it must be an existing folder or .zip "
                           "file.")


_uploaded = {}      # (path, excludes, top_level) -> uri, for this process's life


def upload(path, excludes, top_level, what, cw):
    """The pkg:// URI of a local folder or zip, uploaded if the cluster does
    not have it yet."""
    ck = (path, tuple(excludes), top_level)
    uri = _uploaded.get(ck)
    if uri is not None:
        return uri
    data, _full = _pack(path, excludes, top_level, what)
    if data is None:
        return _full          # already a URI
    sha = hashlib.sha256(data).hexdigest()[:32]
    from pyray._private.protocol import Op
    gcs = cw.gcs_addr
    if cw.rpc(gcs, Op.KV_GET, kv_key(sha, "meta")) is None:
        n = 0
        for off in range(0, len(data), CHUNK):
            cw.rpc(gcs, Op.KV_PUT, kv_key(sha, n), data[off:off + CHUNK], True)
            n += 1
        cw.rpc(gcs, Op.KV_PUT, kv_key(sha, "meta"),
               {"chunks": n, "size": len(data), "top_level": top_level}, True)
    uri = SCHEME + sha
    _uploaded[ck] = uri
    return uri


def _module_path(m):
    if isinstance(m, str) or isinstance(m, os.PathLike):
        return str(m)
    paths = getattr(m, "__path__", None)
    if paths:
        return list(paths)[0]
    f = getattr(m, "__file__", None)
    if f:
        return f
    raise TypeError(f"runtime_env['py_modules']: {m!r} is neither a path nor a module with a "
                    "file")


def resolve(raw, cw):
    """A validated env with its local paths uploaded: what travels."""
    out = {}
    excludes = raw.get("excludes") or []
    for k, v in raw.items():
        if k == "excludes":
            continue
        if k == "working_dir":
            v = upload(v, excludes, False, k, cw)
        elif k == "py_modules":
            uris = []
            for m in v:
                p = _module_path(m)
                if p.endswith(".py") and os.path.isfile(p):
                    raise ValueError(f"runtime_env['py_modules']: {p!r} is a single file; "
                                     "give its package folder or a .zip")
                uris.append(upload(p, excludes, True, k, cw))
            v = uris
        elif k in ("pip", "uv"):
            v = [_abs_if_path(r) for r in v]
        out[k] = v
    return out


def _abs_if_path(req):
    """A requirement naming a local file or folder, made absolute (workers
    install from another folder)."""
    r = req.strip()
    if r.startswith("-") or "://" in r:
        return r
    if os.sep in r or r.endswith((".whl", ".tar.gz", ".zip")):
        full = os.path.abspath(os.path.expanduser(r))
        if os.path.exists(full):
            return full
    return r


def make_marker(env):
    """(MARK, hash, json) of a resolved env; the hash leaves out `config`
    (the same files and variables are the same env)."""
    from pyray._private.runtime_env import MARK
    text = json.dumps(env, sort_keys=True, separators=(",", ":"))
    body = {k: v for k, v in env.items() if k != "config"}
    h = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return (MARK, h, text)


# ---------------------------------------------------------------- node side
def fetch_and_unpack(uri, dest_root, kv_get):
    """The local folder of a pkg:// URI on this node: fetched from the GCS
    and unpacked into dest_root/<sha> once (a lock file keeps concurrent
    setups of one node, or of nodes sharing the folder, apart)."""
    import fcntl
    import shutil
    sha = uri[len(SCHEME):]
    final = os.path.join(dest_root, sha)
    if os.path.isdir(final):
        return final
    os.makedirs(dest_root, exist_ok=True)
    with open(os.path.join(dest_root, f".{sha}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(final):
            return final
        meta = kv_get(kv_key(sha, "meta"))
        if not meta:
            raise exc.RuntimeEnvSetupError(f"the package {uri} is not in the cluster's store "
                                           "(uploaded by another cluster, or deleted)")
        parts = []
        for i in range(meta["chunks"]):
            part = kv_get(kv_key(sha, i))
            if part is None:
                raise exc.RuntimeEnvSetupError(f"chunk {i} of the package {uri} is missing")
            parts.append(part)
        tmp = final + f".tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)            # an empty package is an empty folder
        with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as z:
            z.extractall(tmp)
            for info in z.infolist():
                mode = info.external_attr >> 16
                if mode and not info.is_dir():
                    try:
                        os.chmod(os.path.join(tmp, info.filename), mode & 0o777)
                    except OSError:
                        pass
        os.rename(tmp, final)
    return final
