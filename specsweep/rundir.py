"""Run directories on a local disk or in cloud storage, and what lies in them.

A location is a local path or a URI that pyarrow opens (``s3://bucket/runs``,
``gs://bucket/runs``, ``s3://bucket/runs?endpoint_override=HOST:PORT&scheme=http``, ...),
the same strings Ray Tune takes as ``storage_path``. Every read and write of run-directory
files by specsweep goes through :class:`RunLocation`, so status, report and resume work on
either kind.

A run directory holds (docs/run-directory.md describes each file)::

    specsweep.yaml              the validated spec the sweep ran, --set applied (SPEC_FILE)
    specsweep-run.json          how it was started: spec path, --smoke-test, time, --set
                                and what resources.gpus: auto chose (RUN_FILE)
    trials.tsv                  trial folder -> setting, swept values, seed (specsweep.sweep.index)
    experiment_state-*.json     Tune's experiment state (EXPERIMENT_STATE)
    trial_<id>/                 one folder per trial (trial_folder)
        result.json             one JSON row per report (RESULT_FILE)
        error.txt               the failure of an errored trial (ERROR_FILE)
        checkpoint_*/checkpoint.ckpt   Tune's checkpoints (CHECKPOINTS)
        tested.pt               the weights the trial tested (specsweep.trainables.tested)
        trial.log, figures/, wandb/    what the trial writes (names in specsweep.layout)
    report/                     ``specsweep report``'s files (REPORT_DIR)
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import shlex
import shutil
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import pyarrow.fs as pafs
import yaml

from specsweep.contract import STORED_RUN, numbers_checked, parse_int
from specsweep.layout import CHECKPOINT_FILE
from specsweep.contract import MAX_SPEC_VALUES, expanded_size
from specsweep.spec import MAX_SPEC_BYTES, SweepSpec, UniqueKeyLoader, validate_spec

SPEC_FILE = "specsweep.yaml"
RUN_FILE = "specsweep-run.json"
EXPERIMENT_STATE = "experiment_state-*.json"
_TRIAL_PREFIX = "trial_"
TRIALS = f"{_TRIAL_PREFIX}*"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
CHECKPOINTS = f"checkpoint_*/{CHECKPOINT_FILE}"
REPORT_DIR = "report"


class StorageError(ValueError):
    """A storage location is malformed, unreachable or not a folder."""


class RunDirError(RuntimeError):
    """A run directory cannot be created or is not a specsweep run."""


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
        if urllib.parse.urlsplit(text).scheme and not text.startswith("file://"):
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
        return posixpath.basename(self._where())

    @property
    def display(self) -> Union[Path, str]:
        """A ``Path`` for a local folder (what callers of ``run_sweep`` get), else the URI."""
        return Path(self.path) if self.is_local else self.uri

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RunLocation({self.uri!r})"

    def child(self, name: str) -> "RunLocation":
        return self._moved(lambda where: posixpath.join(where, name))

    @property
    def parent(self) -> "RunLocation":
        return self._moved(posixpath.dirname)

    # URIs are taken apart with urllib, as Tune does for its storage_path; Tune's helper for
    # it is private (ray.air._internal) and pyarrow's from_uri drops the query.
    def _where(self) -> str:
        """The folder's path, for a URI its bucket and key (``s3://b/runs?x=1``: ``b/runs``)."""
        if self.is_local:
            return self.path
        parts = urllib.parse.urlsplit(self.uri)
        return posixpath.normpath(parts.netloc + parts.path)

    def _moved(self, move: Callable[[str], str]) -> "RunLocation":
        """The location at ``move(self._where())``; a URI keeps its scheme and query
        (``endpoint_override``, ...)."""
        if self.is_local:
            return RunLocation(move(self.path))
        parts = urllib.parse.urlsplit(self.uri)
        return RunLocation(parts._replace(netloc=posixpath.normpath(move(self._where())), path="").geturl())

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


# What specsweep reads back from a run directory is bounded before it is parsed: a
# damaged or hostile file (a sparse 6 GiB result.json, JSON nested 100,000 deep, an
# integer of 5,000 digits) is named, never read whole or turned into a traceback.
# Far above a real file (a 1,000-epoch trial's result.json is a few MB; a checkpoint of
# the largest models here is tens of MB).
MAX_READ_BYTES = 512 * 2**20


