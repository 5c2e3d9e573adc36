"""One cache folder shared by two copies of the sources (two clones, two virtual environments):
each copy builds once, in its own folder, and never again.

Each load runs in a child process (a process can load only one sincfb_cpu library) on a copy of
the package whose C++ files are replaced by stubs: the cache key, the folders, the lock and the
build through torch's builder and ninja are the real ``sincfb._build`` code of the copy, but each
build takes seconds instead of the real kernels' minute or more.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Build the copy's kernels into SINCFB_CACHE_DIR and report what is there afterwards.
_LOAD = """
import json
from pathlib import Path
import sincfb
from sincfb import _build
assert _build.load_cpu_extension(), _build.build_error()
name = _build.extension_name()
folder = _build.build_directory(name)
maps = Path("/proc/self/maps")
print(json.dumps({
    "package": sincfb.__file__, "folder": str(folder),
    "outputs": {p.name: p.stat().st_mtime_ns for p in folder.iterdir()
                if p.suffix in (".o", ".so")},
    "ninja_log": (folder / ".ninja_log").read_text(),
    "loaded_own_library": str(folder / f"{name}.so") in maps.read_text()
                          if maps.exists() else True}))
"""


def _copy_package(root: Path) -> Path:
    """The sincfb package under ``root`` with stub C++ files (same names, so the same build)."""
    shutil.copytree(ROOT / "sincfb", root / "sincfb",
                    ignore=shutil.ignore_patterns("__pycache__"))   # csrc link -> a real folder
    for path in (root / "sincfb" / "csrc").iterdir():
        if path.suffix == ".h":
            path.write_text("#pragma once\n")
        else:
            path.write_text(f'#include "ops.h"\nextern "C" int sincfb_stub_{path.stem}() '
                            "{ return 0; }\n")
    return root


def _load(root: Path, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SINCFB_NO_CPP", "PYTHONPATH")}
    env.update(SINCFB_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", _LOAD], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).resolve().is_relative_to(root.resolve())
    return report


@pytest.mark.slow
def test_two_copies_share_a_cache_folder_and_each_builds_once(tmp_path):
    cache = tmp_path / "cache"
    copies = [_copy_package(tmp_path / name) for name in ("clone-a", "clone-b")]
    first = [_load(root, cache) for root in copies]       # a builds, then b builds
    second = [_load(root, cache) for root in copies]      # a and b again, in the same order
    folders = [Path(report["folder"]) for report in first]
    assert folders[0] != folders[1]
    assert all(folder.is_relative_to(cache) for folder in folders)
    for before, after in zip(first, second):
        assert after["folder"] == before["folder"]
        assert any(name.endswith(".so") for name in before["outputs"])
        assert len(before["outputs"]) > 1                  # the objects and the library
        # nothing was compiled or linked again: same files, same times, no new ninja work
        assert after["outputs"] == before["outputs"]
        assert after["ninja_log"] == before["ninja_log"]
        assert before["loaded_own_library"] and after["loaded_own_library"]
