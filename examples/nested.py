"""Nested workflows, from the README: ten batches, each a sub-workflow of its items.

    python examples/nested.py            # prints the final summary of the 10 batches
    python examples/nested.py 25         # 25 items per batch

`process_batch` spawns one job per item and returns the Future of `aggregate(...)`, so it
completes with the aggregate's value; `run_all_batches` returns the Future of
`final_summary(...)`, which receives the ten aggregate values. Runs a WorkerPool in this
process (embedded PostgreSQL in .fairchild/ unless FAIRCHILD_DATABASE_URL is set).
"""

from __future__ import annotations

import os
import sys

import trio

from fairchild import Fairchild, Record, WorkerPool, task

QUEUE = "examples"


def items_of(batch_id: int) -> list[int]:
    per_batch = int(os.environ.get("ITEMS_PER_BATCH", "5"))
    return [batch_id * 100 + i for i in range(per_batch)]


@task(queue=QUEUE)
def process_item(item_id: int):
    return Record(item_id * 2)


@task(queue=QUEUE)
def aggregate(results: list):
    return Record(sum(results))


@task(queue=QUEUE)
def final_summary(batch_results: list):
    return Record({"batches": len(batch_results), "per_batch": batch_results, "total": sum(batch_results)})


@task(queue=QUEUE)
def process_batch(batch_id: int):
    # This task spawns its own sub-workflow and completes with the aggregate's value.
    futures = [process_item(item_id=i) for i in items_of(batch_id)]
    return aggregate(results=futures)


@task(queue=QUEUE)
def run_all_batches():
    # The top-level orchestrator spawns the batch processors.
    futures = [process_batch(batch_id=i) for i in range(10)]
    return final_summary(batch_results=futures)


async def main() -> dict:
    async with Fairchild() as fairchild:
        await fairchild.install()
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(fairchild, queues=[QUEUE], concurrency=20, grace=5)
            await nursery.start(pool.run)
            root = await run_all_batches.enqueue()
            done = await fairchild.wait(root, timeout=120)  # the whole workflow is final
            pool.stop()
        workflow = await fairchild.get_workflow(root)
        print(f"run_all_batches: {done.state.value}, {done.result}")
        print(f"workflow {workflow['workflow_id']}: {workflow['state']}, {workflow['total']} jobs")
        return done.result


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["ITEMS_PER_BATCH"] = sys.argv[1]
    trio.run(main)
