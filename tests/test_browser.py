"""The drawing page in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (``.ci/run`` installs both), draws a 7 and a 1 with the mouse on the
page ``softmax serve`` gives, and reads the class the page shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from serving import running_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHIPPED_MNIST = Path(__file__).resolve().parent.parent / "softmax_cli" / "models" / "mnist.npz"
# strokes as (x, y) points on the 280 x 280 canvas, (0, 0) its top-left corner
STROKES = {
    "7": [[(70, 60), (130, 60), (210, 60)], [(210, 60), (180, 130), (150, 200), (130, 250)]],
    "1": [[(140, 40), (140, 100), (140, 170), (140, 240)]],
}


@pytest.fixture(scope="module")
def mnist_checkpoint(request) -> Path:
    """The shipped MNIST model once the package has one, else the session's trained one."""
    if SHIPPED_MNIST.is_file():
        return SHIPPED_MNIST
    return Path(request.getfixturevalue("mnist_run")["best_checkpoint"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=800,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")          # Selenium Manager: download nothing
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def draw(driver, strokes) -> None:
    """Draw ``strokes`` with the mouse: press, move through the points, release."""
    pad = driver.find_element(By.ID, "pad")
    scale = pad.size["width"] / 280
    centre = (140, 140)
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        chain = ActionChains(driver, duration=30)
        chain.move_to_element_with_offset(pad, round((x0 - centre[0]) * scale), round((y0 - centre[1]) * scale))
        chain.click_and_hold()
        px, py = x0, y0
        for x, y in rest:
            chain.move_by_offset(round((x - px) * scale), round((y - py) * scale))
            px, py = x, y
        chain.release().perform()


def answer(driver) -> str:
    """The class the page shows once it has answered the whole drawing."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "idle")
    return driver.find_element(By.ID, "prediction").text


def test_drawing_a_7_and_a_1_on_the_page(browser, mnist_checkpoint, tmp_path):
    with running_server(mnist_checkpoint, cwd=tmp_path) as server:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text.startswith("MLP 784-"))
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "empty"
        draw(browser, STROKES["7"])
        assert answer(browser) == "7"
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 10 and bars[0].find_element(By.CLASS_NAME, "label").text == "7"
        browser.find_element(By.ID, "clear").click()
        assert browser.find_element(By.ID, "prediction").text == ""
        assert browser.find_elements(By.CSS_SELECTOR, "#bars li") == []
        draw(browser, STROKES["1"])
        assert answer(browser) == "1"
