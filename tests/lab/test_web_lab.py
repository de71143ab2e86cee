"""What a member sees, in a real headless Chromium against a running lab: the router page
(names, a link marked lossy after `lab impair`, contribution marks) at desktop and phone width,
the meeting report, a real respondd exchange between nodes, and promtool on a real scrape.

Screenshots go to /tmp/mm-shots/ (not part of the repository).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cli.lab.lab import Lab
from cli.lab.topology import chain
from meshd import defaults
from tests.chromium import headless_chromium
from tests.lab.cliview import agent_lab, cli, cli_json, wait_for

pytestmark = pytest.mark.lab

SHOTS = Path("/tmp/mm-shots")
NODES = ("n1", "n2", "n3", "n4")
DESKTOP, PHONE = (1280, 900), (390, 844)

# Both bridges copy bytes each way until either side closes.
PIPE = r"""
async def pipe(r, w):
    try:
        while (data := await r.read(65536)):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        w.close()
"""
# Inside a node: a unix socket (visible across namespaces) forwarded to the agent's HTTP port.
BRIDGE_IN = (
    r"""
import asyncio, sys
path, port = sys.argv[1], int(sys.argv[2])
"""
    + PIPE
    + r"""
async def handle(r, w):
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, w2), pipe(r2, w))
async def main():
    server = await asyncio.start_unix_server(handle, path=path)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""
)
# On this machine: 127.0.0.1:<free port> forwarded to that unix socket, for the browser.
BRIDGE_OUT = (
    r"""
import asyncio, sys
path = sys.argv[1]
"""
    + PIPE
    + r"""
async def handle(r, w):
    r2, w2 = await asyncio.open_unix_connection(path)
    await asyncio.gather(pipe(r, w2), pipe(r2, w))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""
)
# Inside a node: a respondd query, multicast on one interface, answers printed decoded.
RESPONDD_CLIENT = r"""
import json, socket, sys, time, zlib
group, iface, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(0.5)
query = b"GET nodeinfo statistics neighbours"
s.sendto(query, (group, port, 0, socket.if_nametoindex(iface)))
deadline = time.time() + 3
while time.time() < deadline:
    try:
        data, addr = s.recvfrom(8192)
    except socket.timeout:
        continue
    print(json.dumps({"from": addr[0], "bytes": len(data),
                      "answer": json.loads(zlib.decompress(data, -15))}), flush=True)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with agent_lab("wb", chain(len(NODES))) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as driver:
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield driver


@contextmanager
def page_url(lab: Lab, node: str) -> Iterator[str]:
    """http://127.0.0.1:PORT/ on this machine, reaching `node`'s agent inside its namespace."""
    sock = lab.run_dir / f"web-{node}.sock"
    sock.unlink(missing_ok=True)
    inner = lab.popen(
        node, [sys.executable, "-u", "-c", BRIDGE_IN, str(sock), str(defaults.HTTP_PORT)]
    )
    outer = None
    try:
        assert inner.stdout is not None
        assert inner.stdout.readline().strip() == "ready"
        outer = subprocess.Popen(
            [sys.executable, "-u", "-c", BRIDGE_OUT, str(sock)], stdout=subprocess.PIPE, text=True
        )
        assert outer.stdout is not None
        yield f"http://127.0.0.1:{int(outer.stdout.readline())}/"
    finally:
        for proc in (outer, inner):
            if proc is not None:
                proc.kill()
                proc.communicate()
        sock.unlink(missing_ok=True)


def load(driver: Any, url: str, size: tuple[int, int]) -> str:
    """Open the page and wait until the script has rendered it; the visible text."""
    driver.set_window_size(*size)
    driver.get(url)
    wait_for(
        "page rendered",
        lambda: driver.execute_script("return document.body.getAttribute('data-ready')") == "1",
        20,
        0.2,
    )
    return str(driver.find_element("tag name", "body").text)


def cards(driver: Any) -> dict[str, str]:
    return {
        str(c.get_attribute("data-to")): str(c.get_attribute("data-quality"))
        for c in driver.find_elements("css selector", "#link-cards .card")
    }


def full_shot(driver: Any, path: Path, width: int) -> None:
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height + 120, 8000))
    driver.save_screenshot(str(path))


