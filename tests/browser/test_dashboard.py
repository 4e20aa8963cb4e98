"""The dashboard in headless Chromium against real processes.

``TestRealStack``: simulator + ingest (binance) + book builder + gateway, as in production. The
ladder fills with sane prices, a venue toggle changes it, the trades tape grows, a killed ingest
shows its venue down and then live again once restarted, and a killed gateway brings up the
reconnect banner, which goes away when the gateway is back.

``TestSixVenues``: the real gateway fed by ``tests.browser.fakefeed`` (a synthetic book builder
with six venues, BTC spot crossed by kraken): per-venue contributions, client-side venue
filtering recomputing totals, the crossed marker, instrument switching, rendering throttled to
animation frames. Screenshots of both go to tests/artifacts/.

Every wait is on a condition with a deadline (Playwright's auto-waiting or ``wait_until``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import load
from tests.browser.conftest import PageLog
from tests.procs import Proc, free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(420)]

# Generous deadlines: a loaded 2-core machine runs five Python processes and Chromium.
START_S = 180.0
UI_S = 45.0
DOWN_S = 30.0  # stale_after_s is 3 s in write_config; the rest is propagation and load
LIVE_S = 90.0

ROWS_JS = """() => [...document.querySelectorAll('[data-testid=ladder-row]')].map(e => ({
  side: e.dataset.side, price: Number(e.dataset.price), total: Number(e.dataset.total),
  segs: [...e.querySelectorAll('.seg')].map(s => [s.dataset.venue, Number(s.dataset.size)])}))"""


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def ladder(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(ROWS_JS)


def wait_rows(page: Any, n: int, timeout: float = UI_S) -> list[dict[str, Any]]:
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=ladder-row]').length >= {n}",
        timeout=timeout * 1000,
    )
    return ladder(page)


def check_sane(rows: list[dict[str, Any]], ref_mid: float, *, crossed_ok: bool = False) -> None:
    """Prices sorted the ladder's way, near the market, positive sizes, not crossed."""
    bids = [r["price"] for r in rows if r["side"] == "bid"]
    asks = [r["price"] for r in rows if r["side"] == "ask"]
    assert bids and asks, rows
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
    assert asks == sorted(asks, reverse=True) and len(set(asks)) == len(asks)  # worst ask on top
    if not crossed_ok:
        assert max(bids) < min(asks), (max(bids), min(asks))
    for r in rows:
        assert r["total"] > 0, r
        assert abs(r["price"] / ref_mid - 1) < 0.05, (r, ref_mid)


def trade_keys(page: Any) -> list[int]:
    return page.eval_on_selector_all(
        "[data-testid=trade-row]", "els => els.map(e => Number(e.dataset.key))"
    )


def venue_state(page: Any, venue: str) -> str | None:
    loc = page.locator(f"[data-testid=venue-state-{venue}]")
    return loc.get_attribute("data-state") if loc.count() else None


def wait_state(page: Any, venue: str, state: str, timeout: float) -> float:
    """Seconds until the venue's state badge says ``state``."""
    t0 = time.monotonic()
    page.wait_for_function(
        "([v, s]) => document.querySelector(`[data-testid=venue-state-${v}]`)?.dataset.state === s",
        arg=[venue, state],
        timeout=timeout * 1000,
    )
    return time.monotonic() - t0


def unique_config(tmp: Path, venues: Callable[[], str], book_extra: str = "") -> Path:
    """``write_config`` until no two listeners got the same free port (free_port() can hand out
    one port twice, more so when other tests run at the same time)."""
    listen = re.compile(
        r'^(?:pub|control) = "tcp://[^:]+:(\d+)"|^(?:control_port|port|sim_port) = (\d+)', re.M
    )
    for _ in range(20):
        cfg = write_config(tmp, venues(), book_extra=book_extra)
        ports = [a or b for a, b in listen.findall(cfg.read_text())]
        if len(ports) == len(set(ports)):
            return cfg
    raise AssertionError("could not get distinct free ports")


def gateway_port(cfg: Path) -> int:
    return int(cfg.read_text().split("[gateway]")[1].split("port = ")[1].split()[0])


