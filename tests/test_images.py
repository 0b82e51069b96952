"""Image sources to base64 data URLs and content parts."""
import base64
import io
import os
import pathlib

import pytest

import bor_openai_compat as boc

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20
GIF = b"GIF89a" + b"\x00" * 20
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20


@pytest.mark.parametrize(
    "data, mime",
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp"), (b"BM" + b"\0" * 20, "image/bmp")],
    ids=["png", "jpeg", "gif", "webp", "bmp"],
)
def test_type_comes_from_the_signature(data, mime):
    url = boc.image_data_url(data)
    assert url.startswith("data:%s;base64," % mime)
    assert base64.b64decode(url.split(",", 1)[1]) == data


def test_signature_wins_over_a_wrong_extension(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(PNG)
    assert boc.image_data_url(path).startswith("data:image/png;")


def test_extension_is_used_when_the_bytes_say_nothing(tmp_path):
    path = tmp_path / "odd.webp"
    path.write_bytes(b"\x00\x01unknown")
    assert boc.image_data_url(str(path)).startswith("data:image/webp;")


def test_explicit_mime_is_trusted():
    assert boc.image_data_url(b"raw", mime="image/x-custom").startswith("data:image/x-custom;base64,")


def test_not_an_image_names_the_source(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(boc.InvalidImage, match="notes.txt.*not an image") as info:
        boc.image_data_url(path)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(boc.InvalidImage, match="cannot read the image .*nope.png"):
        boc.image_data_url(str(tmp_path / "nope.png"))


def test_file_object_and_pathlike(tmp_path):
    path = tmp_path / "a.gif"
    path.write_bytes(GIF)
    with open(path, "rb") as f:
        assert boc.image_data_url(f) == boc.image_data_url(pathlib.Path(path))
    assert boc.image_data_url(io.BytesIO(GIF)).startswith("data:image/gif;")


def test_text_mode_file_is_refused(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"abc")
    with open(path, "r") as f, pytest.raises(boc.InvalidImage, match="binary mode"):
        boc.image_data_url(f)


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://x/y.jpg", "data:image/png;base64,AAAA"])
def test_urls_pass_through(url):
    assert boc.image_data_url(url) == url
    assert boc.image_part(url) == {"type": "image_url", "image_url": {"url": url}}


def test_detail():
    part = boc.image_part(PNG, detail="low")
    assert part["image_url"]["detail"] == "low"


def test_directory_and_devices_are_not_read(tmp_path):
    with pytest.raises(boc.InvalidImage, match="not a regular file"):
        boc.image_data_url(tmp_path)
    with pytest.raises(boc.InvalidImage, match="not a regular file"):
        boc.image_data_url("/dev/zero")


def test_size_is_bounded(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(PNG + b"\0" * 1000)
    with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes"):
        boc.image_data_url(path, max_bytes=100)
    with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes"):
        boc.image_data_url(PNG * 10, max_bytes=100)
    # An endless file object is read only up to the limit.
    with open("/dev/zero", "rb") as endless:
        with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes"):
            boc.image_data_url(endless, max_bytes=1000)
        assert endless.tell() <= 1001


def test_default_limit_is_twenty_megabytes(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.write(PNG)
        f.truncate(20 * 1024 * 1024 + 1)
    with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes"):
        boc.image_data_url(path)


def test_client_images_and_its_limit(mocked, tmp_path):
    from helpers import URL, completion
    import json

    mocked.post(URL, json=completion())
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    client = boc.Client("http://api.test/v1", model="m", max_image_bytes=10)
    with pytest.raises(boc.InvalidImage):
        client.chat("look", images=[path])
    client.max_image_bytes = 1000
    client.chat("look", images=[path])
    content = json.loads(mocked.calls[0].request.body)["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "look"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_empty_image():
    with pytest.raises(boc.InvalidImage, match="empty"):
        boc.image_data_url(b"")


def test_big_image_body_is_exact_json_and_memory_is_bounded(tmp_path):
    import json
    import tracemalloc

    size = 4 * 1024 * 1024
    path = tmp_path / "big.png"
    path.write_bytes(PNG + os.urandom(size - len(PNG)))
    client = boc.Client("http://api.test/v1", model="m")
    tracemalloc.start()
    try:
        body = client._call("look", None, [path], {"temperature": 0}, False, None, None).body
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = boc.build_chat_payload("look", model="m", images=[path], temperature=0)
    assert json.loads(body) == expected
    # The base64 text alone is 1.33x the file; the body is built without
    # holding it more than twice (the target is under 3x).
    assert peak < 3 * size, peak / size


def test_urls_that_need_escaping_still_serialise(tmp_path):
    import json

    odd = "data:image/png;base64," + "A" * 70000 + '"\\\n'
    client = boc.Client("http://api.test/v1", model="m")
    body = client._call([{"role": "user", "content": [boc.image_part(odd)]}], None, None, {}, False, None, None).body
    assert json.loads(body)["messages"][0]["content"][0]["image_url"]["url"] == odd


# -- Issue 17: a file that grows between stat() and read() is never sent cut short --


def _grows_after_stat(monkeypatch, path, extra):
    """The file at ``path`` grows by ``extra`` bytes just after its size is first
    looked at (os.stat or os.fstat), as a file still being written does."""
    real_stat, real_fstat = os.stat, os.fstat
    grown = []

    def grow(info):
        if not grown:
            grown.append(True)
            with open(path, "ab") as f:
                f.write(extra)
        return info

    def stat(target, *args, **kwargs):
        info = real_stat(target, *args, **kwargs)
        return grow(info) if os.fspath(target) == str(path) else info

    def fstat(fd):
        info = real_fstat(fd)
        same = info.st_ino == real_stat(path).st_ino and info.st_dev == real_stat(path).st_dev
        return grow(info) if same else info

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "fstat", fstat)
    return grown


def test_a_file_that_grows_after_stat_is_sent_whole_or_refused(tmp_path, monkeypatch):
    path = tmp_path / "being-written.png"
    path.write_bytes(PNG + b"\x01" * 1000)
    grown = _grows_after_stat(monkeypatch, path, b"\x02" * 4000)
    try:
        url = boc.image_data_url(path, max_bytes=1 << 20)
    except boc.InvalidImage as exc:
        assert "being-written.png" in str(exc), str(exc)
        return
    assert grown, "the file was never looked at"
    sent = base64.b64decode(url.split(",", 1)[1])
    assert len(sent) == len(PNG) + 5000, "sent %d of the file's %d bytes" % (len(sent), len(PNG) + 5000)
    assert sent == path.read_bytes()


def test_a_file_that_grows_past_the_limit_after_stat_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "being-written.png"
    path.write_bytes(PNG + b"\x01" * 1000)
    grown = _grows_after_stat(monkeypatch, path, b"\x02" * 4000)
    with pytest.raises(boc.InvalidImage, match="larger than max_image_bytes") as info:
        boc.image_data_url(path, max_bytes=2000)
    assert grown, "the file was never looked at"
    assert "being-written.png" in str(info.value)
