"""`onnxplain serve`: the explorer's HTTP API, its jobs, and its refusals (the page itself: test_serve_browser.py)."""

import io
import threading
import time
import zipfile

import numpy as np
import onnx
import pytest
from PIL import Image
from starlette.testclient import TestClient

import onnxplain
from onnxplain import data
from onnxplain.serve.app import COOKIE, create_app
from onnxplain.serve.store import Limits


@pytest.fixture
def served(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    app = create_app(tmp_path / "data", models=models, limits=Limits(model_bytes=2**20, image_bytes=2**16))
    with TestClient(app) as client:
        yield client, tmp_path


def another_browser(client):
    """A second browser on the same server: no cookie, so a user of its own."""
    other = TestClient(client.app)
    other.__enter__()
    return other


def wait(client, job_id, **params):
    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}", params=params).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_page_and_its_lists(served):
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "onnxplain explorer" in page.text
    assert COOKIE in page.cookies
    models = client.get("/api/models").json()
    assert models[0] == {"id": "testnet", "name": "testnet U-Net (bundled)", "source": "bundled"}
    images = client.get("/api/images").json()
    assert [image["id"] for image in images[:2]] == ["sample-0", "sample-1"]
    methods = {m["name"]: m for m in client.get("/api/methods").json()}
    assert {"hdm", "rise", "occlusion"} <= set(methods) and methods["rise"]["parameters"]["n_masks"] == 1000
    picture = client.get("/api/images/sample-0")
    assert picture.headers["content-type"] == "image/png" and Image.open(io.BytesIO(picture.content)).size == (240, 240)


def test_the_segmentation_is_the_models(served):
    client, _ = served
    answer = client.get("/api/segment", params={"model": "testnet", "image": "sample-0"}).json()
    mask = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(answer["mask"])))) > 127
    model = onnxplain.OnnxModel(data.testnet_model_path())
    expected = model.predict(model.check_image(data.load_sample(0).image)[None]).mask[0]
    np.testing.assert_array_equal(mask, expected)
    assert answer["pixels"] == int(expected.sum()) > 0


def test_a_job_gives_the_map_explain_gives(served):
    client, _ = served
    body = {"model": "testnet", "image": "sample-0", "method": "rise", "parameters": {"n_masks": "200"},
            "target": {"kind": "pixels", "points": [[120, 120], [60, 100]]}, "seed": 3}
    submitted = client.post("/api/jobs", json=body)
    assert submitted.status_code == 202
    job = wait(client, submitted.json()["id"])
    assert job["status"] == "done" and job["done"] == job["total"] == 200
    answer = client.get(f"/api/jobs/{job['id']}/map")
    shown = np.frombuffer(answer.content, "<f4").reshape([int(v) for v in answer.headers["X-Shape"].split(",")])
    expected = onnxplain.explain(data.testnet_model_path(), data.load_sample(0).image, method="rise", n_masks=200,
                                 seed=3, target=onnxplain.Target.pixels([(120, 120), (60, 100)])).map
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    # The result folder holds the same files as `onnxplain explain` writes.
    names = set(job["files"])
    assert {"saliency.npy", "explanation.json", "overlay.png"} <= names
    archive = client.get(f"/api/jobs/{job['id']}/result.zip")
    assert archive.headers["content-type"] == "application/zip" and len(archive.content) > 1000
    # The same request again reuses the result: done at once, the same map.
    again = client.post("/api/jobs", json=body).json()
    assert again["status"] == "done" and again["id"] != job["id"]
    np.testing.assert_array_equal(np.frombuffer(client.get(f"/api/jobs/{again['id']}/map").content, "<f4"),
                                  shown.ravel())


def test_results_are_private_unless_shared(served):
    client, _ = served
    job = client.post("/api/jobs", json={"model": "testnet", "image": "sample-1", "method": "hdm",
                                         "parameters": {"offset": "40"}}).json()
    wait(client, job["id"])
    other = another_browser(client)
    refused = other.get(f"/api/jobs/{job['id']}/map")
    assert refused.status_code == 404 and "ask its owner for the shared link" in refused.json()["error"]
    assert other.get(f"/api/jobs/{job['id']}/map", params={"share": "x" * 16}).status_code == 404
    assert other.get(f"/api/jobs/{job['id']}/map", params={"share": job["share"]}).status_code == 200
    assert other.delete(f"/api/jobs/{job['id']}", params={"share": job["share"]}).status_code == 404  # owner only


