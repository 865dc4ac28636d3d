import os
import stat

import numpy as np
import pytest

from robustbench_lift.fileio import TMP_PREFIX, atomic_dir, atomic_path, atomic_write_bytes


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_and_is_readable_by_others(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644  # not mkstemp's private 0600
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.startswith(TMP_PREFIX) and tmp.parent == tmp_path
        tmp.write_bytes(b"half written")
        raise RuntimeError("killed")
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_atomic_dir_replaces_a_tree_only_when_complete(tmp_path):
    final = tmp_path / "fog"
    with atomic_dir(final) as tmp:
        (tmp / "1" / "cls").mkdir(parents=True)
        (tmp / "1" / "cls" / "x.JPEG").write_bytes(b"jpeg")
    assert (final / "1" / "cls" / "x.JPEG").read_bytes() == b"jpeg"
    assert _mode(final) == 0o755 and _mode(final / "1" / "cls") == 0o755
    with pytest.raises(ValueError), atomic_dir(final) as tmp:
        (tmp / "2").mkdir()
        raise ValueError("bad label")
    assert sorted(p.name for p in final.iterdir()) == ["1"]
    assert [p.name for p in tmp_path.iterdir()] == ["fog"]
