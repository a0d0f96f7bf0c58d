"""Several processes labelling the same item: exactly one wins each version, nothing is lost."""

import multiprocessing as mp

import numpy as np

from core.store import Store
from core.store.db import dispose_engines

N = 4
TASK = "tumor_type"
CLASSES = ("glioma", "meningioma", "pituitary")  # the store accepts only classes of the task


def _label(value: str) -> str:
    """Process "v<i>" saves a real class; its reviewer name "r-v<i>" tells the processes apart."""
    return CLASSES[int(value[1:]) % len(CLASSES)]


def _once(url, item, value, barrier, out):
    from core.store import VersionConflict
    from core.store.db import get_engine

    repo = Store(get_engine(url))
    barrier.wait(30)
    try:
        out.put(("won", value, repo.queue.label(item, TASK, _label(value), f"r-{value}", expect_version=0)))
    except VersionConflict as exc:
        out.put(("conflict", value, exc.current_version, exc.current_label.reviewer[2:]))


def _until_saved(url, item, value, barrier, out):
    from core.store import VersionConflict
    from core.store.db import get_engine

    repo = Store(get_engine(url))
    barrier.wait(30)
    conflicts = 0
    while True:
        seen = repo.queue.entry(item, TASK).version
        try:
            repo.queue.label(item, TASK, _label(value), f"r-{value}", expect_version=seen)
            out.put(("saved", value, conflicts))
            return
        except VersionConflict:
            conflicts += 1


def _run(target, url, item):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(N), ctx.Queue()
    dispose_engines()  # no pooled connection crosses the fork
    procs = [ctx.Process(target=target, args=(url, item, f"v{i}", barrier, out)) for i in range(N)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


def test_concurrent_labelling_from_processes(repo, db_url):
    cid = repo.cases.save({"modality": "MR", "shape": (2, 4, 4)}, np.zeros((2, 4, 4)), tasks=[TASK])
    first, second = [i.id for i in repo.cases.items(cid)]

    # all save against version 0 at once: exactly one wins, the others see its label
    results = _run(_once, db_url, first)
    won = [r for r in results if r[0] == "won"]
    lost = [r for r in results if r[0] == "conflict"]
    assert len(won) == 1 and len(lost) == N - 1 and won[0][2] == 1
    assert all(r[2] == 1 and r[3] == won[0][1] for r in lost)
    again = Store.open(db_url)
    assert [h.reviewer for h in again.queue.label_history(first, TASK)] == [f"r-{won[0][1]}"]
    audit = again.audit.entries(action="label", entity_id=f"{first}:{TASK}")
    assert [(a.actor, a.after["label"]) for a in audit] == [(f"r-{won[0][1]}", _label(won[0][1]))]

    # each retries after a conflict: every label lands, versions 1..N, audit complete
    results = _run(_until_saved, db_url, second)
    assert sorted(r[1] for r in results) == [f"v{i}" for i in range(N)]
    hist = again.queue.label_history(second, TASK)
    assert [h.version for h in hist] == list(range(1, N + 1))
    assert sorted(h.reviewer for h in hist) == [f"r-v{i}" for i in range(N)]
    assert all(h.value == _label(h.reviewer[2:]) for h in hist)
    assert [h.replaced_label_id for h in hist[1:]] == [h.id for h in hist[:-1]]  # a chain
    assert again.queue.entry(second, TASK).version == N
    audit = again.audit.entries(action="label", entity_id=f"{second}:{TASK}")
    assert [a.after["version"] for a in audit] == list(range(1, N + 1))
    assert [a.after["label"] for a in audit] == [h.value for h in hist]
