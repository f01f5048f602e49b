"""``Checkpoint``: a directory of files that a trial saved, as in Ray.

A checkpoint is a path (and the filesystem it lives on, pyarrow's local
filesystem here).  Tune persists the directory a trainable reports into the
trial's folder (``checkpoint_000003``); a Checkpoint pickles as its path, so
handing one to another process costs nothing."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid

_METADATA_FILE = ".metadata.json"


class Checkpoint:
    """A directory with the state of a training run.

        with tempfile.TemporaryDirectory() as d:
            torch.save(model.state_dict(), os.path.join(d, "model.pt"))
            tune.report({"loss": loss}, checkpoint=Checkpoint.from_directory(d))
    """

    def __init__(self, path, filesystem=None):
        path = os.fspath(path)
        if "://" in path and not path.startswith("file://"):
            raise ValueError(f"Checkpoint path {path!r}: only local paths (or shared "
                             f"mounts) are supported; copy the checkpoint to a folder first.")
        if path.startswith("file://"):
            path = path[len("file://"):]
        self.path = os.path.abspath(path)
        self._filesystem = filesystem

    @property
    def filesystem(self):
        if self._filesystem is None:
            import pyarrow.fs
            self._filesystem = pyarrow.fs.LocalFileSystem()
        return self._filesystem

    @classmethod
    def from_directory(cls, path):
        """A checkpoint of the folder ``path`` (no copy is made)."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_directory({path!r}): not a directory.")
        return cls(path)

    def to_directory(self, path=None):
        """Copies the checkpoint's files into ``path`` (a new temporary folder
        when None) and returns that folder."""
        if path is None:
            path = os.path.join(tempfile.gettempdir(), f"checkpoint_tmp_{uuid.uuid4().hex}")
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        if os.path.abspath(path) != self.path:
            shutil.copytree(self.path, path, dirs_exist_ok=True)
        return path

    @contextlib.contextmanager
    def as_directory(self):
        """A local folder with the checkpoint's files, for the time of the
        ``with`` block (the checkpoint's own folder: it is local)."""
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"Checkpoint folder {self.path!r} does not exist "
                                    f"(deleted, or kept on another machine).")
        yield self.path

    def get_metadata(self):
        try:
            with open(os.path.join(self.path, _METADATA_FILE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata):
        with open(os.path.join(self.path, _METADATA_FILE), "w") as f:
            json.dump(metadata, f)

    def update_metadata(self, metadata):
        md = self.get_metadata()
        md.update(metadata)
        self.set_metadata(md)

    def __reduce__(self):
        return (Checkpoint, (self.path,))

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self):
        return hash(self.path)

    def __repr__(self):
        return f"Checkpoint(filesystem=local, path={self.path})"
