"""The playground in a real browser: headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import shutil

import pytest
from serve_helpers import API_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # The page's own Content-Security-Policy forbids eval, which Playwright's polling waits use.
            page = browser.new_page(bypass_csp=True)
            response = page.goto(f"{server.url}/")
            assert "default-src 'self'" in response.headers["content-security-policy"]
            yield page
        finally:
            browser.close()


def test_type_a_prompt_press_the_button_and_an_image_appears(page):
    page.fill("#key", API_KEY)
    page.dispatch_event("#key", "change")
    page.wait_for_function("document.getElementById('model').textContent.includes('nano')", timeout=30_000)
    assert "style" in page.text_content("#model")
    page.fill("#prompt", "one green circle on a white background")
    page.fill("#seed", "4")
    page.click("#go")
    image = page.wait_for_selector("#result img", timeout=60_000)
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.querySelector('#result img').naturalWidth") == 128
    assert "seed 4" in page.text_content("#result figcaption")
    assert page.text_content("#error") == ""


def test_an_error_shows_its_message(page):
    page.fill("#key", API_KEY)
    page.fill("#steps", "500")
    page.click("#go")
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
    message = page.text_content("#error")
    assert "400" in message and "num_inference_steps" in message
    page.fill("#steps", "")


def test_a_wrong_key_shows_the_401(page):
    page.fill("#key", "wrong")
    page.click("#go")
    page.wait_for_function("document.getElementById('error').textContent.includes('401')", timeout=30_000)
    assert "invalid API key" in page.text_content("#error")


def test_reference_images_make_an_edit(page, tmp_path):
    from PIL import Image

    reference = tmp_path / "reference.png"
    Image.new("RGB", (96, 96), (30, 30, 200)).save(reference)
    page.fill("#key", API_KEY)
    page.set_input_files("#references", str(reference))
    page.click("#go")
    page.wait_for_function("document.querySelector('#result img') && document.querySelector('#result img').naturalWidth === 96", timeout=60_000)
    assert page.text_content("#error") == ""
    page.set_input_files("#references", [])
