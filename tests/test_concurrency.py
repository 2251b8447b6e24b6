"""One server, many sessions: shared detectors and models give each session exactly what it would
get alone, and the analysis gate queues work instead of piling it onto the cores."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from PIL import Image
from skimage import data as skimage_data

from fer_core.inference.photo import analyse
from fer_core.shared import Gate, Pool

SESSIONS = 8


def photos() -> list[tuple[str, bytes]]:
    """Eight different photos of one face: the astronaut at eight sizes, on canvases of eight
    shapes (each needs its own input size in YuNet's network)."""
    face = Image.fromarray(skimage_data.astronaut())
    out = []
    for i in range(SESSIONS):
        side = 220 + 70 * i
        canvas = Image.new("RGB", (side + 40 * (i % 3) + 60, side + 30 * (i % 2) + 20), (90, 100, 110))
        canvas.paste(face.resize((side, side)), (30, 10))
        buf = io.BytesIO()
        canvas.save(buf, "PNG")
        out.append((f"photo{i}.png", buf.getvalue()))
    return out


def _summary(result):
    return [(f.box.as_list(), f.label, f.proba, f.cam) for f in result.faces], result.error


def test_eight_sessions_at_once_get_what_each_gets_alone(shipped_engine):
    """Regression: the face detector was one OpenCV network shared by every session's thread, its
    input size changed per photo: at once, a photo came back with another's faces, or the server
    crashed. Eight threads analyse eight different photos, three times, and must match."""
    model, classes = shipped_engine
    items = photos()
    alone = [_summary(analyse([item], model, classes, tta="flip", explain=True)[0]) for item in items]
    assert all(len(faces) == 1 and err is None for faces, err in alone)
    for _ in range(3):
        got: dict[int, object] = {}
        start = threading.Barrier(SESSIONS)

        def session(i: int) -> None:
            start.wait()
            got[i] = _summary(analyse([items[i]], model, classes, tta="flip", explain=True)[0])

        threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert sorted(got) == list(range(SESSIONS)), "a session never finished"
        for i in range(SESSIONS):
            (faces, err), (want, want_err) = got[i], alone[i]
            assert err == want_err and len(faces) == len(want), (i, faces, want)
            for (box, label, proba, cam), (wbox, wlabel, wproba, wcam) in zip(faces, want):
                assert box == wbox and label == wlabel
                np.testing.assert_allclose(proba, wproba, atol=1e-5)
                np.testing.assert_allclose(cam, wcam, atol=1e-4)


def test_the_gate_runs_at_most_its_capacity_and_tells_the_others_their_place():
    gate, inside, most = Gate(2), [0], [0]
    lock, told, order = threading.Lock(), {}, []
    release = threading.Event()

    def work(i: int) -> None:
        with gate.slot(on_wait=lambda n: told.setdefault(i, []).append(n)):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                order.append(i)
            release.wait(30)
            with lock:
                inside[0] -= 1

    threads = []
    for i in range(5):  # one at a time, so the arrival order is known
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(order) + len(gate.queue) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert order == [0, 1] and len(gate.queue) == 3
    deadline = time.monotonic() + 10
    while sorted(told) != [2, 3, 4] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert told == {2: [2], 3: [3], 4: [4]}  # two running, then those queued ahead
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert most[0] == 2 and order == [0, 1, 2, 3, 4] and gate.running == 0 and not gate.queue


def test_a_pool_never_lends_one_instance_to_two_threads():
    made, busy, clash = [], set(), []
    pool = Pool(lambda: made.append(object()) or made[-1], 3)
    lock = threading.Lock()

    def use() -> None:
        for _ in range(50):
            with pool.borrow() as item:
                with lock:
                    if id(item) in busy:
                        clash.append(item)
                    busy.add(id(item))
                time.sleep(0.0005)
                with lock:
                    busy.discard(id(item))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not clash and 1 <= len(made) <= 3


def test_stderr_silencing_from_several_threads_always_restores_it():
    """Two overlapping quiet blocks that end out of order (a video opening while TensorFlow is
    imported) left the server's stderr pointing at /dev/null for good."""
    import os

    from fer_core.device import quiet_stderr

    before = os.fstat(2)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def long_block():
        with quiet_stderr():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def short_block():
        first_in.wait(10)
        with quiet_stderr():
            second_in.set()
            first_out.wait(10)  # ends after the first block ended: out of order

    threads = [threading.Thread(target=long_block), threading.Thread(target=short_block)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def fill_the_gate(gate) -> tuple[threading.Event, list[threading.Thread]]:
    """Every place of ``gate`` taken by a thread that holds it until the returned event is set."""
    release = threading.Event()

    def hold():
        with gate.slot():
            release.wait(30)

    holders = [threading.Thread(target=hold) for _ in range(gate.capacity)]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 10
    while gate.running < gate.capacity and time.monotonic() < deadline:
        time.sleep(0.01)
    return release, holders


def test_a_cached_result_does_not_wait_behind_other_analyses():
    import ui
    from fer_core.shared import analysis_gate

    calls = []

    def work(x):
        calls.append(x)
        return x * 2

    assert ui.gated(work, 21) == 42  # computed through the gate, remembered
    gate = analysis_gate()
    release, holders = fill_the_gate(gate)
    assert gate.running == gate.capacity  # every place taken by others' analyses
    done = []
    t = threading.Thread(target=lambda: done.append(ui.gated(work, 21)))
    t.start()
    t.join(timeout=10)
    assert done == [42]  # a rerun that hits the cache returned at once
    release.set()
    for h in holders:
        h.join(timeout=30)


def test_first_page_loads_of_several_sessions_never_break_tensorflow():
    """A fresh server: ui's background import of TensorFlow and three sessions' first pages at once.
    Without the wait, a page's own ``import tensorflow`` raced it and Python handed out half-initialised
    modules for the rest of the server's life ("module 'keras' has no attribute 'KerasTensor'")."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(root / "tests" / "first_page_loads.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_a_result_the_cache_dropped_waits_its_turn_again(monkeypatch):
    """Regression: the gate's record of computed results (256 keys) outlived the results cache
    (32 entries): after one session analysed 40 photos, six sessions' uploads ran at once past
    FER_MAX_ANALYSES=1. Now the cache is the record: a dropped result queues like a new one."""
    import ui
    from fer_core import shared

    small = shared.ResultCache(entries=2, max_bytes=10**6, ttl=600)
    monkeypatch.setattr(ui, "result_cache", lambda: small)
    calls = []

    def work(x):
        calls.append(x)
        return [x]

    for x in (1, 2, 3):  # the third pushes the first out
        assert ui.gated(work, x) == [x]
    got = ui.gated(work, 3)
    got.append("changed by one session")
    assert ui.gated(work, 3) == [3] and calls == [1, 2, 3]  # a hit: a copy, not computed again
    gate = shared.analysis_gate()
    release, holders = fill_the_gate(gate)
    done = []
    t = threading.Thread(target=lambda: done.append(ui.gated(work, 1)))
    t.start()
    deadline = time.monotonic() + 10
    while not gate.queue and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(gate.queue) == 1 and not done  # dropped from the cache: it waits at the gate
    release.set()
    t.join(timeout=30)
    for h in holders:
        h.join(timeout=30)
    assert done == [[1]] and calls == [1, 2, 3, 1]


def test_the_result_cache_is_bounded_in_entries_bytes_and_age():
    from fer_core.shared import ResultCache

    now = [0.0]
    cache = ResultCache(entries=3, max_bytes=3000, ttl=10, clock=lambda: now[0])
    for k in "abc":
        cache.put(k, b"x" * 900)
    assert all(cache.get(k)[0] for k in "abc") and cache.size <= 3000
    cache.put("d", b"x" * 900)  # over the bytes: the least recently used goes
    assert not cache.get("a")[0] and cache.get("d")[0] and cache.size <= 3000
    cache.put("huge", b"x" * 5000)  # larger than the whole budget: not kept, nothing else lost
    assert not cache.get("huge")[0] and cache.get("d")[0]
    now[0] = 11
    assert not cache.get("d")[0] and not cache.get("b")[0]  # too old
