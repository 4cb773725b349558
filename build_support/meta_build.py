"""How the meta-package `ad-buyer-storage` (the repository root) names our own distributions.

This file is both the root's build backend (hatchling, plus one switch: pyproject.toml's
`build-backend` and `backend-path`) and its metadata hook (`[tool.hatch.metadata.hooks.custom]`),
which writes `dependencies` and `optional-dependencies` from the lists in that table.

- In a clone, every build but the sdist (`build_wheel`, `build_editable`: what pip runs for
  `pip install -e .` and `pip install ".[dev]"`) names our distributions by direct reference to
  their folder, `ad-buyer-storage-core @ file:///.../packages/ad_buyer_storage_core`: they are
  installed from the tree, never looked up on an index (where anyone could publish the name).
- The sdist (`build_sdist`: `python -m build`, `nox -s build`) is what gets published, and an
  index refuses direct references: its PKG-INFO names plain requirements,
  `ad-buyer-storage-core>=0.1.0` (each package's version in the tree). It carries no packages/.
- A wheel built from that sdist takes those fields from its PKG-INFO (hatchling reads dynamic
  fields there), so it names them plainly too: `python -m build` gives a publishable pair.

A wheel built straight from a clone (`python -m build --wheel`, `pip wheel .`) is a development
build with direct references: publish what `nox -s build` built and checked.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from hatchling.build import (
    build_editable,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)
from hatchling.build import build_sdist as hatchling_build_sdist
from hatchling.metadata.plugin.interface import MetadataHookInterface
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
]

# Set while build_sdist runs: the metadata hook then writes what an index accepts.
PUBLISHED = "AD_BUYER_STORAGE_PUBLISHED_METADATA"


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """PEP 517 build_sdist: hatchling's, with the plain requirements an index accepts."""
    before = os.environ.get(PUBLISHED)
    os.environ[PUBLISHED] = "1"
    try:
        return hatchling_build_sdist(sdist_directory, config_settings)
    finally:
        if before is None:
            del os.environ[PUBLISHED]
        else:
            os.environ[PUBLISHED] = before


def local_distributions(root: Path) -> dict[str, tuple[Path, str]]:
    """Canonical name -> (folder, version) of each distribution in root/packages/."""
    found: dict[str, tuple[Path, str]] = {}
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        found[canonicalize_name(project["name"])] = (pyproject.parent, project["version"])
    return found


def requirement(text: str, local: dict[str, tuple[Path, str]], published: bool) -> str:
    """One requirement as written: ours by folder (direct reference) or by version (published)."""
    req = Requirement(text)
    name = canonicalize_name(req.name)
    if name not in local:
        if name.startswith("ad-buyer-storage"):
            raise ValueError(f"{req.name} is not in packages/: a distribution of ours must be built from the tree")
        return text
    if req.url or req.specifier:
        raise ValueError(f"name our own distributions bare (the hook writes the rest): {text!r}")
    folder, version = local[name]
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    if published:
        return f"{req.name}{extras}>={version}{marker}"
    return f"{req.name}{extras} @ {folder.resolve().as_uri()}{marker}"


def requirements(config: dict[str, Any], root: Path, published: bool) -> tuple[list[str], dict[str, list[str]]]:
    """The `dependencies` and `optional-dependencies` fields from the hook's table."""
    local = local_distributions(root)
    if not local:
        raise ValueError(
            f"no packages/ beside {root}: build the meta-package from a clone, or from its sdist (whose PKG-INFO"
            " names its requirements)"
        )
    dependencies = [requirement(text, local, published) for text in config.get("dependencies", [])]
    optional = {
        extra: [requirement(text, local, published) for text in texts]
        for extra, texts in config.get("optional-dependencies", {}).items()
    }
    return dependencies, optional


class MetaPackageRequirements(MetadataHookInterface):
    """Fills in `dependencies` and `optional-dependencies` (see the module's docstring)."""

    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        published = os.environ.get(PUBLISHED) == "1"
        dependencies, optional = requirements(self.config, Path(self.root), published)
        metadata["dependencies"] = dependencies
        metadata["optional-dependencies"] = optional
