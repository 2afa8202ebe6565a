"""Cutting source demos into subtask segments, and the errors of unusable sources."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from apprentice.data.episode import DatagenInfo
from apprentice.envs import Subtask
from apprentice.errors import ApprenticeError
from apprentice.generate.source import SourceDemo, check_subtasks, subtask_ends

SUBTASKS = (Subtask("a", "grasp"), Subtask("b", "lift"), Subtask("b", None))


def signal(t: int, on: list[int]) -> np.ndarray:
    out = np.zeros(t, dtype=np.int8)
    out[on] = 1
    return out


def test_ends_are_first_rises_each_after_the_one_before() -> None:
    signals = {"grasp": signal(10, [3, 4, 5, 6, 7, 8, 9]), "lift": signal(10, [1, 6, 7])}
    # "lift" flickers on at step 1, before the grasp: the end taken is its first rise after 3.
    assert subtask_ends(signals, SUBTASKS) == (3, 6)


def test_a_signal_that_never_rises_is_named() -> None:
    with pytest.raises(ValueError, match="'lift' never turns on"):
        subtask_ends({"grasp": signal(10, [2]), "lift": signal(10, [])}, SUBTASKS)
    with pytest.raises(ValueError, match="no subtask signal 'lift'"):
        subtask_ends({"grasp": signal(10, [2])}, SUBTASKS)


def demo(t: int, ends: tuple[int, ...]) -> SourceDemo:
    eye = np.tile(np.eye(4), (t, 1, 1))
    info = DatagenInfo(eye, eye, np.zeros((t, 1)), {"a": eye, "b": eye}, {})
    return SourceDemo("demo_0", info, ends)


def test_segments_tile_the_demo_and_offsets_are_clamped() -> None:
    d = demo(20, (5, 12))
    assert d.segments([0, 0]) == [(0, 5), (5, 12), (12, 20)]
    assert d.segments([3, -2]) == [(0, 8), (8, 10), (10, 20)]
    # An offset never empties a segment or pushes an end past the next one's room.
    assert d.segments([30, 30]) == [(0, 18), (18, 19), (19, 20)]
    assert d.segments([-30, -30]) == [(0, 1), (1, 2), (2, 20)]


def test_object_pose_of_the_world_frame_is_identity() -> None:
    np.testing.assert_array_equal(demo(5, (2, 3)).object_pose(None, 1), np.eye(4))


def fake_task(subtasks: tuple[Subtask, ...]) -> SimpleNamespace:
    return SimpleNamespace(name="fake", subtasks=subtasks)


def test_task_without_subtasks_is_refused() -> None:
    with pytest.raises(ApprenticeError, match="declares no subtasks"):
        check_subtasks(fake_task(()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        ((Subtask("a", "grasp"),), "last subtask ends with the demo"),
        ((Subtask("a", None), Subtask("a", None)), "subtask 0 needs a term_signal"),
        ((Subtask("a", "g", (5, 1)), Subtask("a", None)), "lo > hi"),
    ],
)
def test_malformed_subtasks_are_refused(subtasks: tuple[Subtask, ...], message: str) -> None:
    with pytest.raises(ApprenticeError, match=message):
        check_subtasks(fake_task(subtasks))  # type: ignore[arg-type]
