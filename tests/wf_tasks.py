"""Tasks for the issue-3 (workflow) tests: the README's examples in Trio form, and a few
shapes of our own. Importable as ``wf_tasks`` in pytest and in worker subprocesses."""

from __future__ import annotations

import os
from collections import defaultdict

import trio

from fairchild import Record, task

CALLS: defaultdict[str, int] = defaultdict(int)

# -- README: basic example (requests.get replaced by a fixed payload) ---------------------------


@task()
def fetch_data(url: str):
    data = {"url": url, "items": [1, 2, 3]}
    return Record(data)


@task()
def process(data: dict):
    # By the time this runs, `data` is fetch_data's recorded value.
    return Record({"processed": True, "items_seen": len(data["items"]), "from": data["url"]})


@task()
def basic_orchestrator():
    data = fetch_data(url="https://api.example.com/data")
    process(data=data)  # won't run until fetch_data completes
    return Record({"started": True})


# -- README: fan-out / fan-in ---------------------------------------------------------------


@task()
def multiply(x: int, y: int):
    return Record(x * y)


@task()
def sum_results(values: list):
    return Record(sum(values))


@task()
def orchestrator(items: list[int]):
    # Fan-out: spawn parallel tasks, collect futures
    futures = []
    for item in items:
        future = multiply(x=item, y=2)
        futures.append(future)
    # Fan-in: sum_results won't run until ALL multiply jobs complete
    sum_results(values=futures)
    return Record({"spawned": len(items) + 1})


# -- README: accessing results (portfolio) ----------------------------------------------------

PRICES = {"AAPL": 190.5, "MSFT": 410.25, "GOOG": 140.0}


def get_stock_price(symbol: str) -> float:
    return PRICES[symbol]


@task()
def fetch_price(symbol: str):
    price = get_stock_price(symbol)
    return Record({"symbol": symbol, "price": price})


@task()
def calculate_total(prices: list):
    total = sum(p["price"] for p in prices)
    return Record({"total": total})


@task()
def portfolio_value(symbols: list[str]):
    futures = [fetch_price(symbol=s) for s in symbols]
    return calculate_total(prices=futures)


# -- README: nested workflows -----------------------------------------------------------------

ITEMS_PER_BATCH = 5


def get_items(batch_id: int) -> list[int]:
    return [batch_id * 100 + i for i in range(ITEMS_PER_BATCH)]


@task()
def process_item(item_id: int):
    return Record(item_id * 2)


@task()
def aggregate(results: list):
    return Record(sum(results))


@task()
def final_summary(batch_results: list):
    return Record({"batches": len(batch_results), "values": batch_results, "total": sum(batch_results)})


@task()
def process_batch(batch_id: int):
    # This task can spawn its own sub-workflow
    futures = [process_item(item_id=i) for i in get_items(batch_id)]
    return aggregate(results=futures)


@task()
def run_all_batches():
    # Top-level orchestrator spawns batch processors
    futures = [process_batch(batch_id=i) for i in range(10)]
    return final_summary(batch_results=futures)


# -- shapes of our own ------------------------------------------------------------------------


@task()
def value(v: int):
    return Record(v)


@task()
async def add_one(v: int):
    await trio.sleep(0)
    return Record(v + 1)


@task()
def double(v: int):
    return Record(v * 2)


@task()
def join(a: int, b: int):
    return Record({"a": a, "b": b, "sum": a + b})


@task()
def diamond(n: int):
    source = value(v=n)
    left = add_one(v=source)
    right = double(v=source)
    return join(a=left, b=right)


@task()
def collect(values: list):
    return Record(values)


@task()
def fan_out(n: int):
    return collect(values=[value(v=i) for i in range(n)])


@task()
def show(data: dict):
    return Record(data)


@task()
def nested_args():
    a = value(v=1)
    b = add_one(v=a)
    return show(data={"list": [a, [b, {"deep": a}]], "dict": {"x": b, "y": [1, "two", None]}, "plain": 3})


@task(max_attempts=3)
def fails_after_spawning(key: str, children: int):
    """Spawns children, then fails on its first attempt; succeeds on the second."""
    futures = [value(v=i) for i in range(children)]
    CALLS[key] += 1
    if CALLS[key] == 1:
        raise RuntimeError("failing after spawning")
    return collect(values=futures)


@task(max_attempts=1)
def broken(v: int):
    raise ValueError(f"broken upstream {v}")


@task()
def failing_chain():
    bad = broken(v=1)
    first = add_one(v=bad)
    second = double(v=first)
    third = join(a=second, b=first)
    ok = value(v=7)  # an independent child that completes
    return Record({"spawned": 5})


@task()
def reads_future():
    f = value(v=1)
    return Record(f.value)


@task()
async def awaits_future():
    f = value(v=1)
    return Record(await f)


@task()
def bools_future():
    f = value(v=1)
    return Record(1 if f else 0)


@task()
def race_fan_out(tag: str, n: int):
    return race_fan_in(tag=tag, values=[value(v=i) for i in range(n)])


@task()
def race_fan_in(tag: str, values: list):
    """Appends one line per execution to $WF_RACE_DIR/<pid> (O_APPEND: atomic lines)."""
    directory = os.environ["WF_RACE_DIR"]
    fd = os.open(os.path.join(directory, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{tag} {sum(values)}\n".encode())
    finally:
        os.close(fd)
    return Record(sum(values))


@task()
async def async_spawner(n: int):
    """An async task spawns children too (on the Trio thread)."""
    return collect(values=[double(v=i) for i in range(n)])


# -- a failure deep inside a nested workflow ---------------------------------------------------


@task(max_attempts=1)
def fragile_item(item_id: int, fail: bool):
    if fail:
        raise RuntimeError(f"item {item_id} failed")
    return Record(item_id)


@task()
def fragile_batch(batch_id: int, failing_batch: int):
    futures = [fragile_item(item_id=batch_id * 10 + i, fail=(batch_id == failing_batch and i == 1))
               for i in range(3)]
    return aggregate(results=futures)


@task()
def fragile_run(failing_batch: int):
    return final_summary(batch_results=[fragile_batch(batch_id=b, failing_batch=failing_batch)
                                        for b in range(3)])
