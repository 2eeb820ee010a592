"""Tasks for the web tests (tests/web). Importable as ``web_tasks`` in the pytest process
and in subprocesses (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import trio

from fairchild import Record, task

# Set by a test to let `gated` finish (in-process WorkerPool only).
GATES: dict[str, trio.Event] = {}


@task()
def send_email(to: str, subject: str, body: str = ""):
    return Record({"sent": True, "to": to})


@task()
def multiply(x: int, y: int):
    return Record(x * y)


@task()
def sum_results(values: list):
    return Record(sum(values))


@task()
def fan_out(items: list[int]):
    """Spawns len(items) multiply children and one sum_results that waits for them all."""
    futures = [multiply(x=i, y=2) for i in items]
    sum_results(values=futures)
    return Record({"spawned": len(items) + 1})


@task(max_attempts=1)
def explode(message: str):
    raise ValueError(message)


@task()
async def gated(name: str):
    """Waits until the test sets GATES[name] (in-process workers only)."""
    gate = GATES.setdefault(name, trio.Event())
    await gate.wait()
    return Record(name)


@task()
def gated_flow(name: str):
    """A workflow root whose one child waits at GATES[name]."""
    gated(name=name)
    return Record({"started": name})
