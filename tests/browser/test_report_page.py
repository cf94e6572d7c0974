"""report.html in a real browser: Debian's chromium driven through chromium-driver (selenium).
Skipped, with the reason, where chromium, chromium-driver or selenium is missing (scripts/setup.sh
installs them). No root, no lab: the pages come from the kept run folders (tests/data/runs).

It also writes docs/presenter-mode.png: presenter mode at 1920x1080, as a room sees it."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from lab.viz.decode import decode_pcap
from lab.viz.html import write_report_html

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent
RUNS = ROOT / "tests" / "data" / "runs"
ALL_RUNS = sorted(p.name for p in RUNS.iterdir() if (p / "result.json").is_file())
SCREENSHOT = ROOT / "docs" / "presenter-mode.png"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (scripts/setup.sh "
                                                                 "installs it with the test extras)")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1920,1080", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("pages")
    written = {}
    for name in ALL_RUNS:
        run = shutil.copytree(RUNS / name, out / name)
        written[name] = write_report_html(run)
    return written


def errors(browser) -> list[dict]:
    """What the page logged at the level of an error since the last look."""
    return [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def load(browser, page: Path) -> list[dict]:
    """Load the page; what it logged at the level of an error."""
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get(page.as_uri())
    return errors(browser)


def by_css(browser, selector: str):
    from selenium.webdriver.common.by import By
    return browser.find_elements(By.CSS_SELECTOR, selector)


def press(browser, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    chain = ActionChains(browser)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def state(browser) -> tuple[str | None, str | None]:
    """(the selected ladder row's label or None, the current step's row id or None)."""
    row = by_css(browser, "#ladder .row.selected")
    step = by_css(browser, "#steps tr.current")
    label = row[0].find_element("css selector", ".label, .box").text if row else None
    return label, (step[0].get_attribute("id") if step else None)


def _captured_ike(name: str) -> bool:
    return any(decode_pcap(p) for p in (RUNS / name / "captures").glob("*.pcap"))


@pytest.mark.parametrize("name", ALL_RUNS)
def test_the_page_loads_without_console_errors(browser, pages, name):
    assert load(browser, pages[name]) == []
    if _captured_ike(name):
        assert by_css(browser, "#ladder .row"), "the script drew the ladder"
    else:  # the run failed before any IKE crossed the wire (e.g. a child name the peer lacks)
        assert not by_css(browser, "#ladder .row.arrow[data-kind='ike']")
    assert len(by_css(browser, "#steps tbody tr")) == len(__import__("json").loads(
        (RUNS / name / "result.json").read_text())["steps"])


@pytest.mark.parametrize("name", ["net2net-nat", "ike-fragments", "nat-expiry"])
def test_the_ladder_has_as_many_arrows_as_the_capture_has_ike_messages(browser, pages, name):
    """Counted by lab.viz.decode (not what the page is made from). A ladder across a NAT box has
    one arrow per message that crossed it, plus one per message seen on one side only."""
    assert load(browser, pages[name]) == []
    buttons = by_css(browser, ".ladder-choice") or [None]
    for index, button in enumerate(buttons):
        if button is not None:
            button.click()
        title = by_css(browser, "#ladder-title")[0].text
        arrows = len(by_css(browser, "#ladder .row.arrow[data-kind='ike']"))
        captures = sorted((RUNS / name / "captures").glob("*.pcap"))
        if "both sides of the NAT box" in title:
            inside, outside = (len(decode_pcap(p)) for p in captures if "inside" in p.name or "outside" in p.name)
            crossed = len(by_css(browser, "#ladder .row.arrow[data-kind='ike'] .note"))
            assert max(inside, outside) <= arrows <= inside + outside
            if name == "net2net-nat":   # every message crossed: one arrow each
                assert arrows == inside == outside == 14
        else:
            capture = next(p for p in captures if title.startswith(p.stem))
            assert arrows == len(decode_pcap(capture)), title


def test_clicking_a_message_shows_its_payload_chain_decrypted_and_its_bytes(browser, pages):
    assert load(browser, pages["net2net-nat"]) == []
    arrow = next(a for a in by_css(browser, "#ladder .row.arrow") if "IKE_AUTH request 1" in a.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", arrow)
    arrow.click()
    detail = by_css(browser, "#detail")[0]
    assert "IKE_AUTH request 1" in detail.text
    assert "decrypted with SK_ei/SK_ai, the ICV verified" in detail.text
    inner = [li.text.split(":")[0] for li in by_css(browser, "#detail ul.payloads ul.payloads > li")]
    assert inner[:3] == ["IDi", "IDr", "AUTH"] and "TSr" in inner
    assert "inside the NAT box" in detail.text and "outside the NAT box" in detail.text
    press(browser, "h")
    assert by_css(browser, "#detail .hex span.enc") and by_css(browser, "#detail .hex span.auth")
    assert "encrypted: octets" in by_css(browser, "#detail")[0].text
    press(browser, "h")
    assert not by_css(browser, "#detail .hex") and by_css(browser, "#detail ul.payloads")
    band = by_css(browser, "#ladder .row.band")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", band)
    band.click()
    assert len(by_css(browser, "#detail table.packets tbody tr")) == 5   # 5 pings each way in step 5
    press(browser, "h")
    assert len(by_css(browser, "#detail .hex")) == 3                      # the octets of the first 3
    assert errors(browser) == []


@pytest.mark.parametrize("presenter", [False, True])
def test_the_keys_step_forward_and_back(browser, pages, presenter):
    assert load(browser, pages["net2net-nat"]) == []
    if presenter:
        press(browser, "p")
        assert "presenter" in by_css(browser, "body")[0].get_attribute("class")
        assert state(browser) == (None, "step-1")       # presenter mode begins at the first step
    else:
        press(browser, "\ue014")                        # → : the first step
        assert state(browser) == (None, "step-1")
    seen = [state(browser)]
    for _ in range(4):
        press(browser, "\ue014")
        seen.append(state(browser))
    assert seen == [(None, "step-1"), (None, "step-2"), ("IKE_SA_INIT request 0", "step-2"),
                    ("IKE_SA_INIT response 0", "step-2"), ("IKE_AUTH request 1", "step-2")]
    if presenter:
        assert "Step 2/11: gwa initiates" in by_css(browser, "#now")[0].text
        own = [li.text for li in by_css(browser, "#detail .story ul.own li")]   # the step's words on IKE_AUTH
        assert own and all("IKE_AUTH" in line for line in own)
        assert by_css(browser, "#detail .story ul.rest li")
        assert by_css(browser, "#ladder .row.future"), "what comes later is dimmed"
    for expected in reversed(seen[:-1]):
        press(browser, "\ue012")                        # ←
        assert state(browser) == expected
    press(browser, "\ue012")
    assert state(browser) == (None, "step-1")           # stays at the first
    assert errors(browser) == []


def test_presenter_mode_screenshot_at_1920x1080(browser, pages):
    """docs/presenter-mode.png: the IKE_AUTH request of the default scenario, decoded, in presenter mode."""
    assert load(browser, pages["net2net-nat"]) == []
    press(browser, "p", *["\ue014"] * 4)
    assert state(browser)[0] == "IKE_AUTH request 1"
    assert browser.execute_script("return [innerWidth, innerHeight]") == [1920, 1080]
    assert browser.execute_script("return parseFloat(getComputedStyle(document.documentElement).fontSize)") >= 24
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    width, height = struct.unpack(">II", SCREENSHOT.read_bytes()[16:24])
    assert (width, height) == (1920, 1080)