def shot(page: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"dashboard-{name}.png"
    page.screenshot(path=str(path))
    return path


def new_page(
    browser: Any, url: str, width: int = 1600, height: int = 900
) -> tuple[Any, Any, PageLog]:
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(UI_S * 1000)
    log = PageLog(page)
    page.goto(url, timeout=START_S * 1000)
    return ctx, page, log


# -- the real stack ---------------------------------------------------------------------------
class Stack:
    def __init__(self, tmp: Path, cfg: Path, start: Callable[..., Proc]) -> None:
        self.tmp = tmp
        self.cfg = cfg
        self.start = start
        self.port = gateway_port(cfg)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ingest: Proc | None = None
        self.gateway: Proc | None = None
        self.venues: list[str] = ["binance"]
        self.n = 0

    def args(self, module: str, *extra: str) -> list[str]:
        return ["-m", module, *extra, "--config", str(self.cfg)]

    def start_ingest(self) -> Proc:
        self.n += 1
        self.ingest = self.start(
            f"ingest-binance-{self.n}", self.args("services.ingest", "binance")
        )
        return self.ingest

    def start_gateway(self) -> Proc:
        self.n += 1
        self.gateway = self.start(f"gateway-{self.n}", self.args("services.gateway"))
        return self.gateway

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} -----\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )


# venue -> (quote, WebSocket path on the simulator, extra config lines)
VENUE_SPECS = {
    "binance": ("USDT", "/stream", ""),
    "binance-perp": ("USDT", "/stream", ""),
    "bybit": ("USDT", "/v5/public", 'categories = ["spot", "linear"]'),
    "kraken": ("USD", "/v2", ""),
    "coinbase": ("USD", "/", ""),
    "okx": ("USDT", "/ws/v5/public", ""),
}
ROOT = Path(__file__).resolve().parents[2]
# Fewer instruments than production: the tests look at BTC; ETH keeps the selector honest.
BASES = ["BTC", "ETH"]
# The real stack names its groups after USDT, not the default USD: the dashboard must follow
# the configured quote groups.
QUOTE_GROUPS = '[["USDT", "USD", "USDC"]]'
GROUP = "BTC-USDT"


DEFAULT_VENUES = ["binance", "kraken", "bybit"]  # two quote currencies, a spot+perp venue


def real_venues() -> list[str]:
    """``FLOWBOOK_BROWSER_VENUES``: comma-separated venues, or ``all`` for every venue that has
    both an ingest plugin and a simulator dialect; default binance, kraken and bybit (those of
    them that exist), to keep the load of a test run moderate. binance comes first: the tests
    kill its ingest."""
    env = os.environ.get("FLOWBOOK_BROWSER_VENUES", "").strip()
    available = [
        v
        for v in VENUE_SPECS
        if (ROOT / "services/ingest/venues" / f"{v.replace('-', '_')}.py").is_file()
        and (ROOT / "services/simulator/dialects" / f"{v.replace('-', '_')}.py").is_file()
    ]
    if env == "all":
        names = available
    elif env:
        names = [v.strip() for v in env.split(",") if v.strip()]
    else:
        names = [v for v in DEFAULT_VENUES if v in available]
    assert "binance" in names, "the real-stack tests need binance"
    return ["binance", *[v for v in names if v != "binance"]]


