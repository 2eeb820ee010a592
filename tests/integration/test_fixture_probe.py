import trio
from fairchild import task, Record

@task()
def probe_add(a: int, b: int):
    return Record(a + b)

async def test_probe(fairchild, start_worker, sql):
    job = await probe_add.enqueue(a=1, b=2)
    await start_worker(concurrency=2)
    done = await fairchild.wait(job, timeout=10)
    assert done.result == 3
    assert (await sql("SELECT count(*) AS n FROM fairchild_jobs"))[0]["n"] == 1
