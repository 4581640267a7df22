"""Look at a ``distillbev report`` page as a person would: open it in headless Chromium (Selenium) and
save a full-page screenshot plus one screenshot per section.

    python scripts/screenshot_report.py runs/demo/report.html --out docs/report_screenshots

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``pip install selenium`` (neither is
a dependency of distillbev). Prints each PNG written and any image on the page the browser could not
decode (``naturalWidth == 0``); exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def driver(width: int):
    """A headless Chromium of the given window width."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},1000",
        "--hide-scrollbars",
    ):
        opts.add_argument(arg)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        opts.binary_location = binary
    path = shutil.which("chromedriver")
    return webdriver.Chrome(options=opts, service=Service(path) if path else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path, help="the report's HTML file")
    ap.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    ap.add_argument("--width", type=int, default=1400, help="browser window width (px)")
    args = ap.parse_args()
    from selenium.webdriver.common.by import By

    args.out.mkdir(parents=True, exist_ok=True)
    d = driver(args.width)
    try:
        d.get(args.page.resolve().as_uri())
        broken = d.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt || i.src.slice(0, 60));"
        )
        height = d.execute_script("return document.documentElement.scrollHeight;")
        d.set_window_size(args.width, height + 100)
        full = args.out / "page.png"
        d.save_screenshot(str(full))
        print(f"wrote {full} ({args.width} x {height} px)")
        for i, sec in enumerate(d.find_elements(By.TAG_NAME, "section")):
            title = sec.find_elements(By.CSS_SELECTOR, "h1, h2")
            name = title[0].text if title else f"section {i}"
            path = args.out / f"section_{i:02d}.png"
            sec.screenshot(str(path))
            print(f"wrote {path} ({name})")
    finally:
        d.quit()
    for b in broken:
        print(f"broken image: {b}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