class DamagedFileError(RunDirError):
    """A run-directory file cannot be read back: too large, not a file, not what it should
    hold. ``path`` names it; the message says why."""

    def __init__(self, path: Union[str, "RunLocation"], reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def read_bounded(run_dir: "RunLocation", relative: str, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of ``relative`` in ``run_dir``, read only when it is a file of at most
    ``limit`` bytes; :class:`DamagedFileError` naming it otherwise (a folder where the
    file belongs, a size past the limit) or when it cannot be read."""
    path = run_dir.child(relative)
    info = run_dir._info(relative)
    if info.type == pafs.FileType.Directory:
        raise DamagedFileError(path, "a folder where a file belongs")
    if info.type == pafs.FileType.NotFound:
        raise DamagedFileError(path, "missing")
    if info.size is not None and info.size > limit:
        raise DamagedFileError(path, f"{info.size:,} bytes, more than specsweep reads back ({limit:,} bytes); "
                                     f"not a file a sweep writes")
    try:
        with run_dir.fs.open_input_stream(run_dir._at(relative)) as stream:
            data = stream.read(limit + 1)
    except OSError as err:
        raise DamagedFileError(path, f"cannot be read ({first_line(err)})") from None
    if len(data) > limit:
        raise DamagedFileError(path, f"more than {limit:,} bytes, more than specsweep reads back")
    return data


def parse_json(data: Union[bytes, str], path: Any, finite: bool = False) -> Any:
    """``data`` as JSON, with the one rule for numbers and keys
    (:func:`~specsweep.contract.numbers_checked`: integers of 64 bits; with ``finite``,
    floats finite too: a metric may be NaN or infinite); :class:`DamagedFileError` naming
    ``path`` and the first bad key path otherwise. Nesting too deep for the parser and
    integers too long to convert are refusals, not tracebacks."""
    try:
        value = json.loads(data, parse_int=parse_int)
    except RecursionError:
        raise DamagedFileError(path, "JSON nested too deeply to be specsweep's or Tune's") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedFileError(path, f"not JSON ({first_line(err)[:200]})") from None
    problems = numbers_checked(value, finite=finite)[0]
    if problems:
        raise DamagedFileError(path, f"a value no sweep writes: {problems[0][:300]}")
    return value


def read_json(run_dir: "RunLocation", relative: str, finite: bool = False) -> Any:
    """:func:`parse_json` of :func:`read_bounded`."""
    return parse_json(read_bounded(run_dir, relative), run_dir.child(relative), finite)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (the user sees one line, no traceback)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def trial_folder(trial_id: str) -> str:
    """The folder of trial ``trial_id`` inside its run directory."""
    return f"{_TRIAL_PREFIX}{trial_id}"


def trial_id_of(folder: str) -> str:
    """The trial id that a trial folder's name (as :func:`trial_folder` makes it) carries."""
    return folder.removeprefix(_TRIAL_PREFIX)


def trial_dirname(trial: Any) -> str:
    """Tune's ``trial_dirname_creator``: a Tune trial's folder name."""
    return trial_folder(trial.trial_id)


def check_run_name(name: str) -> str:
    """``name`` if it is one printable folder name, else RunDirError (a name such as
    ``../x`` or ``/tmp/x`` would put the run outside ``--storage``)."""
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if (not name or name in (".", "..") or not name.isprintable() or any(sep in name for sep in separators)
            or len(name.encode("utf-8", "surrogateescape")) > 255):
        raise RunDirError(f"--name {name!r}: a run name must be one printable folder name: no '/', "
                          f"not '.' or '..', at most 255 bytes")
    return name


def check_free(run_dir: RunLocation) -> None:
    """RunDirError unless nothing exists at ``run_dir`` yet."""
    # lexists: a dangling symlink is taken too.
    if os.path.lexists(run_dir.path) if run_dir.is_local else run_dir.exists():
        raise RunDirError(
            f"run directory {run_dir} already exists; pick another --name, or continue it with "
            f"`specsweep resume {shlex.quote(str(run_dir))}`"
        )


def claim_run_dir(storage: Union[Path, RunLocation], name: str) -> Union[Path, RunLocation]:
    """Create ``storage/name`` for a new run, atomically on local disks: of two runs
    claiming the same name, exactly one gets it and the other a RunDirError. Object stores
    have no atomic create; there the name is only checked to be free."""
    location = RunLocation(storage)
    if not location.is_local:
        run_dir = location.child(name)
        check_free(run_dir)
        run_dir.mkdir()
        return run_dir
    storage = Path(location.path)
    run_dir = storage / name
    try:
        storage.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"--storage {storage}: cannot create the folder ({err.strerror})") from None
    try:
        os.mkdir(run_dir)
    except FileExistsError:
        check_free(RunLocation(run_dir))
        raise
    except OSError as err:
        raise RunDirError(f"cannot create run directory {run_dir} ({err.strerror})") from None
    return run_dir


@contextmanager
def released_on_failure(run_dir: Union[Path, RunLocation], storage_existed: bool) -> Iterator[None]:
    """Remove the freshly claimed ``run_dir`` (and a storage folder made for it) if the
    sweep fails before Tune runs a trial: a failed start leaves nothing behind."""
    try:
        yield
    except BaseException:
        if isinstance(run_dir, RunLocation):
            run_dir.remove()
            raise
        shutil.rmtree(run_dir, ignore_errors=True)
        if not storage_existed:
            try:
                run_dir.parent.rmdir()
            except OSError:
                pass  # another run has claimed a name there meanwhile
        raise


def write_run(run_dir: RunLocation, spec: SweepSpec, spec_path: Union[Path, str], smoke: bool,
              gpu_packing: Optional[List[Dict[str, Any]]] = None, overrides: Sequence[str] = ()) -> None:
    """Write the files :func:`load_run` and :func:`run_info` read back: the validated spec
    (with the ``--set`` ``overrides`` applied, which are recorded too) and how the sweep
    was started, with what ``resources.gpus: auto`` chose (``gpu_packing``, rows of
    :func:`specsweep.plan.packing.packing_record`; empty: no GPUs), so that a resume asks for
    the same resources."""
    info: Dict[str, Any] = {"spec": str(spec_path), "smoke": smoke, "created": datetime.now().isoformat()}
    if overrides:
        info["set"] = list(overrides)
    if gpu_packing is not None:
        info["gpu_packing"] = gpu_packing
    run_dir.write_text(SPEC_FILE, yaml.safe_dump(spec.model_dump(), sort_keys=False))
    run_dir.write_text(RUN_FILE, json.dumps(info, indent=1))


def load_run(run_dir: Union[Path, str, RunLocation]) -> SweepSpec:
    """The validated spec of a run directory (local folder or URI); RunDirError naming
    the file when it is missing or damaged."""
    run_dir = RunLocation(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a run directory ({'a file' if run_dir.exists() else 'no such folder'})")
    path = run_dir.child(SPEC_FILE)
    if not run_dir.exists(SPEC_FILE):
        raise RunDirError(f"{run_dir} is not a specsweep run directory (no {SPEC_FILE})")
    try:
        raw = yaml.load(read_bounded(run_dir, SPEC_FILE, MAX_SPEC_BYTES).decode("utf-8"), Loader=UniqueKeyLoader)
        if expanded_size(raw) > MAX_SPEC_VALUES:
            raise ValueError(f"it expands to more than {MAX_SPEC_VALUES:,} values")
    except DamagedFileError as err:
        raise RunDirError(f"{path} is damaged ({err.reason}); the trials' results are untouched: copy the sweep's "
                          f"spec back to {path} (its path is in {run_dir.child(RUN_FILE)})") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunDirError(f"{path} is damaged ({reason}); the trials' results are untouched: "
                          f"copy the sweep's spec back to {path} (its path is in {run_dir.child(RUN_FILE)})") from None
    token = STORED_RUN.set(True)
    try:
        return validate_spec(raw, str(path))
    finally:
        STORED_RUN.reset(token)


@dataclass(frozen=True)
class RunInfo:
    """How the sweep of a run directory was started (its ``specsweep-run.json``): as a
    ``--smoke-test`` or not, with which ``--set`` arguments, and what ``resources.gpus:
    auto`` chose (None: not recorded, measured anew on resume)."""

    smoke: bool = False
    overrides: List[str] = field(default_factory=list)
    gpu_packing: Optional[List[Dict[str, Any]]] = None


def run_info(run_dir: RunLocation) -> RunInfo:
    """How the sweep in ``run_dir`` was started; RunDirError naming the file when it is
    missing or damaged."""
    path = run_dir.child(RUN_FILE)
    if not run_dir.exists(RUN_FILE):
        raise RunDirError(f"{path} is missing; write {{\"smoke\": false}} (true if the run was a --smoke-test) "
                          f"into it to resume")
    try:
        info = read_json(run_dir, RUN_FILE, finite=True)
    except DamagedFileError as err:
        raise RunDirError(f"{path} is damaged ({err.reason}); write {{\"smoke\": false}} (true if the run was a "
                          f"--smoke-test) into it to resume") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path} is damaged (not a JSON object); write {{\"smoke\": false}} into it to resume")
    packing = info.get("gpu_packing", RunInfo.gpu_packing)
    if packing is not None and not (isinstance(packing, list) and all(isinstance(row, dict) for row in packing)):
        raise RunDirError(f"{path}: gpu_packing must be a list of mappings (what resources.gpus: auto chose), got "
                          f"{str(packing)[:100]!r}; remove the key to measure anew on resume")
    # A resume with smoke set runs the smoke test's batch limits on a full run's trials.
    if not isinstance(info.get("smoke", RunInfo.smoke), bool):
        raise RunDirError(f"{path}: smoke must be true or false, got {info['smoke']!r}; write false (true if the run "
                          f"was a --smoke-test) to resume")
    overrides = info.get("set", [])
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        raise RunDirError(f"{path}: set must be the list of the run's --set arguments, got {str(overrides)[:100]!r}; "
                          f"remove the key to resume (the spec kept in the run directory has them applied)")
    return RunInfo(smoke=info.get("smoke", RunInfo.smoke), overrides=overrides, gpu_packing=packing)