def test_router_page_names_lossy_link_marks_desktop_and_phone(lab: Lab, browser: Any):
    with page_url(lab, "n2") as url:

        def all_names() -> bool:
            text = load(browser, url, DESKTOP)
            table = browser.find_element("id", "node-table").text
            return all(n in table for n in NODES) and "n2" in text

        wait_for("every node on n2's page", all_names, 60, 1.0)
        lab.impair("n2", "n3", loss=40)

        def lossy() -> dict[str, str] | None:
            load(browser, url, DESKTOP)
            found = cards(browser)
            return found if found.get("n3") == "lossy" else None

        found = wait_for("the n2–n3 card turns lossy", lossy, 90, 2.0)
        assert found.get("n1") == "good", found
        card = browser.find_element("css selector", '#link-cards .card[data-to="n3"]')
        assert "What to try" in card.text
        marks = browser.find_elements("css selector", "#contrib-table .mark[data-check]")
        assert marks
        legend = browser.find_element("id", "contrib-legend").text
        assert any(m.get_attribute("data-check") in legend for m in marks)
        assert browser.find_elements("css selector", '#map-box line[data-quality="lossy"]')
        full_shot(browser, SHOTS / "router-desktop.png", DESKTOP[0])

        load(browser, url, PHONE)
        assert cards(browser).get("n3") == "lossy"
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1, f"the page is {overflow}px wider than a phone"
        full_shot(browser, SHOTS / "router-phone.png", PHONE[0])


def relayed_by_n2(lab: Lab) -> int | None:
    code, data = cli_json(lab, "n1", "contrib")
    if code != 0:
        return None
    by = {n["name"]: n for n in data["nodes"]}
    return by.get("n2", {}).get("relayed_bytes", {}).get("value")


def test_report_in_chromium(lab: Lab, browser: Any):
    archive = lab.run_dir / "web-archive"
    for _ in range(3):  # three snapshots with traffic in between: contribution over time
        before = relayed_by_n2(lab) or 0
        ping = ["ping", "-q", "-c", "200", "-i", "0.005", "-s", "1200", lab.addr("n4")]
        lab.popen("n1", ping).communicate(timeout=60)
        wait_for("n2's relayed counter grows", lambda b=before: (relayed_by_n2(lab) or 0) > b, 30)
        code, text = cli(lab, "n1", "nodes", "--archive", str(archive))
        assert code == 0, text
    out = SHOTS / "report.html"
    code, text = cli(
        lab, "n1", "report", "-o", str(out), "--cost-share", "100", "--archive", str(archive)
    )
    assert code == 0, text
    assert "<polyline" in out.read_text()
    load(browser, out.as_uri(), DESKTOP)
    body = browser.find_element("tag name", "body").text
    assert all(n in body for n in NODES)
    assert browser.find_elements("css selector", "#contrib-table .mark[data-check]")
    assert browser.find_elements("css selector", 'svg[aria-label="cost share"]')
    full_shot(browser, SHOTS / "report-desktop.png", DESKTOP[0])
    load(browser, out.as_uri(), PHONE)
    full_shot(browser, SHOTS / "report-phone.png", PHONE[0])


def test_respondd_exchange_between_neighbours(lab: Lab):
    iface = lab.mesh_ifaces("n1")[0]

    def answers() -> list[dict[str, Any]]:
        proc = lab.popen(
            "n1",
            [
                sys.executable,
                "-u",
                "-c",
                RESPONDD_CLIENT,
                "ff02::2:1001",
                iface,
                str(defaults.RESPONDD_PORT),
            ],
        )
        out, _ = proc.communicate(timeout=30)
        got = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [a for a in got if a["answer"]["nodeinfo"]["hostname"] == "n2"]

    got = wait_for("n2 answers a respondd query on the link", answers, 30, 1.0)
    answer = got[0]["answer"]
    (SHOTS / "respondd-exchange.json").write_text(json.dumps(got[0], indent=2) + "\n")
    assert answer["nodeinfo"]["software"]["firmware"]["release"] == defaults.VERSION
    assert answer["statistics"]["uptime"] > 0
    babel = answer["neighbours"]["babel"]
    assert babel, answer["neighbours"]
    peers = [p for b in babel.values() for p in b["neighbours"]]
    assert peers
    assert all(p.startswith("fe80") for p in peers)
    assert got[0]["bytes"] < len(json.dumps(answer))  # deflated


def test_promtool_on_a_real_scrape(lab: Lab):
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool missing (apt-get install prometheus)")
    import urllib.request

    with page_url(lab, "n3") as url:

        def scrape() -> str | None:
            with urllib.request.urlopen(url + "metrics?x=1", timeout=5) as r:
                text = r.read().decode()
            return text if "meshd_neighbour_receive_bytes_total{" in text else None

        text = wait_for("counters on the scrape", scrape, 30, 1.0)
    (SHOTS / "metrics-scrape.txt").write_text(text)
    done = subprocess.run(
        [exe, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "e+" not in text
