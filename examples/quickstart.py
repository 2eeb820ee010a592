"""The quick start, in Trio.

    python examples/quickstart.py                       # install the schema, enqueue a job
    fairchild worker --import examples.quickstart       # run it (Ctrl-C to stop)

With no FAIRCHILD_DATABASE_URL both use the embedded PostgreSQL in .fairchild/.
"""

from __future__ import annotations

import logging

import trio

from fairchild import Fairchild, Record, task

log = logging.getLogger(__name__)


@task(queue="default")
def send_email(to: str, subject: str, body: str) -> Record:
    # Your email sending logic here.
    log.info("sending email to %s: %s", to, subject)
    return Record({"sent": True, "to": to})


async def main() -> None:
    async with Fairchild() as fairchild:
        await fairchild.install()
        job = await send_email.enqueue(to="user@example.com", subject="Hello", body="Welcome to Fairchild!")
        print(f"enqueued {job.task} as job {job.id} ({job.state})")


if __name__ == "__main__":
    trio.run(main)
