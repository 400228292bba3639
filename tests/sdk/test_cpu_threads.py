"""ThreadTuner: picks the thread count whose batches ran fastest, probes neighbours, backs off while the best holds."""

from __future__ import annotations

import threading

import pytest

from ragloom.cpu_threads import ThreadTuner, check_thread_setting, torch_threads
from ragloom.errors import ConfigError


def _drive(tuner: ThreadTuner, seconds_per_token: dict[int, float], batches: int) -> list[int]:
    chosen = []
    for _ in range(batches):
        count = tuner.choose()
        chosen.append(count)
        tuner.record(count, seconds_per_token[count] * 1000, 1000)
    return chosen


def test_candidates_halve_down_to_one() -> None:
    assert ThreadTuner(16).candidates == (16, 8, 4, 2, 1)
    assert ThreadTuner(6).candidates == (6, 3, 1)
    assert ThreadTuner(1).candidates == (1,)


def test_moves_to_one_thread_when_it_is_faster_and_backs_off_probing() -> None:
    tuner = ThreadTuner(2)
    chosen = _drive(tuner, {2: 3.0, 1: 1.0}, 200)  # a loaded machine: one thread beats two
    assert chosen[:2] == [2, 1] and tuner.best == 1
    probes = [i for i, n in enumerate(chosen) if n == 2]
    gaps = [b - a for a, b in zip(probes, probes[1:], strict=False)]
    assert len(probes) < 10 and gaps == sorted(gaps) and gaps[-1] > gaps[0]  # intervals grow while the best holds


def test_stays_on_all_threads_when_they_are_faster() -> None:
    tuner = ThreadTuner(2)
    chosen = _drive(tuner, {2: 1.0, 1: 1.9}, 100)
    assert tuner.best == 2 and chosen.count(1) < 10


def test_follows_a_change_in_load() -> None:
    tuner = ThreadTuner(4)
    _drive(tuner, {4: 1.0, 2: 1.8, 1: 3.5}, 50)
    assert tuner.best == 4
    _drive(tuner, {4: 6.0, 2: 2.0, 1: 1.0}, 300)  # the machine got busy
    assert tuner.best == 1


def test_single_candidate_never_probes() -> None:
    tuner = ThreadTuner(1)
    assert _drive(tuner, {1: 1.0}, 20) == [1] * 20


@pytest.mark.parametrize("bad", [0, -1, "many", True, 2.0])
def test_check_thread_setting_refuses_bad_values(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads must be"):
        check_thread_setting(bad)


def test_torch_threads_restores_after_concurrent_users() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    inside = threading.Barrier(2)

    def user() -> None:
        with torch_threads(torch):
            torch.set_num_threads(1)
            inside.wait(timeout=10)

    workers = [threading.Thread(target=user) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert torch.get_num_threads() == before
