"""The members' page rendered by a real headless Chromium from the API of a synthetic mesh
(the lab test does the same against real agents); skipped where Chromium is missing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from node_agent.site import Site
from tests.chromium import headless_chromium
from tests.unit.test_webapi import site, street


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with headless_chromium() as d:
        yield d


def serve(s: Site, now: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            r = s.respond("GET", self.path, now)
            self.send_response(r.code)
            self.send_header("Content-Type", r.ctype)
            self.send_header("Content-Length", str(len(r.body)))
            self.end_headers()
            self.wfile.write(r.body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def render(driver: Any, url: str, width: int) -> None:
    driver.set_window_size(width, 900)
    driver.get(url)
    deadline = time.monotonic() + 15
    while driver.execute_script("return document.body.getAttribute('data-ready')") != "1":
        assert time.monotonic() < deadline, "the page never finished rendering"
        time.sleep(0.1)


@pytest.mark.parametrize("width", [1280, 390])
def test_page_shows_what_a_member_needs(driver: Any, width: int):
    mesh = street()
    httpd = serve(site(mesh), mesh.now)
    try:
        render(driver, f"http://127.0.0.1:{httpd.server_port}/", width)
        cards = {
            c.get_attribute("data-to"): c.get_attribute("data-quality")
            for c in driver.find_elements("css selector", "#link-cards .card")
        }
        assert cards == {"library": "weak", "n1": "good", "n4": "good"}
        assert "What to try" in driver.find_element("css selector", '.card[data-to="library"]').text
        table = driver.find_element("id", "node-table").text
        assert all(n in table for n in ("n1", "n2", "n3", "n4", "n5", "library", "harbour"))
        checks = {
            m.get_attribute("data-check")
            for m in driver.find_elements("css selector", "#contrib-table .mark")
        }
        assert "verified" in checks
        assert "verified" in driver.find_element("id", "contrib-legend").text
        lines = driver.find_elements("css selector", "#map-box line")
        assert len(lines) == 7
        assert driver.find_elements("css selector", '#map-box line[data-quality="weak"]')
        assert "n1 holds 100%" in driver.find_element("id", "findings").text
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1
    finally:
        httpd.shutdown()
