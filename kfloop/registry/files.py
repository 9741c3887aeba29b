"""Plain-file access to a registry location: a local folder, or an object store URI through pyarrow.fs.

Only pyarrow (present in both environments) is used, so the serving side can read what the pipeline wrote.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs


class Location:
    """A folder on a local disk or an object store (s3://, gs://, ...)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        if "://" in uri and not uri.startswith("file://"):
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
            self.local = False
        else:
            path = uri.removeprefix("file://")
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(path).resolve())
            self.local = True
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri_of(self, *parts: str) -> str:
        """A location a reader can open: a local path, or `scheme://bucket/key`."""
        if self.local:
            return self.path(*parts)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.path(*parts)}"

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def subdirectories(self) -> list[str]:
        if not self.exists():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_json(self, *parts: str) -> Any:
        with self.fs.open_input_stream(self.path(*parts)) as handle:
            return json.loads(handle.read().decode())

    def write_json(self, data: Any, *parts: str) -> None:
        """Write a JSON file; locally through a temporary name and a rename, so readers never see half a file."""
        self.write_bytes((json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), *parts)

    def write_bytes(self, body: bytes, *parts: str) -> None:
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not self.local:
            with self.fs.open_output_stream(target) as handle:
                handle.write(body)
            return
        temp = f"{target}.{uuid.uuid4().hex}.tmp"
        with open(temp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)

    def copy_in(self, source: Path | str, *parts: str) -> None:
        """Copy a local file or folder tree to `parts` under this location."""
        source = Path(source)
        target = self.path(*parts)
        if source.is_file():
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(
                str(source), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
            )
            return
        self.fs.create_dir(target, recursive=True)
        pafs.copy_files(
            str(source.resolve()), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
        )

    def copy_out(self, target: Path | str, *parts: str) -> Path:
        """Copy the file or folder tree at `parts` to a local path."""
        target = Path(target)
        source = self.path(*parts)
        if self.fs.get_file_info(source).type == pafs.FileType.File:
            target.parent.mkdir(parents=True, exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(
            source, str(target.resolve()), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem()
        )
        return target

    def move(self, source: str, target: str) -> None:
        """Rename within this location (atomic for a local folder)."""
        self.fs.move(self.path(source), self.path(target))

    def delete_dir(self, *parts: str) -> None:
        if self.exists(*parts):
            self.fs.delete_dir(self.path(*parts))
