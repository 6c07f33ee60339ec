"""Open a Snakemake report of this workflow in a real headless browser, check what a reader sees, and save
screenshots: the landing page (its first heading at the top of the window), and tables shown inline in the page
(the HTML pages of rule table_html in the report's viewer frame, with their rows visible).

Needs Playwright and a Chromium (not project dependencies: a check for people changing the report):
    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    apt-get install chromium            # or: /tmp/pw/bin/playwright install chromium
    /tmp/pw/bin/python scripts/report_screenshots.py results/report.html docs/figures/report --browser /usr/bin/chromium
Exit status 1 (and the reason) when a check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHECKED_TABLES = ("summary/accuracy", "tables/precision_grid/table3_std_acc")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="the report (snakemake --report results/report.html)")
    ap.add_argument("out", help="folder for the screenshots")
    ap.add_argument("--browser", default=None, help="a Chromium executable (default: Playwright's own)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.browser, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(Path(args.report).resolve().as_uri())
        page.wait_for_selector(".prose h1")
        top = page.evaluate("() => document.querySelector('.prose h1').getBoundingClientRect().top")
        if not 0 <= top < 200:
            problems.append(f"landing page: its first heading is at y={top:.0f}, not at the top of the window")
        page.screenshot(path=str(out / "landing.png"))
        for name in CHECKED_TABLES:
            page.get_by_role("link", name="Tables").click()
            row = page.get_by_text(name, exact=True)
            row.locator("xpath=..").locator("a[iconname=eye]").click()
            frame_el = page.wait_for_selector("iframe")
            frame = frame_el.content_frame()
            frame.wait_for_selector("table")
            n_rows = frame.evaluate("() => document.querySelectorAll('table tbody tr').length")
            visible = frame_el.bounding_box()
            if n_rows < 1 or not visible or visible["height"] < 300:
                problems.append(f"{name}: {n_rows} table rows, frame {visible}: not shown inline")
            print(f"{name}: {n_rows} rows shown inline, frame {visible['width']:.0f}x{visible['height']:.0f}")
            page.screenshot(path=str(out / (name.replace("/", "_") + ".png")))
        browser.close()
    for msg in problems:
        print("FAILED:", msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
