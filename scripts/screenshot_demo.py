"""Take a headless Chromium screenshot of the demo's index.html, to check that it renders.

    python scripts/screenshot_demo.py flux2-int8-demo            # writes flux2-int8-demo/screenshot.png
    python scripts/screenshot_demo.py page.html --out shot.png --window-size 1400,900

Chromium runs with a fresh profile in a temporary folder and with every background
network feature off, so it works offline and leaves nothing behind. Exits 2 with a
one-line message when no Chromium is installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",  # containers often run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def screenshot(page: Path, out: Path, window_size: str = "1280,1000", browser: str | None = None, timeout: float = 60.0) -> Path:
    """Render `page` (an .html file, or a folder holding index.html) to the PNG `out`."""
    page = page / "index.html" if page.is_dir() else page
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such page")
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)}); on Debian: apt-get install chromium")
    out = out.absolute()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="flux2-int8-chromium-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={window_size}", page.absolute().as_uri()]
        completed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {completed.returncode}): {completed.stderr.strip()[-500:]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the demo folder, or an .html file")
    parser.add_argument("--out", type=Path, help="PNG to write (default: screenshot.png next to the page)")
    parser.add_argument("--window-size", default="1280,1000", help="WIDTH,HEIGHT in px (default 1280,1000)")
    parser.add_argument("--browser", help="the browser binary (default: the first Chromium on PATH)")
    args = parser.parse_args()
    folder = args.page if args.page.is_dir() else args.page.parent
    try:
        written = screenshot(args.page, args.out or folder / "screenshot.png", args.window_size, args.browser)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
