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


# --- no library from a folder someone else controls (issue 20) ------------------------------
NOT_WRITABLE = "/proc/sincfb-cache"          # no one can make a folder there, not even root


def _planted(folder: Path, mode: int = 0o777, owner: int = None) -> Path:
    """A folder as another local user would leave it on the cache's path, with a library in it."""
    (folder / "torch-planted").mkdir(parents=True)
    (folder / "torch-planted" / "sincfb_cpu.so").write_bytes(b"\x7fELF planted")
    os.chmod(folder, mode)                      # explicit: mkdir's mode is reduced by the umask
    if owner is not None:
        os.chown(folder, owner, owner)
    return folder


@pytest.fixture
def cache_paths(tmp_path, monkeypatch):
    """SINCFB_CACHE_DIR and the temporary fallback moved under ``tmp_path`` (mode 0700, as
    pytest makes it), so that the tests plant folders where sincfb looks."""
    from sincfb import _build

    paths = {"cache": tmp_path / "cache", "fallback": tmp_path / "fallback"}
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(paths["cache"]))
    monkeypatch.setattr(_build, "_fallback_cache_dir", lambda: paths["fallback"])
    return paths


def test_new_cache_folders_are_private(cache_paths):
    from sincfb import _build

    folder = _build.build_directory("sincfb_cpu_test")
    for step in (cache_paths["cache"], folder.parent, folder):
        assert step.stat().st_mode & 0o777 == 0o700, step


def test_a_cache_folder_others_may_write_is_refused_and_the_private_fallback_used(cache_paths):
    from sincfb import _build

    _planted(cache_paths["cache"], 0o777)
    with pytest.warns(RuntimeWarning, match=r"not using the cache directory .*cache: its group "
                                            r"or others may write it \(mode drwxrwxrwx\)"):
        folder = _build.build_directory("sincfb_cpu_test")
    assert folder.is_relative_to(cache_paths["fallback"])
    assert cache_paths["fallback"].stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in cache_paths["cache"].iterdir()) == ["torch-planted"]


def test_a_planted_fallback_folder_is_refused(cache_paths, monkeypatch):
    """The fallback's name can be guessed: another user may create it first, open to all."""
    from sincfb import _build

    monkeypatch.setenv("SINCFB_CACHE_DIR", NOT_WRITABLE)
    _planted(cache_paths["fallback"], 0o777)
    with pytest.raises(RuntimeError, match=r"fallback: its group or others may write it"):
        _build.build_directory("sincfb_cpu_test")
    assert sorted(p.name for p in cache_paths["fallback"].iterdir()) == ["torch-planted"]


def test_a_folder_open_to_others_below_a_private_root_is_refused(cache_paths):
    from sincfb import _build
    import torch

    inner = cache_paths["cache"] / f"torch-{torch.__version__}"
    inner.mkdir(parents=True, mode=0o700)
    os.chmod(cache_paths["cache"], 0o700)
    os.chmod(inner, 0o775)
    with pytest.warns(RuntimeWarning, match=r"torch-[^:]*: its group or others may write it"):
        folder = _build.build_directory("sincfb_cpu_test")
    assert folder.is_relative_to(cache_paths["fallback"])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a folder to another user")
@pytest.mark.parametrize("which", ["cache", "fallback"])
def test_a_folder_of_another_user_is_refused_even_when_private(cache_paths, which, monkeypatch):
    """Mode 0700 but owned by user id 4242: that user's library would run as us (CI runs
    as root, which may chown; elsewhere the mode tests above stand in)."""
    from sincfb import _build

    _planted(cache_paths[which], 0o700, owner=4242)
    if which == "cache":
        with pytest.warns(RuntimeWarning, match="belongs to user id 4242"):
            assert _build.build_directory("x").is_relative_to(cache_paths["fallback"])
    else:
        monkeypatch.setenv("SINCFB_CACHE_DIR", NOT_WRITABLE)
        with pytest.raises(RuntimeError, match="fallback: it belongs to user id 4242"):
            _build.build_directory("x")


def test_a_refused_folder_means_no_cpu_backend_and_one_warning(cache_paths, monkeypatch):
    """Through the loader: nothing is loaded from the planted folders; 'auto' moves on."""
    from sincfb import _build

    monkeypatch.setenv("SINCFB_CACHE_DIR", NOT_WRITABLE)
    _planted(cache_paths["fallback"], 0o757)
    monkeypatch.setattr(_build, "_state", {"loaded": None, "error": None, "warned": False})
    with pytest.warns(RuntimeWarning, match="could not be built or loaded.*no private cache"):
        assert not _build.load_cpu_extension()
