"""Validation helpers and the error hierarchy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motion4d import errors
from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_choice, check_file, check_finite, check_shape, require


def test_check_shape_binds_symbols() -> None:
    dims = check_shape(torch.zeros(2, 5, 3, 7, 9), "frames", ("B", "T", 3, "H", "W"))
    assert dims == {"B": 2, "T": 5, "H": 7, "W": 9}


def test_check_shape_ellipsis_and_none() -> None:
    dims = check_shape(np.zeros((4, 1, 2, 6, 8)), "flow", ("...", 2, "H", "W"))
    assert dims == {"H": 6, "W": 8}
    check_shape(np.zeros((3, 4)), "x", (None, 4))


@pytest.mark.parametrize(
    "shape, pattern",
    [((2, 3, 4), ("B", 2, "H", "W")), ((1, 3, 8, 8), ("B", 2, "H", "W")), ((2, 5, 5), ("N", "N", 4))],
)
def test_check_shape_mismatch_names_argument(shape: tuple, pattern: tuple) -> None:
    with pytest.raises(errors.ShapeError, match=r"flow must have shape"):
        check_shape(torch.zeros(shape), "flow", pattern)


def test_check_shape_repeated_symbol_must_agree() -> None:
    with pytest.raises(errors.ShapeError, match="one size for N"):
        check_shape(torch.zeros(3, 4), "K", ("N", "N"))


def test_check_shape_rejects_non_arrays() -> None:
    with pytest.raises(errors.ShapeError, match="list"):
        check_shape([1, 2], "points", ("N",))


def test_check_finite_counts_bad_values() -> None:
    x = torch.tensor([0.0, float("nan"), float("inf"), 1.0])
    with pytest.raises(errors.NonFiniteError, match="points holds 2 non-finite"):
        check_finite(x, "points")
    check_finite(np.ones(3), "ok")


def test_check_choice_and_file(tmp_path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="mode must be one of"):
        check_choice("bogus", "mode", ["sum", "average"])
    with pytest.raises(errors.MissingFileError, match="nope.mp4"):
        check_file(tmp_path / "nope.mp4", "video")
    with pytest.raises(FileNotFoundError):  # still a built-in FileNotFoundError for callers
        check_file(tmp_path / "nope.mp4")


def test_require_missing_dependency_names_extra() -> None:
    with pytest.raises(errors.MissingDependencyError, match=r"motion4d\[parquet\]"):
        require("surely_not_a_module_xyz", "Parquet export", extra="parquet")


def test_errors_derive_from_builtins() -> None:
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.InputFileError, OSError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.Motion4DError)


def test_atomic_path_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out" / "flow.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".npz"
            np.savez(tmp, a=np.zeros(3))
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    atomic_write_text(target.with_suffix(".txt"), "done")
    assert target.with_suffix(".txt").read_text() == "done"
    assert [p.name for p in target.parent.iterdir()] == ["flow.txt"]
