"""The dashboard in a real browser: headless Chromium driven by Playwright (no browser
download: the system's /usr/bin/chromium). Runs a real workflow on an in-process
WorkerPool, then checks the overview, a job page and a workflow page: the DAG has one SVG
node per job, a state change arrives live (no reload), the theme toggle works and is
remembered, nothing violates the CSP. Screenshots go to test-artifacts/ (the README's come from scripts/screenshots).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

import web_tasks
from webutil import start_web  # noqa: F401 - fixture

CHROMIUM = os.environ.get("FAIRCHILD_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

async def drive_browser(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run browser_driver.py; release the gate when it asks; return its result."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(Path(__file__).with_name("browser_driver.py")), json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    buf = b""
    result: dict[str, Any] | None = None
    errors = b""

    async def read_stderr() -> None:
        nonlocal errors
        async for chunk in proc.stderr:
            errors += chunk

    try:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_stderr)
                async for chunk in proc.stdout:
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line == b"GATE":
                            web_tasks.GATES.setdefault("browser", trio.Event()).set()
                            await proc.stdin.send_all(b"go\n")
                        elif line.startswith(b"RESULT "):
                            result = json.loads(line[7:])
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
    assert result is not None, f"browser driver failed (exit {proc.returncode}):\n{errors.decode(errors='replace')[-4000:]}"
    return result


@pytest.mark.slow
async def test_dashboard_in_chromium(fairchild, start_worker, start_web, sql) -> None:
    pytest.importorskip("playwright.sync_api")
    web = await start_web()
    await start_worker(concurrency=8)

    fan = await web_tasks.fan_out.enqueue(items=list(range(1, 9)))
    failed = await web_tasks.explode.enqueue(message="boom: <b>not bold</b>")
    hostile = await web_tasks.send_email.enqueue(
        to="<img src=x onerror=alert(1)>", subject="<script>alert('xss')</script>", _queue="paused_q"
    )
    await fairchild.pause_queue("paused_q")
    await fairchild.wait(fan, timeout=30)
    await fairchild.wait(failed, timeout=30)

    # A workflow of 1,000 jobs (a root and 999 children) in a paused queue, states mixed.
    await fairchild.pause_queue("big")
    root = uuid.uuid4()
    big = [web_tasks.multiply.prepare({"x": 0, "y": 0}, job_id=root, queue="big")]
    big += [web_tasks.multiply.prepare({"x": i, "y": 2}, queue="big", parent_id=root, workflow_id=root)
            for i in range(999)]
    await fairchild.insert_jobs(big)
    await sql("UPDATE fairchild_jobs SET state = (ARRAY['completed','completed','running','available','discarded'])"
              "[1 + (abs(hashtext(id::text)) % 5)] WHERE workflow_id = $1 AND id <> $1", root)
    await sql("UPDATE fairchild_jobs SET state = 'waiting' WHERE id = $1", root)

    gated = await web_tasks.gated_flow.enqueue(name="browser")
    with trio.fail_after(20):
        while True:
            rows = await sql("SELECT id, state FROM fairchild_jobs WHERE parent_id = $1", gated.id)
            if rows and rows[0]["state"] == "running":
                break
            await trio.sleep(0.05)
    child_id = str(rows[0]["id"])
    fan_total = (await sql("SELECT count(*) AS n FROM fairchild_jobs WHERE workflow_id = $1", fan.id))[0]["n"]
    fan_edges = (await sql(
        "SELECT count(*) AS n FROM fairchild_edges e JOIN fairchild_jobs d ON d.id = e.downstream_id "
        "WHERE d.workflow_id = $1", fan.id))[0]["n"]

    ids = {"fan_out": str(fan.id), "failed": str(failed.id), "hostile": str(hostile.id),
           "gated": str(gated.id), "gated_child": child_id, "big": str(root)}
    cfg = {"url": web.url, "ids": ids, "chromium": CHROMIUM, "artifacts": str(ARTIFACTS)}
    out = await drive_browser(cfg)

    assert out["page_errors"] == []
    assert out["console_errors"] == [], out["console_errors"]  # includes CSP violations
    assert out["dialogs"] == []  # no injected script ran
    assert int(out["overview_completed"]) >= fan_total
    assert out["queues_rows"] >= 3 and out["resumed"]
    assert (await sql("SELECT paused FROM fairchild_queues WHERE name = 'paused_q'"))[0]["paused"] is False
    assert out["theme_before"] == "light"
    assert out["theme_after_toggle"] == "dark" and out["theme_stored"] == "dark"
    assert out["theme_after_reload"] == "dark"
    assert out["bg_dark"] != out["bg_light"]
    assert out["failed_state"] == "discarded"
    assert "ValueError" in out["error_text"] and "boom: <b>not bold</b>" in out["error_text"]
    assert "Traceback" in out["error_text"]
    assert "<img src=x onerror=alert(1)>" in out["hostile_args"] and out["hostile_imgs"] == 0
    assert out["fan_nodes"] == fan_total == 10
    assert out["fan_completed_nodes"] == fan_total
    assert out["fan_edges"] >= fan_edges  # futures edges plus parent->child edges
    assert out["clicked_to"].endswith(f"/jobs/{fan.id}")
    assert out["children_rows"] == 9
    assert out["big_nodes"] == 1000, out["big_status"]
    assert out["big_label_px"] >= 9  # the initial zoom keeps labels legible
    assert out["gated_nodes"] == 2 and out["gated_child_before"] == "running"
    assert out["marker"] == "still here" and out["refreshes"] >= 1
    for name in ("overview-light", "overview-dark", "job", "job-failed", "workflow", "workflow-live", "workflow-1000"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5000