@pytest.fixture(scope="class")
def stack(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    venues = real_venues()

    def sections() -> str:
        out = ""
        for v in venues:
            quote, path, extra = VENUE_SPECS[v]
            out += venue_section(
                v, sim_port=free_port(), quote=quote, bases=BASES, ws_path=path, extra=extra
            )
        return out

    cfg = unique_config(tmp, sections, book_extra=f"quote_groups = {QUOTE_GROUPS}")
    with processes(tmp) as start:
        s = Stack(tmp, cfg, start)
        s.venues = venues
        start("simulator", s.args("services.simulator"))
        s.start_ingest()
        for v in venues[1:]:
            start(f"ingest-{v}", s.args("services.ingest", v))
        start("book", s.args("services.book"))
        s.start_gateway()
        try:
            wait_until(
                lambda: (
                    http_json(f"{s.url}/api/book/all/{GROUP}?depth=5")["bids"]
                    and set(http_json(f"{s.url}/healthz")["venues"].values()) == {"live"}
                ),
                timeout=START_S,
                what=f"every venue live ({', '.join(venues)}) and a {GROUP} book",
            )
        except AssertionError:
            print(s.logs())
            raise
        yield s


@pytest.fixture(scope="class")
def real_page(browser: Any, stack: Stack) -> Iterator[tuple[Any, PageLog]]:
    ctx, page, log = new_page(browser, stack.url + "/")
    yield page, log
    ctx.close()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "stack" in request.fixturenames:
        print(request.getfixturevalue("stack").logs())


class TestRealStack:
    def test_ladder_fills_with_sane_prices(self, real_page, stack, artifacts):
        page, log = real_page
        for v in stack.venues:
            wait_state(page, v, "live", LIVE_S)
        rows = wait_rows(page, 20)
        ref = http_json(f"{stack.url}/api/book/all/{GROUP}?depth=1")
        ref_mid = (ref["bids"][0][0] + ref["asks"][0][0]) / 2
        # venues' books may cross each other (the simulator's venues drift apart a little)
        check_sane(rows, ref_mid, crossed_ok=len(stack.venues) > 1)
        check_totals(rows)
        # the market frozen, the ladder shows exactly the consolidated book the gateway holds
        sim = SimControl(load(stack.cfg).simulator["control_port"])
        sim.pause()
        try:
            wait_until(
                lambda: ladder_equals_book(ladder(page), stack.url, GROUP),
                UI_S,
                what=f"ladder rows == /api/book/all/{GROUP} levels",
            )
        finally:
            sim.resume()
        assert page.locator("[data-testid=instrument]").inner_text() == GROUP
        # the market buttons are the configured bases, named after the configured unit
        markets = page.eval_on_selector_all(
            "nav.bases button", "els => els.map(e => [e.textContent.trim(), e.dataset.market])"
        )
        assert markets == [[b, f"{b}-USDT"] for b in BASES], markets
        # every spot venue is in the consolidated book and has a top of book in the venue panel
        spot = [v for v in stack.venues if v != "binance-perp"]
        page.wait_for_function(
            "n => (document.querySelector('.cons b')?.textContent ?? '').trim() === n",
            arg=str(len(spot)),
            timeout=UI_S * 1000,
        )
        page.wait_for_function(
            "vs => vs.every(v => Number(document.querySelector(`[data-testid=venue-row-${v}] td.bid`)"
            "?.textContent.replace(/,/g, '')) > 0)",
            arg=spot,
            timeout=UI_S * 1000,
        )
        page.locator("[data-testid=conn-state][data-state=open]").wait_for(timeout=UI_S * 1000)
        assert page.locator("[data-testid=reconnect-banner]").count() == 0
        page.locator("[data-testid=metrics-panel]").wait_for()
        page.wait_for_timeout(3000)  # a few seconds of the mid/spread history for the picture
        shot(page, artifacts, "real-stack")
        assert not log.errors, log.errors

    def test_venue_toggle_changes_ladder(self, real_page, stack):
        page, _ = real_page
        wait_rows(page, 20)
        toggle = page.locator("[data-testid=venue-toggle-binance]")
        assert toggle.get_attribute("aria-pressed") == "true"
        toggle.click()
        assert toggle.get_attribute("aria-pressed") == "false"
        if len(stack.venues) == 1:
            page.wait_for_function(
                "() => document.querySelectorAll('[data-testid=ladder-row]').length === 0",
                timeout=UI_S * 1000,
            )
            page.locator("[data-testid=ladder-empty]").wait_for()
        else:
            page.wait_for_function(
                "() => { const r = document.querySelectorAll('[data-testid=ladder-row]');"
                " return r.length > 0 && !document.querySelector("
                "'[data-testid=ladder-row] .seg[data-venue=binance]') }",
                timeout=UI_S * 1000,
            )
            check_totals(ladder(page), {"binance"})
        toggle.click()
        assert toggle.get_attribute("aria-pressed") == "true"
        check_totals(wait_rows(page, 20))
        # alt-click shows binance alone: one venue's book is never crossed
        toggle.click(modifiers=["Alt"])
        page.wait_for_function(
            "() => { const s = [...document.querySelectorAll('[data-testid=ladder-row] .seg')];"
            " return s.length > 0 && s.every(e => e.dataset.venue === 'binance') }",
            timeout=UI_S * 1000,
        )
        rows = wait_rows(page, 20)
        ref = http_json(f"{stack.url}/api/book/binance/BTC-USDT?depth=1")
        check_sane(rows, (ref["bids"][0][0] + ref["asks"][0][0]) / 2)
        toggle.click(modifiers=["Alt"])  # again: every venue back
        assert page.locator("[data-testid=venue-toggle-binance][aria-pressed=true]").count() == 1
        for v in stack.venues:
            assert (
                page.locator(f"[data-testid=venue-toggle-{v}]").get_attribute("aria-pressed")
                == "true"
            )

    def test_trades_tape_gets_new_rows(self, real_page, stack):
        page, _ = real_page
        page.locator("[data-testid=trade-row]").first.wait_for(timeout=UI_S * 1000)
        before = max(trade_keys(page))
        page.wait_for_function(
            "k => Math.max(...[...document.querySelectorAll('[data-testid=trade-row]')]"
            ".map(e => Number(e.dataset.key))) > k",
            arg=before,
            timeout=UI_S * 1000,
        )
        first = page.locator("[data-testid=trade-row]").first
        assert first.get_attribute("data-venue") in stack.venues
        assert first.get_attribute("data-side") in ("buy", "sell")
        assert float(first.get_attribute("data-price")) > 0
        keys = trade_keys(page)
        assert keys == sorted(keys, reverse=True), "newest first"

    def test_killed_ingest_shows_down_then_live(self, real_page, stack, artifacts):
        page, _ = real_page
        wait_state(page, "binance", "live", UI_S)
        assert stack.ingest is not None
        stack.ingest.stop(signal.SIGKILL)
        took = wait_state(page, "binance", "down", DOWN_S)
        print(f"binance shown down {took:.1f}s after its ingest was killed")
        shot(page, artifacts, "venue-down")
        stack.start_ingest()
        took = wait_state(page, "binance", "live", LIVE_S)
        print(f"binance shown live {took:.1f}s after its ingest was restarted")
        wait_rows(page, 20)

    def test_reconnect_banner_when_gateway_restarts(self, real_page, stack, artifacts):
        page, log = real_page
        wait_rows(page, 20)
        banner = page.locator("[data-testid=reconnect-banner]")
        assert banner.count() == 0
        assert stack.gateway is not None
        stack.gateway.stop(signal.SIGKILL)
        banner.wait_for(state="visible", timeout=10_000)
        page.locator("[data-testid=conn-state][data-state=reconnecting]").wait_for(timeout=5000)
        shot(page, artifacts, "reconnecting")
        stack.start_gateway()
        banner.wait_for(state="detached", timeout=LIVE_S * 1000)
        page.locator("[data-testid=conn-state][data-state=open]").wait_for(timeout=5000)
        rows = wait_rows(page, 20)
        ref = http_json(f"{stack.url}/api/book/all/{GROUP}?depth=1")
        check_sane(
            rows, (ref["bids"][0][0] + ref["asks"][0][0]) / 2, crossed_ok=len(stack.venues) > 1
        )
        for v in stack.venues:
            wait_state(page, v, "live", UI_S)
        page.locator("[data-testid=trade-row]").first.wait_for(timeout=UI_S * 1000)
        assert not log.errors, log.errors


# -- six venues from the synthetic feed ------------------------------------------------------------
SIX = [
    ("binance", "USDT"),
    ("binance-perp", "USDT"),
    ("bybit", "USDT"),
    ("kraken", "USD"),
    ("coinbase", "USD"),
    ("okx", "USDT"),
]


@pytest.fixture(scope="class")
def fake(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fakefeed")
    cfg = unique_config(
        tmp, lambda: "".join(venue_section(v, sim_port=free_port(), quote=q) for v, q in SIX)
    )
    with processes(tmp) as start:
        start("fakefeed", ["-m", "tests.browser.fakefeed", "--config", str(cfg)])
        gw = start("gateway", ["-m", "services.gateway", "--config", str(cfg)])
        url = f"http://127.0.0.1:{gateway_port(cfg)}"
        try:
            wait_until(
                lambda: len(http_json(f"{url}/api/book/all/BTC-USD?depth=5")["venues"]) == 5,
                timeout=START_S,
                what="six-venue consolidated book from the fake feed",
            )
        except AssertionError:
            print(gw.log_text()[-3000:])
            raise
        yield url


@pytest.fixture(scope="class")
def fake_page(browser: Any, fake: str) -> Iterator[tuple[Any, PageLog]]:
    ctx, page, log = new_page(browser, fake + "/")
    yield page, log
    ctx.close()


def ladder_equals_book(rows: list[dict[str, Any]], url: str, group: str) -> bool:
    """Each side's rows, best first, are the best levels of the gateway's consolidated book
    ``group``: same prices, same totals, same venues' sizes."""
    ref = http_json(f"{url}/api/book/all/{group}?depth=50")
    for side, levels in (("bid", ref["bids"]), ("ask", ref["asks"])):
        shown = [r for r in rows if r["side"] == side]
        shown.sort(key=lambda r: r["price"], reverse=side == "bid")
        if not shown or len(shown) > len(levels):
            return False
        for r, (price, total, per) in zip(shown, levels, strict=False):
            if r["price"] != price or r["total"] != pytest.approx(total, rel=1e-12):
                return False
            if dict(r["segs"]) != pytest.approx(per, rel=1e-12):
                return False
    return True


def check_totals(rows: list[dict[str, Any]], hidden: set[str] = frozenset()) -> None:
    for r in rows:
        venues = [v for v, _ in r["segs"]]
        assert not set(venues) & hidden, r
        assert r["total"] == pytest.approx(sum(s for _, s in r["segs"]), rel=1e-9), r


class TestSixVenues:
    def test_consolidated_ladder_with_contributions(self, fake_page, fake, artifacts):
        page, log = fake_page
        for v, _ in SIX:
            page.locator(f"[data-testid=venue-toggle-{v}]").wait_for(timeout=UI_S * 1000)
        rows = wait_rows(page, 24)
        check_totals(rows)
        assert any(len(r["segs"]) >= 3 for r in rows), "levels shared by several venues"
        seen = {v for r in rows for v, _ in r["segs"]}
        assert seen == {"binance", "bybit", "kraken", "coinbase", "okx"}
        # each venue's colour on its toggle and on its ladder segments
        colors = page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('[data-testid=ladder-row] .seg')].map(
                 s => [s.dataset.venue, getComputedStyle(s).backgroundColor]))"""
        )
        assert len(set(colors.values())) == len(colors) == 5, colors
        for v, _ in SIX:
            wait_state(page, v, "live", UI_S)
        # kraken bids above the others' asks: crossed, with a marker
        page.locator("[data-testid=crossed-marker]").wait_for(timeout=UI_S * 1000)
        page.wait_for_timeout(5000)  # let the mid/spread chart collect some history
        shot(page, artifacts, "six-venues")
        assert not log.errors, log.errors

    def test_toggles_recompute_totals_client_side(self, fake_page):
        page, _ = fake_page
        wait_rows(page, 24)
        page.locator("[data-testid=crossed-marker]").wait_for(timeout=UI_S * 1000)
        page.locator("[data-testid=venue-toggle-kraken]").click()
        page.locator("[data-testid=crossed-marker]").wait_for(state="detached", timeout=UI_S * 1000)
        rows = wait_rows(page, 24)
        check_totals(rows, {"kraken"})
        check_sane(rows, rows[len(rows) // 2]["price"])
        page.locator("[data-testid=venue-toggle-binance]").click()
        page.wait_for_function(
            "() => ![...document.querySelectorAll('[data-testid=ladder-row] .seg')]"
            ".some(s => s.dataset.venue === 'binance' || s.dataset.venue === 'kraken')",
            timeout=UI_S * 1000,
        )
        check_totals(wait_rows(page, 24), {"kraken", "binance"})
        # the trades tape follows the same filter
        page.wait_for_function(
            "() => { const r = [...document.querySelectorAll('[data-testid=trade-row]')];"
            " return r.length > 0 && r.every(e => !['kraken', 'binance'].includes(e.dataset.venue)) }",
            timeout=UI_S * 1000,
        )
        page.locator("[data-testid=venue-show-all]").click()
        page.locator("[data-testid=crossed-marker]").wait_for(timeout=UI_S * 1000)
        check_totals(wait_rows(page, 24))

    def test_instrument_switch(self, fake_page, artifacts):
        page, _ = fake_page
        page.locator("[data-testid=base-ETH]").click()
        page.wait_for_function(
            "() => { const r = [...document.querySelectorAll('[data-testid=ladder-row]')];"
            " return r.length >= 24 && r.every(e => Number(e.dataset.price) < 10000) }",
            timeout=UI_S * 1000,
        )
        assert page.locator("[data-testid=instrument]").inner_text() == "ETH-USD"
        rows = ladder(page)
        check_sane(rows, rows[len(rows) // 2]["price"], crossed_ok=True)  # synthetic offsets
        check_totals(rows)
        page.locator("[data-testid=kind-perp]").click()
        page.locator("[data-testid=instrument]").filter(has_text="ETH-USD-PERP").wait_for()
        page.wait_for_function(
            "() => { const s = new Set([...document.querySelectorAll('[data-testid=ladder-row] .seg')]"
            ".map(e => e.dataset.venue)); return s.size === 2 && s.has('binance-perp') && s.has('bybit') }",
            timeout=UI_S * 1000,
        )
        page.locator("[data-testid=base-DOGE]").click()
        page.wait_for_function(
            "() => { const r = [...document.querySelectorAll('[data-testid=ladder-row]')];"
            " return r.length >= 24 && r.every(e => Number(e.dataset.price) < 1) }",
            timeout=UI_S * 1000,
        )
        page.wait_for_timeout(3000)
        shot(page, artifacts, "doge-perp")
        page.locator("[data-testid=kind-spot]").click()
        page.locator("[data-testid=base-BTC]").click()
        page.locator("[data-testid=instrument]").filter(has_text="BTC-USD").wait_for()
        wait_rows(page, 24)

    def test_renders_at_most_once_per_animation_frame(self, fake_page):
        page, log = fake_page
        wait_rows(page, 24)
        stats = page.evaluate(
            """() => new Promise(resolve => {
                 const d = window.__flowbook; const f0 = d.frames, m0 = d.messages;
                 let rafs = 0; const t0 = performance.now();
                 const tick = () => { rafs++; if (performance.now() - t0 < 3000) requestAnimationFrame(tick);
                   else resolve({ rafs, frames: d.frames - f0, messages: d.messages - m0 }) };
                 requestAnimationFrame(tick) })"""
        )
        print("3 s of rendering:", stats)
        assert stats["messages"] > 50, stats
        assert stats["frames"] <= stats["rafs"] + 1, stats
        assert stats["frames"] < stats["messages"], stats
        assert stats["rafs"] >= 5, f"page too busy to animate: {stats}"
        assert not log.errors, log.errors

    @pytest.mark.parametrize("size", [(1920, 1080), (1280, 800)])
    def test_screenshots_other_sizes(self, browser, fake, artifacts, size):
        ctx, page, log = new_page(browser, fake + "/", *size)
        try:
            wait_rows(page, 20)
            page.locator("[data-testid=trade-row]").first.wait_for(timeout=UI_S * 1000)
            page.wait_for_timeout(3000)
            shot(page, artifacts, f"six-venues-{size[0]}x{size[1]}")
            assert not log.errors, log.errors
        finally:
            ctx.close()
