"""A job's output files: where a request's output_path leads, and the files written under temporary names
beside their final ones, moved into place only once the job has committed (jobs.py), so a cancelled or
failed job leaves no file behind."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from sa_convonet_ros.io import check_mesh_path, check_output_file, shown_path, write_mesh
from sa_convonet_ros.points import farthest_coordinate


class OutputError(Exception):
    """An output file could not be written (the message says "could not write ...")."""


@dataclass
class StagedFiles:
    """Output files written under temporary names beside their final ones (temporary, final)."""

    moves: list = field(default_factory=list)

    @classmethod
    def write(cls, mesh, path: Path, preview: Optional[Path]) -> 'StagedFiles':
        """The mesh (and its PNG preview) written under temporary names; OutputError when that fails."""
        staged = cls()
        target = path
        try:
            temporary = _temporary_name(path)
            staged.moves.append((temporary, path))
            write_mesh(mesh, temporary)
            if preview is not None:
                # Imported here: the renderer pulls in libraries that most runs never need.
                from sa_convonet_ros.preview import render_mesh_png
                target, temporary = preview, _temporary_name(preview)
                staged.moves.append((temporary, preview))
                render_mesh_png(mesh, temporary, title=path.name)
        except (OSError, ValueError) as error:
            staged.discard()
            reason = getattr(error, 'strerror', None) or str(error).replace(str(temporary), str(target))
            raise OutputError(f'could not write {target}: {reason}') from None
        return staged

    def move_into_place(self) -> None:
        for temporary, final in self.moves:
            try:
                os.replace(temporary, final)
            except OSError as error:
                self.discard()
                raise OutputError(f'could not write {final}: {error.strerror or error}') from None

    def discard(self) -> None:
        for temporary, _ in self.moves:
            Path(temporary).unlink(missing_ok=True)


def _temporary_name(path: Path) -> Path:
    # Hidden, beside the final file (so the rename stays on one file system), with the same suffix
    # (the writers choose the format by it).
    return path.with_name(f'.{path.stem}.partial-{os.getpid()}{path.suffix}')


def output_paths(output_path: str, write_preview: bool, output_dir: str,
                 points: np.ndarray) -> Optional[tuple[Path, Optional[Path]]]:
    """(mesh path, preview path or None) for a request's `output_path`, or None when it asks for no file;
    checked before any work (ValueError: "could not write ..."). With `output_dir` set, a relative path is
    taken from it and no path may lead out of it (through '..', '~', an absolute path or a link); without
    it, relative paths are taken from the working directory."""
    if not output_path:
        return None
    try:
        text = _confined(output_path, output_dir.strip())
    except OSError as error:  # a name the file system refuses (too long, ...)
        raise ValueError(f'could not write {shown_path(output_path)}: {error.strerror or error}') from None
    path = check_mesh_path(text, max_abs_coordinate=farthest_coordinate(points))
    preview = check_output_file(path.with_suffix('.png')) if write_preview else None
    return path, preview


def _confined(output_path: str, folder: str) -> str:
    """The path to write, as text (Path() would drop a trailing slash, which says "a folder")."""
    if not folder:
        text = os.path.expanduser(output_path)
        return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)
    if output_path.startswith('~') or '..' in Path(output_path).parts:
        raise ValueError(f"could not write {shown_path(output_path)}: '~' and '..' are not allowed in output paths "
                         f'while output_dir is set; give a path inside {folder}')
    base = Path(os.path.expanduser(folder)).resolve()
    text = output_path if os.path.isabs(output_path) else os.path.join(base, output_path)
    if not Path(text).resolve().is_relative_to(base):  # also a link inside the folder that points out of it
        raise ValueError(f'could not write {shown_path(output_path)}: it is outside output_dir ({base})')
    return text
