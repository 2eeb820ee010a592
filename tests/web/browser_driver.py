"""Drives headless Chromium through the dashboard (run as a subprocess by test_web_browser.py).

Playwright's sync API runs its own asyncio loop, which cannot live in the test process
(trio-asyncio's loop policy is process-wide), so the browser runs here. Protocol: argv[1]
is a JSON object {url, ids, chromium, artifacts}; when the page is ready for the
live-update check this prints "GATE" and waits for a line on stdin; at the end it prints
"RESULT <json>".
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def release_gate() -> None:
    sys.stdout.write("GATE\n")
    sys.stdout.flush()
    sys.stdin.readline()


def run_browser(url: str, ids: dict[str, str], chromium: str, artifacts: Path) -> dict[str, Any]:
    """Every browser step; returns what the test asserts on."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"console_errors": [], "page_errors": [], "dialogs": []}
    artifacts.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix="fairchild-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=ARGS,
                viewport={"width": 1360, "height": 900}, color_scheme="light",
            )
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.on("console", lambda m: out["console_errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out["page_errors"].append(str(e)))
            page.on("dialog", lambda d: (out["dialogs"].append(d.message), d.dismiss()))

            # Overview: counts, chart, live indicator.
            page.goto(url + "/")
            page.wait_for_selector("#chart[data-ready='1'] canvas", timeout=15000)
            page.wait_for_selector("#live[data-state='connected']", timeout=10000)
            out["overview_completed"] = page.inner_text("#counts .card.state-completed .card-n")
            out["queues_rows"] = page.locator("#queues tbody tr").count()
            page.screenshot(path=str(artifacts / "overview-light.png"), full_page=True)

            # Theme: toggle to dark, remembered across a reload.
            before = page.evaluate("window.fairchildTheme.current()")
            page.click("#theme-toggle")
            out["theme_after_toggle"] = page.evaluate("window.fairchildTheme.current()")
            out["theme_stored"] = page.evaluate("localStorage.getItem('fairchild-theme')")
            out["bg_dark"] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.reload()
            page.wait_for_selector("#chart[data-ready='1'] canvas", timeout=15000)
            out["theme_after_reload"] = page.evaluate("document.documentElement.getAttribute('data-theme')")
            page.screenshot(path=str(artifacts / "overview-dark.png"), full_page=True)
            page.click("#theme-toggle")
            out["theme_before"] = before
            out["bg_light"] = page.evaluate("getComputedStyle(document.body).backgroundColor")

            # An action button: resume a paused queue (JSON POST with the CSRF token).
            page.click("button[data-action='/api/queues/paused_q/resume']")
            page.wait_for_selector("button[data-action='/api/queues/paused_q/pause']", timeout=10000)
            out["resumed"] = True

            # A failed job: its error and traceback; hostile args shown as text.
            page.goto(url + f"/jobs/{ids['failed']}")
            out["failed_state"] = page.get_attribute("#job-state", "data-state")
            out["error_text"] = page.inner_text("#job-errors")
            page.screenshot(path=str(artifacts / "job-failed.png"), full_page=True)
            page.goto(url + f"/jobs/{ids['hostile']}")
            out["hostile_args"] = page.inner_text("#job-args")
            out["hostile_imgs"] = page.locator("#job-args img").count()

            # The fan-out workflow: one SVG node per job; click through to a job.
            page.goto(url + f"/workflows/{ids['fan_out']}")
            page.wait_for_selector("#graph[data-ready='1'] svg g.node", timeout=15000)
            out["fan_nodes"] = page.locator("#graph svg g.node").count()
            out["fan_edges"] = page.locator("#graph svg path.edge").count()
            out["fan_completed_nodes"] = page.locator("#graph svg g.node[data-state='completed']").count()
            page.screenshot(path=str(artifacts / "workflow.png"), full_page=False)
            page.click(f"#graph svg g.node[data-id='{ids['fan_out']}']")
            page.wait_for_url(f"**/jobs/{ids['fan_out']}", timeout=10000)
            out["clicked_to"] = page.url
            out["children_rows"] = page.locator("#job-children tbody tr").count()
            page.screenshot(path=str(artifacts / "job.png"), full_page=True)

            # A 1,000-job workflow: every job drawn, and readable at the initial zoom.
            page.goto(url + f"/workflows/{ids['big']}")
            page.wait_for_selector("#graph[data-ready='1'] svg g.node", timeout=60000)
            out["big_nodes"] = page.locator("#graph svg g.node").count()
            out["big_status"] = page.inner_text("#graph-status")
            out["big_label_px"] = page.evaluate(
                "document.querySelector('#graph svg g.node text.label').getBoundingClientRect().height")
            page.screenshot(path=str(artifacts / "workflow-1000.png"))

            # Live: the gated workflow's child is running; release it and watch both nodes
            # turn completed without a reload.
            page.goto(url + f"/workflows/{ids['gated']}")
            page.wait_for_selector("#graph[data-ready='1'] svg g.node", timeout=15000)
            page.wait_for_selector("#live[data-state='connected']", timeout=10000)
            out["gated_nodes"] = page.locator("#graph svg g.node").count()
            out["gated_child_before"] = page.get_attribute(f"g.node[data-id='{ids['gated_child']}']", "data-state")
            page.evaluate("window.__noReload = 'still here'")
            release_gate()
            page.wait_for_selector(f"g.node[data-id='{ids['gated_child']}'][data-state='completed']", timeout=15000)
            page.wait_for_selector(f"g.node[data-id='{ids['gated']}'][data-state='completed']", timeout=15000)
            out["marker"] = page.evaluate("window.__noReload")
            out["refreshes"] = page.evaluate("window.fairchild.refreshes")
            page.screenshot(path=str(artifacts / "workflow-live.png"))
            ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return out



def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = run_browser(cfg["url"], cfg["ids"], cfg["chromium"], Path(cfg["artifacts"]))
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
