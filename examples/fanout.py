"""Fan-out / fan-in (map-reduce), from the README's "Dynamic workflows".

    python examples/fanout.py            # prints the orchestrator's record and the sum (12)
    python examples/fanout.py 1 2 3 4    # other items

Runs a WorkerPool in this process, enqueues the workflow, waits for the whole of it and
prints the result. With no FAIRCHILD_DATABASE_URL it uses the embedded PostgreSQL in
.fairchild/. The tasks use their own queue, so the in-process worker leaves other
programs' jobs alone (`fairchild worker --import examples.fanout --queues examples`
runs them too).
"""

from __future__ import annotations

import sys

import trio

from fairchild import Fairchild, Record, WorkerPool, task

QUEUE = "examples"


@task(queue=QUEUE)
def multiply(x: int, y: int):
    return Record(x * y)


@task(queue=QUEUE)
def sum_results(values: list):
    return Record(sum(values))


@task(queue=QUEUE)
def orchestrator(items: list[int]):
    # Fan-out: each call spawns a child job and returns a Future.
    futures = [multiply(x=item, y=2) for item in items]
    # Fan-in: sum_results waits for every multiply and receives their values.
    sum_results(values=futures)
    return Record({"spawned": len(items) + 1})


async def main(items: list[int]) -> int:
    async with Fairchild() as fairchild:
        await fairchild.install()
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(fairchild, queues=[QUEUE], concurrency=10, grace=5)
            await nursery.start(pool.run)
            root = await orchestrator.enqueue(items=items)
            done = await fairchild.wait(root, timeout=60)  # the whole workflow is final
            pool.stop()
        workflow = await fairchild.get_workflow(root)
        total = next(job for job in workflow["jobs"] if job.task == sum_results.name)
        print(f"orchestrator({items}): {done.state.value}, {done.result}")
        print(f"sum_results: {total.result}")
        print(f"workflow {workflow['workflow_id']}: {workflow['state']}, {workflow['total']} jobs, "
              f"{len(workflow['edges'])} edges")
        return total.result


if __name__ == "__main__":
    trio.run(main, [int(a) for a in sys.argv[1:]] or [1, 2, 3])
