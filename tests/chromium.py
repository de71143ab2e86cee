"""One headless Chromium for the page tests (unit and lab), skipped where it is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A selenium driver of Debian's chromium; skips the test where selenium or it is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    exe = shutil.which("chromedriver")
    if exe is None or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium and chromium-driver")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(exe), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
