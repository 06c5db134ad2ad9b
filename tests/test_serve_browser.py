"""`onnxplain serve` driven in a real browser: Debian's chromium through Playwright (no browser download)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api as playwright

import onnxplain
from onnxplain import data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("ONNXPLAIN_REQUIRE_BROWSER"):  # CI installs chromium: a missing one is a failure there
        raise RuntimeError("the browser test needs Debian's chromium: apt-get install chromium")
    pytest.skip("no chromium on this machine (apt-get install chromium)", allow_module_level=True)

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`onnxplain serve` on a free port, as a user starts it; its address."""
    folder = tmp_path_factory.mktemp("serve")
    process = subprocess.Popen([str(Path(sys.executable).parent / "onnxplain"), "serve", "--port", "0", "--data",
                                str(folder / "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    found = re.search(r"onnxplain explorer on (http://127\.0\.0\.1:\d+/)", line)
    assert found, line + process.stdout.read() if process.poll() is not None else line
    yield found.group(1)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_a_user_clicks_two_pixels_runs_rise_and_sees_explains_map(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#image", "sample-1")
    page.wait_for_function("document.querySelector('#status').textContent.includes('segments')")
    page.check("input[name=target][value=pixels]")
    canvas = page.locator("#target-canvas")
    scale = canvas.bounding_box()["width"] / 240
    pixels = [(37, 62), (52, 77)]  # on the cross the model segments
    for x, y in pixels:
        canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
    assert page.text_content("#target-summary") == "2 pixels chosen"
    page.select_option("#method", "eigen-cam")  # an activation method offers the model's feature-map layers
    assert page.is_visible("#layer-label") and page.locator("#layer option").count() > 5
    page.select_option("#method", "rise")
    assert not page.is_visible("#layer-label")
    page.fill("#parameters input[name=n_masks]", "1000")
    page.fill("#seed", "4")
    page.click("#run")
    page.wait_for_function("window.onnxplainShown !== null", timeout=60_000)
    assert page.evaluate("document.querySelector('#progress').value") == 1000
    shown = page.evaluate("({shape: window.onnxplainShown.shape, values: Array.from(window.onnxplainShown.values)})")
    expected = onnxplain.explain(data.testnet_model_path(), data.load_sample(1).image, method="rise", n_masks=1000,
                                 seed=4, target=onnxplain.Target.pixels(pixels)).map
    assert shown["shape"] == list(expected.shape)
    np.testing.assert_allclose(np.asarray(shown["values"], np.float32).reshape(expected.shape), expected, atol=1e-6)
    caption = page.text_content("#map-caption")
    assert caption.startswith("RISE"), caption  # the colour bar says what the values are
    page.check("#isolines")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


@pytest.mark.parametrize("field,name,content,message", [
    ("#model-file", "notes.onnx", b"not a model\n",
     "notes.onnx is not an ONNX model; upload an .onnx file exported from your framework"),
    ("#image-file", "cut.png", (data.samples_dir() / "images" / data.sample_names()[0]).read_bytes()[:300],
     "cut.png is not an image Pillow can read whole"),
    ("#image-file", "huge.png", b"\x89PNG" + bytes(21 * 2**20),
     "the image is 21.0 MiB, more than the 20.0 MiB this explorer takes"),
    ("#result-file", "result.zip", b"PK not really",
     "result.zip is not a zip file; upload the zip the page downloads"),
])
def test_a_bad_upload_is_one_message_on_the_page(server, browser, tmp_path, field, name, content, message):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    upload = tmp_path / name
    upload.write_bytes(content)
    page.set_input_files(field, str(upload))
    page.wait_for_selector("#status.error")
    assert page.text_content("#status").startswith(message)
    assert page.evaluate("document.body.dataset.ready") == "true"  # the page goes on
    page.close()


def ready_page(browser, server):
    context = browser.new_context()  # a context of its own: its own cookie, so a user of its own
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    return page


def run_in(page, image, method, **parameters):
    page.select_option("#image", image)
    page.wait_for_function("document.querySelector('#status').textContent.includes('segments')")
    page.select_option("#method", method)
    for name, value in parameters.items():
        page.fill(f"#parameters input[name={name}]", str(value))
    page.click("#run")


def test_two_browsers_explain_at_once_and_a_cancel_stops_within_a_second(server, browser):
    first, second = ready_page(browser, server), ready_page(browser, server)
    run_in(first, "sample-1", "rise", n_masks=1500)
    run_in(second, "sample-2", "occlusion")
    for page, index, method, parameters in ((first, 1, "rise", {"n_masks": 1500}), (second, 2, "occlusion", {})):
        page.wait_for_function("window.onnxplainShown !== null", timeout=60_000)
        shown = np.asarray(page.evaluate("Array.from(window.onnxplainShown.values)"), np.float32)
        expected = onnxplain.explain(data.testnet_model_path(), data.load_sample(index).image, method=method,
                                     **parameters).map
        np.testing.assert_allclose(shown.reshape(expected.shape), expected, atol=1e-6)
    # A long run, cancelled from the page.
    run_in(first, "sample-3", "rise", n_masks=100000)
    first.wait_for_function("document.querySelector('#job-line').textContent.startsWith('running')")
    asked = time.monotonic()
    first.click("#cancel")
    first.wait_for_function("document.querySelector('#job-line').textContent.startsWith('cancelled')")
    assert time.monotonic() - asked < 1.0
    job = first.evaluate("fetch('/api/jobs/' + state.job.id).then((r) => r.json())")
    time.sleep(0.5)
    later = first.evaluate("fetch('/api/jobs/' + state.job.id).then((r) => r.json())")
    assert job["status"] == later["status"] == "cancelled" and later["done"] == job["done"] < 100000
    assert first.evaluate("window.onnxplainShown") is None


def test_a_downloaded_result_opens_again_in_the_page(server, browser, tmp_path):
    page = ready_page(browser, server)
    page.select_option("#method", "hdm")
    page.fill("#parameters input[name=offset]", "40")
    page.click("#run")
    page.wait_for_function("window.onnxplainShown !== null", timeout=60_000)
    first = page.evaluate("Array.from(window.onnxplainShown.values)")
    with page.expect_download() as download:
        page.click("#download")
    archive = tmp_path / "result.zip"
    download.value.save_as(archive)
    other = ready_page(browser, server)
    other.set_input_files("#result-file", str(archive))
    other.wait_for_function("window.onnxplainShown !== null")
    assert other.evaluate("Array.from(window.onnxplainShown.values)") == first
    assert other.text_content("#map-caption").startswith("HDM")