def test_two_jobs_at_once_finish_and_a_cancelled_one_stops_within_a_second(served):
    client, _ = served
    other = another_browser(client)
    long = {"model": "testnet", "image": "sample-2", "method": "rise", "parameters": {"n_masks": "100000"}}
    short = {"model": "testnet", "image": "sample-3", "method": "occlusion", "parameters": {"stride": "16"}}
    first = client.post("/api/jobs", json=long).json()
    second = other.post("/api/jobs", json=short).json()
    while client.get(f"/api/jobs/{first['id']}").json()["done"] < 32:
        time.sleep(0.02)
    assert wait(other, second["id"])["status"] == "done"  # the other user's run did not wait for the long one
    asked = time.monotonic()
    assert client.delete(f"/api/jobs/{first['id']}").status_code == 202
    job = wait(client, first["id"])
    before = job["done"]
    assert job["status"] == "cancelled" and time.monotonic() - asked < 1.0
    time.sleep(0.3)
    assert client.get(f"/api/jobs/{first['id']}").json()["done"] == before < 100000  # no pass after the stop
    assert threading.active_count() < 50


def test_uploads_are_checked_and_kept_per_user(served):
    client, _ = served
    pixels = (np.random.default_rng(0).random((240, 240)) * 255).astype(np.uint8)
    saved = client.post("/api/images", files={"file": ("../../etc/scan.png", png_bytes(pixels), "image/png")})
    assert saved.status_code == 201 and saved.json()["name"] == "scan.png"
    image_id = saved.json()["id"]
    assert image_id in [image["id"] for image in client.get("/api/images").json()]
    other = another_browser(client)
    assert image_id not in [image["id"] for image in other.get("/api/images").json()]
    assert other.get(f"/api/images/{image_id}").status_code == 404
    model = client.post("/api/models", files={"file": ("mine.onnx", data.testnet_model_path().read_bytes())})
    assert model.status_code == 201 and model.json()["name"] == "mine.onnx"
    job = client.post("/api/jobs", json={"model": model.json()["id"], "image": image_id, "method": "occlusion",
                                         "parameters": {"stride": "24"}}).json()
    assert wait(client, job["id"])["status"] == "done"


@pytest.mark.parametrize("request_kind,fragment,status", [
    ("oversized image", "more than the 64 KiB this explorer takes", 413),
    ("text as a model", "is not an ONNX model; upload an .onnx file", 400),
    ("truncated image", "is not an image Pillow can read whole", 400),
    ("class that does not exist", "class 7 does not exist: output 'logits' has 1 channel(s)", 400),
    ("box outside the image", "is not inside the 240x240 image", 400),
    ("traversal in an image id", "no image", 404),
    ("traversal in a file name", "no such address", 404),
    ("a file outside the result", "no file 'secret.txt' in this result", 404),
    ("unknown method", "no method 'nope'", 400),
    ("bad parameter", "n_masks", 400),
    ("not JSON", "send the explanation's settings as a JSON object", 400),
])
def test_bad_input_is_one_clear_4xx_and_the_server_goes_on(served, request_kind, fragment, status):
    client, root = served
    pixels = np.zeros((240, 240), np.uint8)
    before = {p for p in root.rglob("*")}
    explain = {"model": "testnet", "image": "sample-0", "method": "rise", "parameters": {"n_masks": "100"}}
    if request_kind == "oversized image":
        answer = client.post("/api/images", files={"file": ("big.png", b"\x89PNG" + bytes(2**17))})
    elif request_kind == "text as a model":
        answer = client.post("/api/models", files={"file": ("model.onnx", b"this is not a model\n" * 10)})
    elif request_kind == "truncated image":
        answer = client.post("/api/images", files={"file": ("cut.png", png_bytes(pixels + 7)[:200])})
    elif request_kind == "class that does not exist":
        answer = client.post("/api/jobs", json={**explain, "class_index": 7})
    elif request_kind == "box outside the image":
        answer = client.post("/api/jobs", json={**explain, "target": {"kind": "box", "box": [200, 200, 300, 260]}})
    elif request_kind == "traversal in an image id":
        answer = client.post("/api/jobs", json={**explain, "image": "../../../etc/passwd"})
    elif request_kind == "traversal in a file name":
        job = client.post("/api/jobs", json=explain).json()
        wait(client, job["id"])
        answer = client.get(f"/api/jobs/{job['id']}/files/..%2F..%2Fexplanation.json")
        before = {p for p in root.rglob("*")}
    elif request_kind == "a file outside the result":
        job = client.post("/api/jobs", json=explain).json()
        wait(client, job["id"])
        answer = client.get(f"/api/jobs/{job['id']}/files/secret.txt")
        before = {p for p in root.rglob("*")}
    elif request_kind == "unknown method":
        answer = client.post("/api/jobs", json={**explain, "method": "nope"})
    elif request_kind == "bad parameter":
        answer = client.post("/api/jobs", json={**explain, "parameters": {"n_masks": "many"}})
    else:
        answer = client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message
    assert {p for p in root.rglob("*") if p.is_file()} <= {p for p in before if p.is_file()}  # nothing written
    assert client.get("/api/models").status_code == 200  # and the server keeps serving


