"""Images as objects with save(fp, format=...), one image instead of a list, the size hint."""
import base64
import json

import pytest

import bor_openai_compat as boc
from helpers import URL, completion, peak_memory

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20


class FakeImage:
    """What the module needs of a Pillow Image (Pillow is not needed for the tests)."""

    size = (640, 480)

    def __init__(self, fail=None):
        self.formats = []
        self.fail = fail

    def save(self, fp, format=None):
        self.formats.append(format)
        if self.fail:
            raise self.fail
        fp.write({"PNG": PNG, "JPEG": JPEG, "WEBP": b"RIFF\x10\x00\x00\x00WEBPVP8 "}[format])


def decoded(url):
    return base64.b64decode(url.split(",", 1)[1])


def test_an_image_object_is_saved_as_png():
    image = FakeImage()
    url = boc.image_data_url(image)
    assert url.startswith("data:image/png;base64,") and decoded(url) == PNG
    assert image.formats == ["PNG"]


@pytest.mark.parametrize("mime, kind", [("image/jpeg", "JPEG"), ("image/webp", "WEBP"), ("image/png", "PNG")])
def test_mime_chooses_the_format(mime, kind):
    image = FakeImage()
    assert boc.image_part(image, mime=mime)["image_url"]["url"].startswith("data:%s;base64," % mime)
    assert image.formats == [kind]


def test_a_format_an_object_cannot_be_saved_in():
    with pytest.raises(boc.InvalidImage, match="image/png, image/jpeg or image/webp"):
        boc.image_data_url(FakeImage(), mime="image/gif")


def test_a_failing_save_is_an_invalid_image():
    with pytest.raises(boc.InvalidImage, match="could not save the FakeImage image object \\(640x480\\) as JPEG: "
                                               "cannot write mode RGBA as JPEG"):
        boc.image_data_url(FakeImage(fail=OSError("cannot write mode RGBA as JPEG")), mime="image/jpeg")


def test_an_image_object_over_the_limit_suggests_downscaling():
    with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes.*downscale it") as info:
        boc.image_data_url(FakeImage(), max_bytes=10)
    assert "FakeImage image object (640x480)" in str(info.value)
    assert "thumbnail" in str(info.value)


def test_a_file_over_the_limit_suggests_downscaling(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(PNG * 10)
    with pytest.raises(boc.InvalidImage, match="downscale it"):
        boc.Client("http://api.test/v1", model="m", max_image_bytes=100).chat("Hi", images=[path])


@pytest.mark.parametrize("single", ["path", "pathlike", "bytes", "object", "file", "part"])
def test_one_image_instead_of_a_list(mocked, client, tmp_path, single):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    source = {
        "path": str(path),
        "pathlike": path,
        "bytes": PNG,
        "object": FakeImage(),
        "file": open(path, "rb"),
        "part": boc.image_part(PNG),
    }[single]
    mocked.post(URL, json=completion("A cat."))
    client.chat("What is it?", images=source)
    content = json.loads(mocked.calls[0].request.body)["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert decoded(content[1]["image_url"]["url"]) == PNG
    if single == "file":
        source.close()


def test_build_chat_payload_takes_one_image_too():
    payload = boc.build_chat_payload("Hi", model="m", images=FakeImage())
    assert len(payload["messages"][0]["content"]) == 2


def test_a_list_of_objects_and_paths(mocked, client, tmp_path):
    path = tmp_path / "dog.jpg"
    path.write_bytes(JPEG)
    mocked.post(URL, json=completion("Two pictures."))
    client.chat("Compare", images=[FakeImage(), str(path)])
    content = json.loads(mocked.calls[0].request.body)["messages"][-1]["content"]
    assert [decoded(part["image_url"]["url"]) for part in content[1:]] == [PNG, JPEG]


def test_the_module_does_not_import_pillow():
    import subprocess
    import sys

    code = "import sys, bor_openai_compat as b; b.image_data_url(b'\\x89PNG\\r\\n\\x1a\\n'); print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("os").path.dirname(boc.__file__))
    assert out.stdout.strip() == "False"


# -- Issue 17: any failure of save() is an InvalidImage; a save that never ends is stopped --


MiB = 1 << 20


class SaveFailed(Exception):
    """An exception of the image library's own, unknown to the module."""


@pytest.mark.parametrize("fail, words", [
    pytest.param(SyntaxError("broken PNG file"), "broken PNG file", id="SyntaxError-as-Pillow-raises"),
    pytest.param(RuntimeError("the encoder gave up"), "the encoder gave up", id="RuntimeError"),
    pytest.param(SaveFailed("decoder error -2"), "decoder error -2", id="an-exception-of-its-own"),
    pytest.param(AttributeError("'NoneType' object has no attribute 'mode'"), "has no attribute", id="AttributeError"),
])
def test_any_failure_of_save_is_an_invalid_image(fail, words):
    with pytest.raises(boc.InvalidImage) as info:
        boc.image_data_url(FakeImage(fail=fail))
    assert "could not save the FakeImage image object (640x480) as PNG" in str(info.value), str(info.value)
    assert words in str(info.value), str(info.value)


def test_a_failing_save_in_a_chat_is_an_invalid_image_before_anything_is_sent(mocked, client):
    mocked.post(URL, json=completion("never"))
    with pytest.raises(boc.InvalidImage, match="could not save the FakeImage image object"):
        client.chat("What is it?", images=FakeImage(fail=SyntaxError("broken PNG file")))
    assert not mocked.calls


class EndlessImage:
    """An image whose save() writes 1 MiB pieces and would go on for 256 MiB."""

    size = (100000, 100000)

    def __init__(self):
        self.written = 0

    def save(self, fp, format=None):
        piece = b"\x89PNG\r\n\x1a\n" + bytes(MiB - 8)
        while self.written < 256 * MiB:
            fp.write(piece)
            self.written += len(piece)


@pytest.mark.parametrize("how", ["image_data_url", "chat"])
def test_a_save_that_never_ends_is_stopped_at_max_image_bytes(mocked, how):
    mocked.post(URL, json=completion("never"))
    image = EndlessImage()
    calls = {
        "image_data_url": lambda: boc.image_data_url(image, max_bytes=MiB),
        "chat": lambda: boc.Client("http://api.test/v1", model="m", max_image_bytes=MiB).chat("Hi", images=image),
    }
    with peak_memory() as memory, pytest.raises(boc.InvalidImage) as info:
        calls[how]()
    assert "larger than max_image_bytes" in str(info.value), str(info.value)
    assert "EndlessImage image object" in str(info.value), str(info.value)
    assert memory["peak"] < 20 * MiB, "peak %d MiB" % (memory["peak"] // MiB)
    assert image.written <= 4 * MiB, "save() wrote %d MiB before it was stopped" % (image.written // MiB)
    assert not mocked.calls
