"""The C++ build survives a builder that was killed while holding torch's lock file."""
import threading

from sincfb import _build


def test_stale_torch_lock_file_is_cleared(tmp_path):
    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "lock").write_text("")        # left behind by a killed build
    with _build._exclusive_build(folder):
        assert not (folder / "lock").exists()


def test_builds_of_one_folder_are_serialised(tmp_path):
    order = []

    def build(tag):
        with _build._exclusive_build(tmp_path):
            order.append(f"{tag}-start")
            order.append(f"{tag}-end")

    threads = [threading.Thread(target=build, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a-start", "a-end", "b-start", "b-end"], ["b-start", "b-end", "a-start", "a-end"])
