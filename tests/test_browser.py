"""The web page of `gmtrace serve`, driven in Debian's Chromium (headless, through
Selenium): drop an image, read the verdict, save a screenshot."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import httpx
import pytest

DROP = """
const [b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const dt = new DataTransfer();
dt.items.add(new File([bytes], name, {type: 'image/png'}));
const drop = new DragEvent('drop', {dataTransfer: dt, bubbles: true});
document.getElementById('drop').dispatchEvent(drop);
"""


@pytest.fixture
def server(small_model_dir: Path):
    from gmtrace.product.server import serve_in_child

    # the child's stderr is the test's: pytest shows it if the server fails
    with serve_in_child(["--model", str(small_model_dir)]) as (base, _):
        yield base


def test_drop_an_image_and_read_the_verdict(server: str, tiny_zoo_dir: Path, tmp_path: Path):
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("Chromium is not installed (make test runs scripts/install_browser.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = next((tiny_zoo_dir / "fake").rglob("*.png"))
    api = httpx.post(server + "/v1/analyze", files=[("files", ("x.png", image.read_bytes()))])
    want = api.json()["results"][0]
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        driver.get(server + "/")
        assert "gmtrace" in driver.title
        driver.execute_script(DROP, base64.b64encode(image.read_bytes()).decode(), "dropped.png")
        wait = WebDriverWait(driver, 60)
        card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))[0]
        verdict = card.find_element(By.CSS_SELECTOR, ".verdict").text
        assert verdict == f"{want['verdict']} (p = {want['p_generated']:.3f})"
        assert card.find_elements(By.CSS_SELECTOR, "img[alt=fingerprint]")
        # the parse only for an image not called real
        assert "dropped.png" in card.text
        assert ("n_params" in card.text) == (want["verdict"] != "real")
        # the file picker gives the same answer path, and a broken file its error
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"<html>not an image</html>")
        driver.find_element(By.ID, "pick").send_keys(str(bad))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 2)
        err = driver.find_elements(By.CSS_SELECTOR, ".card.error")[0].text
        assert "broken.png" in err and "not an image" in err
        # the status line counts every image dropped on the page, by verdict
        status = driver.find_element(By.ID, "status").text
        assert status.startswith("done: 2 image(s) dropped:") and "1 failed" in status
        assert f"1 {want['verdict']}" in status
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
