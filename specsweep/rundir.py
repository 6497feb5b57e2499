"""Run directories on a local disk or in cloud storage.

A location is a local path or a URI that pyarrow opens (``s3://bucket/runs``,
``gs://bucket/runs``, ``s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http``, ...),
the same strings Ray Tune takes as ``storage_path``. Every read and write of run-directory
files by specsweep goes through :class:`RunLocation`, so status, report and resume work on
either kind.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import List, Optional, Union

import pyarrow.fs as pafs
from ray.air._internal.uri_utils import URI, is_uri


class StorageError(ValueError):
    """A storage location is malformed, unreachable or not a folder."""


class RunLocation:
    """A folder given as a local path or a pyarrow filesystem URI.

    Parameters
    ----------
    location
        Local path (``~`` expanded, made absolute) or URI, kept unchanged apart from that.
    """

    def __init__(self, location: Union[str, Path, "RunLocation"]) -> None:
        if isinstance(location, RunLocation):
            self.uri, self.fs, self.path = location.uri, location.fs, location.path
            return
        text = str(location)
        if is_uri(text) and not text.startswith("file://"):
            self.uri = text
            try:
                self.fs, self.path = pafs.FileSystem.from_uri(text)
            except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
                raise StorageError(f"storage {text!r} is not a URI that pyarrow can open: {first_line(err)} "
                                   f"(s3://BUCKET/PATH, gs://BUCKET/PATH, or a local folder)") from None
            if not self.path.strip("/"):
                raise StorageError(f"storage {text!r} names no bucket or folder (s3://BUCKET/PATH, gs://BUCKET/PATH)")
        else:
            local = Path(text.removeprefix("file://")).expanduser().resolve()
            self.uri, self.fs, self.path = str(local), pafs.LocalFileSystem(), str(local)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return URI(self.uri).name

    @property
    def display(self) -> Union[Path, str]:
        """A ``Path`` for a local folder (what callers of ``run_sweep`` get), else the URI."""
        return Path(self.path) if self.is_local else self.uri

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RunLocation({self.uri!r})"

    def child(self, name: str) -> "RunLocation":
        return RunLocation(str(URI(self.uri) / name))

    @property
    def parent(self) -> "RunLocation":
        return RunLocation(str(URI(self.uri).parent))

    def _at(self, relative: str) -> str:
        return f"{self.path}/{relative}" if relative else self.path

    def _info(self, relative: str = "") -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self._at(relative))
        except OSError as err:
            raise StorageError(f"cannot reach {self.uri}: {first_line(err)}") from None

    def exists(self, relative: str = "") -> bool:
        return self._info(relative).type != pafs.FileType.NotFound

    def is_file(self, relative: str = "") -> bool:
        return self._info(relative).type == pafs.FileType.File

    def is_dir(self, relative: str = "") -> bool:
        return self._info(relative).type == pafs.FileType.Directory

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self._at(relative)) as stream:
            return stream.readall()

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode()

    def write_text(self, relative: str, text: str) -> None:
        with self.fs.open_output_stream(self._at(relative)) as stream:
            stream.write(text.encode())

    def glob(self, pattern: str) -> List[str]:
        """Relative paths matching ``pattern``, one ``fnmatch`` pattern per path segment, sorted."""
        matches = [""]
        for segment in pattern.split("/"):
            found = []
            for folder in matches:
                selector = pafs.FileSelector(self._at(folder), allow_not_found=True)
                for info in self.fs.get_file_info(selector):
                    if fnmatch.fnmatch(info.base_name, segment):
                        found.append(f"{folder}/{info.base_name}" if folder else info.base_name)
            matches = found
        return sorted(matches)

    def check_can_hold_runs(self) -> None:
        """Fail unless this location is a folder or can become one: its nearest existing
        ancestor (for object stores: the bucket) must exist and be a folder."""
        location = self
        while True:
            info = location._info()
            if info.type == pafs.FileType.File:
                raise StorageError(f"storage {self.uri} cannot hold run directories: {location.uri} is a file")
            if info.type == pafs.FileType.Directory:
                return
            if "/" not in location.path.strip("/"):
                raise StorageError(f"storage {self.uri}: {location.uri} does not exist (for object stores, "
                                   f"create the bucket first)")
            location = location.parent

    def mkdir(self) -> None:
        try:
            self.fs.create_dir(self.path, recursive=True)
        except OSError as err:
            raise StorageError(f"cannot create {self.uri}: {first_line(err)}") from None

    def remove(self) -> None:
        """Delete this folder and everything in it, if it exists."""
        try:
            self.fs.delete_dir(self.path)
        except (FileNotFoundError, OSError):
            pass  # nothing (more) to remove

    def upload(self, local_folder: Path, relative: str) -> None:
        """Copy ``local_folder`` (recursively) to ``relative`` inside this location."""
        pafs.copy_files(str(local_folder), self._at(relative), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (the user sees one line, no traceback)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