def test_the_model_info_lists_outputs_and_layers(served):
    client, _ = served
    info = client.get("/api/models/testnet/info").json()
    assert info["outputs"] == [info["output"]] and len(info["layers"]) > 5
    job = client.post("/api/jobs", json={"model": "testnet", "image": "sample-0", "method": "eigen-cam",
                                         "parameters": {"layer": info["layers"][3]}}).json()
    done = wait(client, job["id"])
    assert done["status"] == "done", done
    record = client.get(f"/api/jobs/{job['id']}/files/explanation.json").json()
    assert record["layer"]["name"] == info["layers"][3]


def test_a_downloaded_result_opens_again(served):
    client, _ = served
    job = client.post("/api/jobs", json={"model": "testnet", "image": "sample-4", "method": "occlusion"}).json()
    wait(client, job["id"])
    archive = client.get(f"/api/jobs/{job['id']}/result.zip").content
    other = another_browser(client)
    opened = other.post("/api/results", files={"file": ("result.zip", archive)})
    assert opened.status_code == 201, opened.text
    assert opened.json()["status"] == "done" and opened.json()["method"] == "occlusion"
    assert opened.json()["caption"].startswith("Occlusion")
    np.testing.assert_array_equal(other.get(f"/api/jobs/{opened.json()['id']}/map").content,
                                  client.get(f"/api/jobs/{job['id']}/map").content)
    picture = other.get(f"/api/jobs/{opened.json()['id']}/picture").json()
    assert (picture["width"], picture["height"]) == (240, 240) and picture["pixels"] > 0


def zipped(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("content,fragment", [
    (b"not a zip at all", "is not a zip file"),
    (zipped({"../../escape.json": "{}", "explanation.json": "{}"}), "is not a result onnxplain can read"),
    (zipped({"result/../../../tmp/evil.sh": "echo", "result/explanation.json": "{}"}), "holds files other than"),
    (zipped({"saliency.npy": b"x"}), "or no explanation.json"),
])
def test_a_bad_result_upload_is_refused_and_nothing_is_kept(served, content, fragment):
    client, root = served
    answer = client.post("/api/results", files={"file": ("result.zip", content)})
    assert answer.status_code == 400 and fragment in answer.json()["error"], answer.text
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".sh", ".npy")]


def test_the_models_folder_serves_its_own_files_only(served):
    client, root = served
    models = root / "models"
    (models / "unet.onnx").write_bytes(data.testnet_model_path().read_bytes())
    outside = root / "secret.onnx"
    outside.write_bytes(data.testnet_model_path().read_bytes())
    (models / "linked.onnx").symlink_to(outside)
    listed = {m["id"] for m in client.get("/api/models").json()}
    assert "folder-unet" in listed and "folder-linked" not in listed
    refused = client.post("/api/jobs", json={"model": "folder-linked", "image": "sample-0", "method": "occlusion"})
    assert refused.status_code == 403 and "outside the served folders" in refused.json()["error"]
    # A model whose weights would be read from outside its folder.
    proto = onnx.load(str(data.testnet_model_path()))
    onnx.save(proto, str(root / "external.onnx"), save_as_external_data=True, location="weights.bin",
              size_threshold=0)
    proto = onnx.load(str(root / "external.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"  # what a hostile or careless file may say
    (models / "external.onnx").write_bytes(proto.SerializeToString())
    refused = client.post("/api/jobs", json={"model": "folder-external", "image": "sample-0", "method": "occlusion"})
    assert refused.status_code == 403 and "outside its folder" in refused.json()["error"]
    ok = client.post("/api/jobs", json={"model": "folder-unet", "image": "sample-0", "method": "occlusion"})
    assert ok.status_code == 202
