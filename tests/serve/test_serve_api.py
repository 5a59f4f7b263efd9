"""The OpenAI images API against a real server (nano), driven by the official openai SDK."""

from __future__ import annotations

import base64
import http.client
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from flux2_int8.nano.grammar import parse_prompt
from flux2_int8.nano.score import read_image, score_reading

from serve_helpers import API_KEY

PROMPT = "two yellow squares on a blue background"


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def post(server, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a raw POST (the SDK refuses to send some of what these tests send)."""
    request = urllib.request.Request(f"{server.url}{path}", data=body, method="POST", headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def get(server, path: str, key: str | None = API_KEY) -> tuple[int, bytes]:
    request = urllib.request.Request(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_generate_with_the_sdk_draws_the_prompt(client):
    result = client.images.generate(prompt=PROMPT, n=2, extra_body={"seed": 0})
    assert len(result.data) == 2
    seeds = [item.model_extra["seed"] for item in result.data]
    assert seeds == [0, 1]
    scene = parse_prompt(PROMPT)
    for item in result.data:
        image = decode(item.b64_json)
        assert image.size == (128, 128)  # nano's native size for size "auto"
        score = score_reading(scene, read_image(np.asarray(image.convert("RGB"))))
        assert score["background"] and score["colour"] and score["count"], (score, item.model_extra["seed"])


def test_a_seed_gives_the_same_image_batched_or_alone(client):
    """n=2 from seed 5 is one pipeline call of two; seeds 5 and 6 alone are two calls: the same PNGs."""
    together = client.images.generate(prompt=PROMPT, n=2, extra_body={"seed": 5})
    alone = [client.images.generate(prompt=PROMPT, extra_body={"seed": seed}).data[0].b64_json for seed in (5, 6)]
    assert [item.b64_json for item in together.data] == alone
    assert together.model_extra["timings"]["batch_size"] == 2


def test_no_seed_draws_one_and_says_which(client):
    first = client.images.generate(prompt=PROMPT)
    seed = first.data[0].model_extra["seed"]
    again = client.images.generate(prompt=PROMPT, extra_body={"seed": seed})
    assert again.data[0].b64_json == first.data[0].b64_json


@pytest.mark.parametrize("output_format", ["jpeg", "webp", "png"])
def test_output_formats(client, output_format):
    result = client.images.generate(prompt=PROMPT, output_format=output_format, size="128x128", extra_body={"seed": 1, "num_inference_steps": 2})
    assert decode(result.data[0].b64_json).format == output_format.upper()


def test_edit_with_one_and_several_references(client, tmp_path):
    references = []
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        path = tmp_path / f"ref{index}.png"
        Image.new("RGB", (96, 96), colour).save(path)
        references.append(path)
    with references[0].open("rb") as one:
        single = client.images.edit(image=one, prompt="one red square on a white background", extra_body={"seed": 2})
    assert decode(single.data[0].b64_json).size == (96, 96)  # an edit without size keeps the reference's
    with references[0].open("rb") as a, references[1].open("rb") as b:
        several = client.images.edit(image=[a, b], prompt="one red square on a white background", size="128x128", extra_body={"seed": 2})
    assert decode(several.data[0].b64_json).size == (128, 128)
    assert several.data[0].model_extra["seed"] == 2


def test_edit_refuses_a_mask(client, tmp_path):
    import openai

    path = tmp_path / "ref.png"
    Image.new("RGB", (64, 64)).save(path)
    with path.open("rb") as image, path.open("rb") as mask, pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(image=image, mask=mask, prompt="x")
    assert raised.value.body["param"] == "mask" and "mask" in raised.value.body["message"]


BAD_FIELDS = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": 5}, "n"),
    ({"prompt": "x", "n": "2"}, "n"),
    ({"prompt": "x", "n": True}, "n"),
    ({"prompt": "x", "size": "100x100"}, "size"),
    ({"prompt": "x", "size": "big"}, "size"),
    ({"prompt": "x", "size": "512x512"}, "size"),  # past --max-pixels 256x256
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": 2**63}, "seed"),
    ({"prompt": "x", "seed": 1.5}, "seed"),
    ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps"),
    ({"prompt": "x", "num_inference_steps": 51}, "num_inference_steps"),
    ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
    ({"prompt": "x", "guidance_scale": "high"}, "guidance_scale"),
    ({"prompt": "x", "response_format": "url"}, "response_format"),
    ({"prompt": "x", "response_format": "bmp"}, "response_format"),
    ({"prompt": "x", "output_format": "gif"}, "output_format"),
    ({"prompt": "x", "output_compression": 50}, "output_compression"),
    ({"prompt": "x", "model": "dall-e-3"}, "model"),
    ({"prompt": "x", "lora": ["../style"]}, "lora"),
    ({"prompt": "x", "lora": ["/etc/passwd"]}, "lora"),
    ({"prompt": "x", "lora": ["notes"]}, "lora"),
    ({"prompt": "x", "lora": [{"name": "style", "scale": 1e9}]}, "lora"),
    ({"prompt": "x", "lora": 7}, "lora"),
    ({"prompt": "x", "seeds": [1]}, "seeds"),
]


@pytest.mark.parametrize("body, param", BAD_FIELDS, ids=[f"{param}-{i}" for i, (_, param) in enumerate(BAD_FIELDS)])
def test_bad_fields_are_400_naming_the_field(server, body, param):
    status, answer, _ = post(server, "/v1/images/generations", json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error"]["param"] == param and answer["error"]["message"].startswith(param), answer
    assert answer["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400(server, body):
    status, answer, _ = post(server, "/v1/images/generations", body)
    assert status == 400 and "JSON" in answer["error"]["message"]


def test_a_body_declared_past_the_limit_is_413_before_it_is_sent(server):
    """The server answers from Content-Length alone. The body is never sent: a client still
    writing 2 MiB when the server answers and closes gets a broken pipe (a race, seen under load)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/v1/images/generations")
        for name, value in (("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json"), ("Content-Length", str(2 * 2**20))):
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413 and answer["error"]["code"] == "body_too_large"


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "flux2int8boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n" for name, filename, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("files, status, code", [
    ([], 400, "missing_required_parameter"),
    ([("image[]", "a.png", _png((64, 64)))] * 5, 400, "too_many"),
    ([("image[]", "bomb.png", _png((4096, 4096), "1"))], 413, "image_too_large"),  # a few KiB declaring 16 M pixels
    ([("image", "a.gif", b"GIF89a" + b"\0" * 20)], 400, "invalid_image"),
    ([("image", "a.txt", b"hello")], 400, "invalid_image"),
    ([("image", "small.png", _png((32, 32)))], 400, "invalid_value"),
])
def test_bad_reference_images(server, files, status, code):
    body, content_type = _multipart({"prompt": "one red square on a white background"}, files)
    got, answer, _ = post(server, "/v1/images/edits", body, {"Content-Type": content_type})
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["param"] == "image"


def test_edit_form_fields_are_checked_like_json_ones(server):
    body, content_type = _multipart({"prompt": "x", "n": "zero"}, [("image", "a.png", _png((64, 64)))])
    status, answer, _ = post(server, "/v1/images/edits", body, {"Content-Type": content_type})
    assert status == 400 and answer["error"]["param"] == "n"


def test_the_key_is_needed_and_checked(server):
    openai = pytest.importorskip("openai")
    wrong = openai.OpenAI(api_key="wrong", base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.images.generate(prompt=PROMPT)
    status, body = get(server, "/v1/models", key=None)
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"
    assert get(server, "/health", key=None)[0] == 200  # probes need no key


def test_models_health_ready_metrics_and_unknown_routes(server, client):
    models = client.models.list()
    entry = models.data[0].model_dump()
    assert entry["id"] == "nano" and entry["loras"] == ["style"] and entry["transformer"] == "bfloat16"
    assert get(server, "/ready")[0] == 200
    status, text = get(server, "/metrics")
    assert status == 200
    for name in ("flux2_int8_serve_queue_depth", "flux2_int8_serve_batch_size_bucket", "flux2_int8_serve_phase_seconds_bucket", "flux2_int8_serve_images_total", "flux2_int8_serve_rejections_total", 'flux2_int8_serve_peak_memory_bytes{kind="rss"}'):
        assert name.encode() in text, name
    status, body = get(server, "/v1/nothing")
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"


def test_a_lora_by_name_changes_the_picture_and_is_put_away_after(client):
    plain = client.images.generate(prompt=PROMPT, extra_body={"seed": 3}).data[0].b64_json
    styled = client.images.generate(prompt=PROMPT, extra_body={"seed": 3, "lora": [{"name": "style", "scale": 1.0}]})
    assert styled.data[0].b64_json != plain
    assert styled.model_extra["loras"] == [{"name": "style", "scale": 1.0}]
    assert client.images.generate(prompt=PROMPT, extra_body={"seed": 3}).data[0].b64_json == plain
