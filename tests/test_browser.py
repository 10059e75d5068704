"""The drawing page in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (``.ci/run`` installs both), draws a 7 and a 1 with the mouse on the
page ``softmax serve`` gives, and reads the class the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
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
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")                # Selenium Manager: download nothing
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def draw(driver, strokes, pointer: str = interaction.POINTER_MOUSE) -> None:
    """Draw ``strokes`` with the mouse or a finger (``interaction.POINTER_TOUCH``): press,
    move through the points, release."""
    pad = driver.find_element(By.ID, "pad")
    scale = pad.size["width"] / 280
    for stroke in strokes:
        actions = ActionBuilder(driver, mouse=PointerInput(pointer, pointer), duration=30)
        for i, (x, y) in enumerate(stroke):        # offsets from the canvas's centre
            actions.pointer_action.move_to(pad, round((x - 140) * scale), round((y - 140) * scale))
            if i == 0:
                actions.pointer_action.pointer_down()
        actions.pointer_action.pointer_up()
        actions.perform()


def answer(driver) -> str:
    """The class the page shows once it has answered the whole drawing."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "idle")
    return driver.find_element(By.ID, "prediction").text


def shown_probability(driver) -> float:
    """The percentage the page shows for its answer ("probability 99.7%")."""
    text = driver.find_element(By.ID, "probability").text
    assert text.startswith("probability ") and text.endswith("%"), text
    return float(text[len("probability "):-1])


def test_drawing_a_7_with_the_mouse_and_a_1_with_a_finger(browser, mnist_checkpoint, tmp_path):
    with running_server(mnist_checkpoint, cwd=tmp_path) as server:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text.startswith("MLP 784-"))
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "empty"
        draw(browser, STROKES["7"])
        assert answer(browser) == "7"
        assert shown_probability(browser) >= 90
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 10 and bars[0].find_element(By.CLASS_NAME, "label").text == "7"
        browser.find_element(By.ID, "clear").click()
        assert browser.find_element(By.ID, "prediction").text == ""
        assert browser.find_elements(By.CSS_SELECTOR, "#bars li") == []
        draw(browser, STROKES["1"], interaction.POINTER_TOUCH)
        assert answer(browser) == "1"
        assert shown_probability(browser) >= 90
