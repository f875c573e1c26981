"""The atlas in a real browser: Debian's headless Chromium, driven by Playwright.

An atlas is built from real quick runs of two cheap experiments (F1 autograd-mlp, F4
norms-dropout), opened from its file, and checked as a reader meets it: no console or page
errors, every image decodes, every internal link has a target and clicking it brings the target
into view, the map grid shows each place's state as the summaries and the registry decide it,
file links point at files of the checkout, and no sideways scrolling on a phone-wide screen.
A full-page screenshot is saved to runs/browser/atlas.png.

Page contract (core/report.py): `<nav id="map">` holds one `<a class="cell" href="#place-ID"
data-place="ID" data-state="STATE">` per place; each place has `<section id="place-ID"
class="place" data-state="STATE">`; STATE is held / failed / built / none.

No browser is downloaded: Playwright launches /usr/bin/chromium (`apt-get install -y chromium`),
never `playwright install`."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from deepatlas.core.doctor import CHROMIUM
from deepatlas.core.places import PLACES
from deepatlas.core.registry import by_place

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: make install-test "
                               "(or pip install playwright; never `playwright install`)")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not installed: apt-get install -y chromium", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "runs" / "browser" / "atlas.png"
EXPERIMENTS = ["autograd-mlp", "norms-dropout"]  # F1 and F4: seconds each in the quick setting
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
STATES = {"held", "failed", "built", "none"}


def expected_states(summaries: list[dict]) -> dict[str, str]:
    """Each place's state from this atlas's run summaries and the registry."""
    groups = by_place()
    ran: dict[str, list[dict]] = {}
    for s in summaries:
        ran.setdefault(s["place"], []).append(s)
    states = {}
    for pid in PLACES:
        if pid in ran:
            states[pid] = "held" if all(s.get("held") and "error" not in s for s in ran[pid]) else "failed"
        else:
            states[pid] = "built" if groups.get(pid) else "none"
    return states


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    from deepatlas.core.report import write_report

    root = tmp_path_factory.mktemp("atlas")
    path, summaries = write_report(root, only=EXPERIMENTS, echo=False)
    assert [s["name"] for s in summaries] == EXPERIMENTS
    return path, summaries


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, atlas):
    """The atlas loaded at a laptop-sized viewport, with the console errors and page errors seen."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda msg: pg.errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("pageerror", lambda err: pg.errors.append(f"page error: {err}"))
    pg.goto(atlas[0].resolve().as_uri(), wait_until="load")
    yield pg
    context.close()


def test_loads_without_errors(page):
    assert page.title(), "the atlas has no <title>"
    assert page.errors == []


def test_every_image_decodes(page, atlas):
    # images may be loading="lazy" or folded in <details>: ask for each and wait for its decode
    images = page.evaluate("""async () => {
        const out = [];
        for (const img of Array.from(document.images)) {
            img.loading = 'eager';
            let error = null;
            try { await img.decode(); } catch (e) { error = String(e); }
            out.push({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight, error});
        }
        return out;
    }""")
    plots = sum(len(s.get("plots", [])) for s in atlas[1])
    assert plots > 0, "the two experiments saved no plots"
    assert len(images) >= plots, f"{plots} plots saved, {len(images)} <img> on the page"
    bad = [i for i in images if i["width"] == 0 or i["height"] == 0 or i["error"]]
    assert bad == [], bad
    assert page.errors == []


def test_internal_links_land_on_their_target(page):
    hrefs = page.eval_on_selector_all('a[href^="#"]', "els => els.map(e => e.getAttribute('href'))")
    assert len(hrefs) >= len(PLACES)
    missing = sorted({h for h in hrefs if page.evaluate("id => document.getElementById(id) === null",
                                                         unquote(h[1:]))})
    assert missing == [], f"internal links without a target: {missing}"
    clicked = 0
    for i, href in enumerate(hrefs):
        link = page.locator('a[href^="#"]').nth(i)
        if not link.is_visible():  # folded away (e.g. in a closed <details>): its target was checked above
            continue
        target = unquote(href[1:])
        link.click(timeout=5000)
        # in view: the target's box overlaps the viewport, and the address names it (smooth scrolling allowed)
        page.wait_for_function("""id => { const r = document.getElementById(id).getBoundingClientRect();
                                          return r.top < innerHeight && r.bottom > 0
                                                 && decodeURIComponent(location.hash) === '#' + id; }""",
                               arg=target, timeout=5000)
        clicked += 1
    cells = page.locator("nav#map a.cell").count()
    assert clicked >= cells == len(PLACES), f"clicked {clicked} links; the map has {cells} cells"
    assert page.errors == []


def test_map_grid_shows_each_place_state(page, atlas):
    cells = page.eval_on_selector_all("nav#map a.cell[data-place]", """els => els.map(e => ({
        place: e.dataset.place, state: e.dataset.state, href: e.getAttribute('href')}))""")
    places = [c["place"] for c in cells]
    assert sorted(places) == sorted(PLACES) and len(places) == len(PLACES) == 68, places
    expected = expected_states(atlas[1])
    assert {expected[p] for p in ("F1", "F4")} == {"held"}, [s.get("metrics") for s in atlas[1]]
    for c in cells:
        assert c["href"] == f"#place-{c['place']}", c
        assert c["state"] in STATES, c
    assert {c["place"]: c["state"] for c in cells} == expected
    sections = page.eval_on_selector_all("section.place", """els => els.map(e => ({
        id: e.id, state: e.dataset.state}))""")
    assert {s["id"]: s["state"] for s in sections} == {f"place-{p}": st for p, st in expected.items()}


def test_file_links_point_at_files_of_the_checkout(page, atlas):
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    relative = [h for h in hrefs if not h.startswith("#") and not urlparse(h).scheme]
    assert relative, "the atlas links no source, test or experiment file"
    broken = [h for h in relative if not (atlas[0].parent / unquote(h)).resolve().is_file()]
    assert broken == [], broken
    assert any(h.endswith("f1_autograd.py") for h in relative), relative


def test_phone_width_has_no_sideways_scroll_and_screenshot(browser, atlas):
    """At 390 px (a phone) the page fits its width; the full-page screenshots are saved."""
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("atlas.png", {"width": 1280, "height": 800}),
                           ("atlas-phone.png", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport)
        pg = context.new_page()
        pg.goto(atlas[0].resolve().as_uri(), wait_until="load")
        width = pg.evaluate("document.documentElement.scrollWidth")
        pg.screenshot(path=str(SCREENSHOT.parent / name), full_page=True)
        context.close()
        assert width <= viewport["width"] + 1, f"{name}: page is {width} px wide in a {viewport['width']} px window"
    assert SCREENSHOT.stat().st_size > 10_000
