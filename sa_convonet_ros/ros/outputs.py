"""A job's output files: where a request's output_path leads, and the files written under temporary names
beside their final ones, moved into place only once the job has committed (jobs.py), so a cancelled or
failed job leaves no file behind."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from sa_convonet_ros.io import check_mesh_path, check_output_file, write_mesh


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
    """(mesh path, preview path or None) for a request's `output_path` (relative ones taken from `output_dir`,
    else the working directory), or None when it asks for no file; checked before any work (ValueError:
    "could not write ...")."""
    if not output_path:
        return None
    text = os.path.expanduser(output_path)  # text: Path() would drop a trailing slash
    if not os.path.isabs(text):
        folder = output_dir.strip()
        text = os.path.join(os.path.expanduser(folder) if folder else os.getcwd(), text)
    farthest = float(np.abs(points).max(initial=0.0))
    path = check_mesh_path(text, max_abs_coordinate=farthest)
    preview = check_output_file(path.with_suffix('.png')) if write_preview else None
    return path, preview
