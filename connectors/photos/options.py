"""Options of the photos connector (one account section of the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PhotosOptions"]


class PhotosOptions(BaseModel):
    """Which folders to scan, which files to take, and how near is "near duplicate"."""

    model_config = ConfigDict(extra="forbid")

    roots: list[Path] = Field(min_length=1)
    """Folders scanned recursively (``~`` is expanded, made absolute)."""
    include: list[str] = Field(default_factory=list)
    """fnmatch globs; when given, only matching files are imported.  A glob without
    ``/`` matches the file name, one with ``/`` the path relative to its root."""
    exclude: list[str] = Field(default_factory=list)
    """fnmatch globs (same matching as ``include``) for files and folders never imported."""
    hidden: bool = False
    """Also scan files and folders whose name starts with a dot."""
    symlinks: Literal["inside", "never", "follow"] = "inside"
    """``inside``: follow a link only if its target lies inside the same root;
    ``never``: ignore every link; ``follow``: follow links anywhere."""
    near_duplicates: bool = True
    """Link photos whose perceptual hashes are close with ``nearDuplicate`` edges."""
    near_duplicate_distance: int = Field(default=8, ge=0, le=32)
    """Largest Hamming distance (of 64 bits) between two near duplicates' hashes."""
    thumbnail_size: int = Field(default=256, ge=16, le=2048)
    """Longest side of the JPEG thumbnail, in pixels."""
    workers: int = Field(default=2, ge=1, le=32)
    """Images read (hashed, decoded, thumbnailed) at the same time."""

    @field_validator("roots")
    @classmethod
    def _expand(cls, roots: list[Path]) -> list[Path]:
        unique: dict[Path, None] = {}
        for root in roots:
            unique[root.expanduser().absolute()] = None
        return list(unique)

    @field_validator("include", "exclude")
    @classmethod
    def _no_empty_globs(cls, globs: list[str]) -> list[str]:
        cleaned = [glob.strip() for glob in globs]
        if any(not glob for glob in cleaned):
            raise ValueError("empty glob")
        return cleaned
