# MIT License
#
# Copyright (c) 2026 The bor_openai_compat authors
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in
# all copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.
"""A small synchronous client for any OpenAI-compatible Chat Completions API.

Works with Ollama, LM Studio, vLLM, llama.cpp, LiteLLM, OpenRouter-style
gateways and OpenAI itself, and says exactly what is wrong when something is.

Usage::

    >>> from bor_openai_compat import Client
    >>> client = Client("http://localhost:11434/v1", model="llama3.2")
    >>> print(client.chat("Say hello in French."))
    Bonjour !
    >>> for delta in client.stream("Count to five."):
    ...     print(delta.text, end="", flush=True)
"""
from __future__ import annotations

import base64
import email.utils
import http.client
import json
import logging
import os
import random
import re
import socket
import sys
import stat
import time
from typing import Any, Iterable, Iterator

import requests
import urllib3

import sseclient

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ChatResult",
    "ChatStream",
    "StreamDelta",
    "ToolCall",
    "build_chat_payload",
    "image_data_url",
    "image_part",
    "tool_message",
    "OpenAICompatError",
    "ConfigurationError",
    "InvalidImage",
    "ConnectionFailed",
    "ConnectionRefused",
    "Timeout",
    "APIError",
    "AuthenticationError",
    "UnknownModel",
    "EndpointNotFound",
    "BadRequest",
    "VisionNotSupported",
    "RateLimited",
    "ServerError",
    "StreamingNotSupported",
    "StreamInterrupted",
    "InvalidResponse",
    "main",
]

log = logging.getLogger(__name__)

# -- Constants ---------------------------------------------------------------

# Where the usual local servers listen, for messages and ``doctor``.
_LOCAL_SERVERS = (
    ("Ollama", "http://localhost:11434/v1"),
    ("LM Studio", "http://localhost:1234/v1"),
    ("llama.cpp", "http://localhost:8080/v1"),
    ("vLLM", "http://localhost:8000/v1"),
    ("LiteLLM", "http://localhost:4000/v1"),
)

_DEFAULT_TIMEOUT = 600.0  # a local server may load a model on the first request
_DEFAULT_CONNECT_TIMEOUT = 5.0
_DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

_RETRY_STATUSES = frozenset((408, 409, 429, 500, 502, 503, 504))
_RETRY_BASE = 0.5  # seconds before the first retry; doubles each time
_RETRY_MAX_WAIT = 8.0  # cap of our own backoff
_RETRY_AFTER_CAP = 60.0  # a server asking for a longer wait is not waited for
_READ_SIZE = 65536
_B64_SLICE = 3 << 18  # bytes of image encoded at a time
_SPLICE_MIN = 1 << 16  # image URLs this long are kept out of json.dumps
_SPLICE_MARK = "\x00bor-splice\x00"
_ERROR_BODY_LIMIT = 1 << 20  # an error page bigger than this is cut
_USER_AGENT = "bor-openai-compat/" + __version__

# -- Exceptions --------------------------------------------------------------


class OpenAICompatError(Exception):
    """Root of every error raised by this module."""


class ConfigurationError(OpenAICompatError, ValueError):
    """The client is set up wrongly (no base URL, a bad scheme, no model)."""


class InvalidImage(OpenAICompatError, ValueError):
    """An image source cannot be read or is not an image."""


class ConnectionFailed(OpenAICompatError):
    """The server could not be reached (DNS failure, reset, TLS, dropped)."""


class ConnectionRefused(ConnectionFailed):
    """Nothing listens at the host and port of the base URL."""


class Timeout(OpenAICompatError):
    """The server did not connect, answer or finish in time."""


class APIError(OpenAICompatError):
    """The server answered with an error.

    :ivar status_code: the HTTP status (``None`` for an error event in a stream).
    :ivar message: the server's own error message.
    :ivar code: the server's error code, if it sent one.
    :ivar body: the decoded error body (JSON value or text).
    """

    status_code: int | None = None
    message: str = ""
    code: Any = None
    body: Any = None


class AuthenticationError(APIError):
    """The API key is missing or was rejected (401/403)."""


class UnknownModel(APIError):
    """The endpoint does not serve the requested model.

    :ivar model: the name that was asked for.
    :ivar available: the names the server serves, when it could list them.
    :ivar suggestion: the closest served name, or ``None``.
    """

    model: str | None = None
    available: list | None = None
    suggestion: str | None = None


class EndpointNotFound(APIError):
    """The URL does not exist on the server, usually a base URL missing ``/v1``."""


class BadRequest(APIError):
    """The server rejected the request as invalid."""


class VisionNotSupported(BadRequest):
    """The model or server does not accept image input."""


class RateLimited(APIError):
    """Too many requests (429); ``retry_after`` is the wait the server asked for."""

    retry_after: float | None = None


class ServerError(APIError):
    """The server failed (5xx)."""


class StreamingNotSupported(OpenAICompatError):
    """The endpoint does not stream the OpenAI way.

    :ivar result: the complete :class:`ChatResult` when the server answered
        in one piece instead, else ``None``.
    """

    result: ChatResult | None = None


class StreamInterrupted(OpenAICompatError):
    """The stream broke after it started.

    :ivar partial: the :class:`ChatResult` accumulated before the break.
    """

    partial: ChatResult | None = None


class InvalidResponse(OpenAICompatError):
    """A success status with a body that is not what the API promises."""


# -- Results -----------------------------------------------------------------


class ToolCall:
    """One function call the model asked for."""

    __slots__ = ("id", "type", "name", "arguments")

    def __init__(self, id: str | None, name: str, arguments: str, type: str = "function"):
        self.id = id
        self.type = type
        self.name = name
        #: The arguments as the JSON text the model wrote.
        self.arguments = arguments

    def json(self) -> Any:
        """Parse :attr:`arguments`; ``""`` counts as ``{}``.

        :raises InvalidResponse: the model wrote arguments that are not JSON.
        """
        if not self.arguments.strip():
            return {}
        try:
            return json.loads(self.arguments)
        except ValueError as exc:
            raise InvalidResponse(
                "tool call %r (id %s) has arguments that are not valid JSON (%s): %s"
                % (self.name, self.id, exc, _clip(self.arguments))
            ) from exc

    def to_dict(self) -> dict:
        """The call in the shape an assistant message carries it."""
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolCall) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "ToolCall(id=%r, name=%r, arguments=%r)" % (self.id, self.name, self.arguments)


class ChatResult:
    """A complete answer. ``str(result)`` is its text."""

    __slots__ = ("text", "reasoning", "tool_calls", "finish_reason", "usage", "model", "raw")

    def __init__(
        self,
        text: str = "",
        *,
        reasoning: str = "",
        tool_calls: list | None = None,
        finish_reason: str | None = None,
        usage: dict | None = None,
        model: str | None = None,
        raw: Any = None,
    ):
        self.text = text
        self.reasoning = reasoning
        self.tool_calls = tool_calls or []
        self.finish_reason = finish_reason
        self.usage = usage
        self.model = model
        #: The decoded JSON answer (for a stream: one built from its chunks).
        self.raw = raw

    @property
    def message(self) -> dict:
        """The assistant message to append to a conversation."""
        message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return "ChatResult(text=%r, finish_reason=%r, model=%r)" % (
            _clip(self.text, 60),
            self.finish_reason,
            self.model,
        )


class StreamDelta:
    """One chunk of a stream.

    ``text`` and ``reasoning`` are ``""`` when the chunk has none; ``tool_calls``
    holds the raw tool-call fragments of this chunk (the merged calls are in
    ``stream.result.tool_calls``); ``raw`` is the decoded chunk.
    """

    __slots__ = ("text", "reasoning", "tool_calls", "finish_reason", "usage", "raw")

    def __init__(
        self,
        text: str = "",
        reasoning: str = "",
        tool_calls: Any = (),
        finish_reason: str | None = None,
        usage: dict | None = None,
        raw: Any = None,
    ):
        self.text = text
        self.reasoning = reasoning
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.usage = usage
        self.raw = raw

    def __repr__(self) -> str:
        return "StreamDelta(text=%r, finish_reason=%r)" % (self.text, self.finish_reason)


# -- Public API --------------------------------------------------------------


class Client:
    """A connection to one OpenAI-compatible endpoint.

    :param base_url: the URL before ``/chat/completions``, such as
        ``http://localhost:11434/v1``; default ``$OPENAI_BASE_URL``.
    :param api_key: sent as ``Authorization: Bearer``; default
        ``$OPENAI_API_KEY``; local servers usually need none.
    :param model: the default model; default ``$OPENAI_MODEL``.
    :param timeout: seconds to wait for the server between bytes of an answer.
    :param connect_timeout: seconds to wait for a connection.
    :param stream_timeout: an overall limit in seconds for one call, its
        stream or its answer (``None``: no limit beyond ``timeout`` between reads).
    :param max_retries: how often a failed connection or a 408/409/429/5xx
        answer is retried, with exponential backoff.
    :param headers: extra headers for every request.
    :param session: a :class:`requests.Session` to use; it is not closed by us.
    :param max_image_bytes: the largest image accepted in ``images=``.
    :raises ConfigurationError: no base URL, or one that is not http(s).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout: float = _DEFAULT_TIMEOUT,
        connect_timeout: float = _DEFAULT_CONNECT_TIMEOUT,
        stream_timeout: float | None = None,
        max_retries: int = 2,
        headers: dict | None = None,
        session: requests.Session | None = None,
        max_image_bytes: int = _DEFAULT_MAX_IMAGE_BYTES,
    ):
        self.base_url = _normalize_base_url(base_url or os.environ.get("OPENAI_BASE_URL"))
        self._api_key = _check_api_key(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        self.model = model or os.environ.get("OPENAI_MODEL") or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.stream_timeout = stream_timeout
        self.max_retries = max_retries
        self.max_image_bytes = max_image_bytes
        self.headers = {"User-Agent": _USER_AGENT, "Content-Type": "application/json"}
        if not hasattr(urllib3.HTTPResponse, "read1"):
            # urllib3 1.x: bodies are read below its decoder, so ask for none.
            self.headers["Accept-Encoding"] = "identity"
        self.headers.update(headers or {})
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()

    def chat(
        self,
        messages: str | list,
        *,
        model: str | None = None,
        images: Iterable | None = None,
        timeout: float | None = None,
        stream_timeout: float | None = None,
        **params: Any,
    ) -> ChatResult:
        """Send a conversation and return the complete answer.

        :param messages: a string (one user message) or a list of message dicts.
        :param images: image sources added to the last user message.
        :param timeout: overrides the client's read timeout for this call.
        :param stream_timeout: overall seconds the call may take.
        :param params: go into the JSON payload as they are (``temperature``,
            ``max_tokens``, ``tools``, vendor extras).
        """
        call = self._call(messages, model, images, params, False, timeout, stream_timeout)
        response = self._send("POST", "/chat/completions", call)
        body = _read_body(response, call)
        if _is_event_stream(response, body):
            # Some servers stream even when asked not to: read it all.
            return ChatStream(self, response, call, chunks=(body,)).result
        return self._completion(response, body, call)

    def stream(
        self,
        messages: str | list,
        *,
        model: str | None = None,
        images: Iterable | None = None,
        timeout: float | None = None,
        stream_timeout: float | None = None,
        **params: Any,
    ) -> ChatStream:
        """Send a conversation and stream the answer as :class:`StreamDelta` s.

        The request is made here, so an HTTP error raises at once. Use the
        stream as a context manager, or iterate it to the end, so that its
        connection is released.

        :param stream_timeout: overall seconds the stream may take.
        :raises StreamingNotSupported: the endpoint answered without streaming
            (the complete answer, if any, is in ``.result``).
        """
        call = self._call(messages, model, images, params, True, timeout, stream_timeout)
        response = self._send("POST", "/chat/completions", call)
        ctype = response.headers.get("Content-Type", "")
        if "text/event-stream" in ctype:
            return ChatStream(self, response, call)
        body = _read_body(response, call)
        if _is_event_stream(response, body):  # SSE under another content type
            return ChatStream(self, response, call, chunks=(body,))
        error = StreamingNotSupported(
            "%s does not stream the OpenAI way: it answered with %s instead of "
            "text/event-stream; the complete answer is in .result (or use chat())"
            % (_safe_url(self.base_url), ctype or "no content type")
        )
        error.result = self._completion(response, body, call)
        raise error

    def models(self, *, timeout: float | None = None) -> list:
        """Return the ids of the models the endpoint serves."""
        call = _Call(None, None, timeout=timeout or self.timeout)
        response = self._send("GET", "/models", call)
        body = _read_body(response, call)
        data = _decode_json(response, body)
        items = data.get("data", data.get("models")) if isinstance(data, dict) else data
        if items is None:  # Ollama with no models pulled says "data": null
            return []
        if not isinstance(items, list):
            raise InvalidResponse(
                "GET %s/models returned no model list: %s" % (_safe_url(self.base_url), _clip(body))
            )
        ids = []
        for item in items:
            if isinstance(item, dict):
                item = item.get("id") or item.get("name") or item.get("model")
            if isinstance(item, str):
                ids.append(item)
        return ids

    def close(self) -> None:
        """Close the HTTP session, unless it was the caller's."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Client(base_url=%r, model=%r%s)" % (
            _safe_url(self.base_url),
            self.model,
            ", api_key=***" if self._api_key else "",
        )

    # -- Internals of the client --

    def _call(self, messages, model, images, params, stream, timeout, stream_timeout):
        model = model or self.model
        if not model:
            raise ConfigurationError(
                "no model given: pass model= to Client() or to the call, or set "
                "OPENAI_MODEL (client.models() lists what %s serves)" % _safe_url(self.base_url)
            )
        if images is not None:
            images = [
                image if isinstance(image, dict) else image_part(image, max_bytes=self.max_image_bytes)
                for image in images
            ]
        payload = build_chat_payload(messages, model=model, stream=stream, images=images, **params)
        del images
        urls = []
        payload["messages"], has_images = _lift_urls(payload["messages"], urls)
        text = _dumps(payload)
        del payload  # now only `urls` holds the big image texts
        body = _splice(text, urls)
        limit = stream_timeout if stream_timeout is not None else self.stream_timeout
        return _Call(
            body,
            model,
            stream=stream,
            images=has_images,
            timeout=timeout if timeout is not None else self.timeout,
            limit=limit,
        )

    def _send(self, method, path, call):
        """Make a request, retrying what may be retried; return a 2xx response."""
        url = self.base_url + path
        read_timeout = call.timeout
        if call.limit is not None:
            read_timeout = min(read_timeout, call.limit)
        headers = dict(self.headers)
        headers["Accept"] = "text/event-stream" if call.stream else "application/json"
        if self._api_key:
            headers["Authorization"] = "Bearer " + self._api_key
        attempt = 0
        while True:
            try:
                log.debug("%s %s (attempt %d)", method, _safe_url(url), attempt + 1)
                response = self.session.request(
                    method,
                    url,
                    data=call.body,
                    headers=headers,
                    timeout=(self.connect_timeout, read_timeout),
                    stream=True,
                )
            except requests.RequestException as exc:
                error = _network_error(exc, url, self.connect_timeout, read_timeout)
                retry = not isinstance(error, ConnectionRefused) or not _is_loopback(url)
                if isinstance(exc, requests.ReadTimeout):
                    retry = False  # the server may still be working on it
                wait = None
            else:
                if response.status_code < 400:
                    return response
                error = self._error_response(response, call)
                retry = response.status_code in _RETRY_STATUSES and type(error) in (
                    APIError,
                    RateLimited,
                    ServerError,
                )
                wait = _retry_after(response.headers)
                if wait is not None and wait > _RETRY_AFTER_CAP:
                    retry = False  # the caller decides whether to wait that long
            if wait is None:
                wait = min(_RETRY_MAX_WAIT, _RETRY_BASE * 2**attempt) * random.uniform(0.5, 1.0)
            if call.deadline is not None and time.monotonic() + wait > call.deadline:
                retry = False  # no time left for another try
            if not retry or attempt >= self.max_retries:
                raise error from error.__cause__
            log.debug("retrying in %.2fs after: %s", wait, error)
            time.sleep(wait)
            attempt += 1

    def _error_response(self, response, call):
        with response:
            try:
                raw = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True) or b""
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                # The error page itself broke: the status is still worth reporting.
                log.debug("could not read the error body: %s", exc)
                raw = b""
        return self._error(
            response.status_code,
            raw,
            call,
            where="%s %s" % (response.request.method, _safe_url(response.url)),
            retry_after=_retry_after(response.headers),
        )

    def _error(self, status, raw, call, *, where, retry_after=None):
        """The exception for an error answer, an error body or an error event."""
        error = _api_error(status, raw, call, where, self.base_url, self._api_key, retry_after)
        if isinstance(error, UnknownModel):
            self._fill_models(error)
        return error

    def _completion(self, response, body, call):
        """A ChatResult from a non-stream answer."""
        data = _decode_json(response, body)
        if _error_in(data):
            # LM Studio answers a wrong path with 200 {"error": "Unexpected endpoint..."}.
            where = "%s %s" % (response.request.method, _safe_url(response.url))
            raise self._error(response.status_code, body, call, where=where)
        return _parse_completion(data, response)

    def _fill_models(self, error):
        """Add the served models and the closest name to an UnknownModel."""
        try:
            error.available = self.models(timeout=min(self.timeout, 10.0))
        except OpenAICompatError as exc:
            log.debug("could not list the models: %s", exc)
            return
        error.suggestion = _closest(error.model, error.available)
        hint = "Served models: %s." % (", ".join(error.available) or "none")
        if error.suggestion:
            hint = "Did you mean %r? %s" % (error.suggestion, hint)
        error.args = ("%s %s" % (error.args[0], hint),)


class ChatStream:
    """An answer arriving as :class:`StreamDelta` objects.

    Iterate it; afterwards ``result`` holds the whole answer. Breaking out of
    the loop early and leaving a ``with`` block release the connection.
    """

    def __init__(self, client, response, call, chunks=None):
        self.response = response
        self.model = call.model
        self._acc = _Accumulator(call.model)
        if chunks is None:
            chunks = _read_chunks(response.raw, call)
        # The generator must not hold self: without a cycle, a stream that
        # is simply dropped closes its connection at once.
        self._deltas = _deltas(chunks, self._acc, response, client, call)

    def __iter__(self) -> Iterator[StreamDelta]:
        return self

    def __next__(self) -> StreamDelta:
        return next(self._deltas)

    @property
    def result(self) -> ChatResult:
        """The answer; reads the rest of the stream first if it is still open."""
        for _ in self._deltas:
            pass
        return self._acc.result()

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._deltas.close()
        self.response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "ChatStream(model=%r, text_so_far=%r)" % (self.model, _clip(self._acc.text(), 40))


def build_chat_payload(
    messages: str | list,
    *,
    model: str,
    stream: bool = False,
    images: Iterable | None = None,
    **params: Any,
) -> dict:
    """Build the JSON body of a Chat Completions request.

    :param messages: a string (one user message) or a list of message dicts;
        the caller's list is not changed.
    :param images: image sources or parts added to the last user message.
    :param params: copied into the payload as they are.

    >>> build_chat_payload("Hi", model="m", temperature=0)
    {'model': 'm', 'messages': [{'role': 'user', 'content': 'Hi'}], 'temperature': 0}
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            if not isinstance(message, dict) or "role" not in message:
                raise TypeError("each message must be a dict with a 'role', not %r" % (message,))
        messages = list(messages)
    else:
        raise TypeError("messages must be a string or a list of message dicts, not %s" % type(messages).__name__)
    if images is not None:
        parts = [image if isinstance(image, dict) else image_part(image) for image in images]
        for i in range(len(messages) - 1, -1, -1):
            if messages[i]["role"] == "user":
                break
        else:
            raise ValueError("images need a user message to attach to; the messages have none")
        message = dict(messages[i])
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        message["content"] = list(content or []) + parts
        messages[i] = message
    payload = {"model": model, "messages": messages}
    if stream:
        payload["stream"] = True
    payload.update(params)
    return payload


def image_data_url(
    source: Any, *, mime: str | None = None, max_bytes: int = _DEFAULT_MAX_IMAGE_BYTES
) -> str:
    """Return a ``data:`` URL with the image base64-encoded.

    :param source: a path (``str`` or ``os.PathLike``), ``bytes``, or a binary
        file object. An ``http(s)://`` or ``data:`` URL is returned unchanged.
    :param mime: the MIME type; by default taken from the bytes' signature,
        then from the file name.
    :param max_bytes: larger images are refused.
    :raises InvalidImage: the source cannot be read, is too big, or is not an image.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://", "data:")):
        return source
    data, name = _read_image(source, max_bytes)
    mime = mime or _sniff_mime(data) or _mime_from_name(name)
    if not mime:
        raise InvalidImage(
            "%s is not an image this module recognises (PNG, JPEG, GIF, WebP, BMP, "
            "TIFF, HEIC, AVIF); pass mime= if it is one" % name
        )
    # Encoded in slices (a multiple of 3 bytes, so the pieces join into one
    # base64 text): the whole image is never held as base64 bytes and text at once.
    view = memoryview(data)
    pieces = ["data:", mime, ";base64,"]
    for start in range(0, len(view), _B64_SLICE):
        pieces.append(base64.b64encode(view[start : start + _B64_SLICE]).decode("ascii"))
    del view, data
    return "".join(pieces)


def image_part(
    source: Any, *, detail: str | None = None, max_bytes: int = _DEFAULT_MAX_IMAGE_BYTES
) -> dict:
    """Return an ``image_url`` content part for a message.

    :param source: anything :func:`image_data_url` takes.
    :param detail: ``"low"``, ``"high"`` or ``"auto"`` where the server knows it.
    """
    image_url = {"url": image_data_url(source, max_bytes=max_bytes)}
    if detail is not None:
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def tool_message(call: ToolCall | str, content: Any) -> dict:
    """Build the ``role: tool`` message that answers a tool call.

    :param call: the :class:`ToolCall` (or its id) being answered.
    :param content: the result; anything but a string is sent as JSON.
    """
    call_id = call.id if isinstance(call, ToolCall) else call
    if not isinstance(content, str):
        content = json.dumps(content)
    return {"role": "tool", "tool_call_id": call_id, "content": content}


# -- Internals: requests -----------------------------------------------------


class _Call:
    """What a request needs to know about the call that made it."""

    __slots__ = ("body", "model", "stream", "images", "timeout", "limit", "deadline")

    def __init__(self, body, model, *, stream=False, images=False, timeout=_DEFAULT_TIMEOUT, limit=None):
        self.body = body
        self.model = model
        self.stream = stream
        self.images = images
        self.timeout = timeout  # seconds between bytes
        self.limit = limit  # seconds for the whole call, or None
        self.deadline = time.monotonic() + limit if limit is not None else None


def _dumps(value):
    return json.dumps(value, separators=(",", ":"))


def _lift_urls(messages, urls):
    """Take long image URLs out of the messages, for :func:`_splice`.

    ``json.dumps`` copies a string twice (escaped, then joined), so a 20 MB
    image would sit in memory as base64 text four times at once. A URL that
    needs no JSON escaping is replaced by a mark and collected in ``urls``.
    Returns (messages, whether any image part was seen); the caller's message
    dicts are not changed.
    """
    seen = False
    lifted = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts = []
            for part in content:
                image = part.get("image_url") if isinstance(part, dict) else None
                if image is not None:
                    seen = True
                    url = image.get("url") if isinstance(image, dict) else None
                    if isinstance(url, str) and len(url) > _SPLICE_MIN and _plain(url):
                        urls.append(url)
                        part = dict(part, image_url=dict(image, url=_SPLICE_MARK))
                parts.append(part)
            message = dict(message, content=parts)
        lifted.append(message)
    return lifted, seen


def _plain(text):
    """Whether JSON writes ``text`` as it is (printable ASCII, no quote or backslash)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _splice(text, urls):
    """UTF-8 JSON bytes of ``text`` with the lifted URLs put back in order.

    Each URL is let go as soon as it is bytes, so a big image is held at most
    twice at any moment.
    """
    if not urls:
        return text.encode("utf-8")
    pieces = text.split(_dumps(_SPLICE_MARK))
    del text
    body = []
    for i, piece in enumerate(pieces[:-1]):
        body.append(piece.encode("utf-8"))
        body.append(b'"')
        body.append(urls[i].encode("ascii"))
        urls[i] = None
        body.append(b'"')
    body.append(pieces[-1].encode("utf-8"))
    return b"".join(body)


def _normalize_base_url(url):
    if not url or not url.strip():
        known = "; ".join("%s %s" % pair for pair in _LOCAL_SERVERS)
        raise ConfigurationError(
            "no base URL: pass base_url= or set OPENAI_BASE_URL to the URL before "
            "/chat/completions. Usual local servers: " + known
        )
    url = url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")].rstrip("/")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        guess = "http://" + url.split("://", 1)[-1]
        raise ConfigurationError(
            "the base URL %r must start with http:// or https:// (did you mean %r?)"
            % (_safe_url(url), _safe_url(guess))
        )
    return url


def _check_api_key(key):
    if key is None:
        return None
    key = key.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) > 255 for ch in key):
        # Said without the key: requests would put it in its own message.
        raise ConfigurationError(
            "the API key contains spaces, line breaks or non-Latin-1 characters; "
            "check how OPENAI_API_KEY or api_key= was read"
        )
    return key or None


def _safe_url(url):
    """The URL without a password in it."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return scheme + "://***@" + rest.split("@", 1)[1]
    return url


def _host_port(url):
    parts = urllib3.util.parse_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.host or "", port


def _is_loopback(url):
    host = _host_port(url)[0].strip("[]").lower()
    return host == "localhost" or host.endswith(".localhost") or host.startswith("127.") or host == "::1"


def _cause(exc, kind):
    """The first exception of ``kind`` in the chain that led to ``exc``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = inner or exc.__cause__ or exc.__context__
    return None


def _network_error(exc, url, connect_timeout, read_timeout):
    """Map a requests exception to ours, with a message that says what to do."""
    host, port = _host_port(url)
    where = "%s:%s" % (host, port)
    if isinstance(exc, requests.ConnectTimeout):
        error = Timeout(
            "could not connect to %s within %ss: the host is unreachable or the port "
            "is filtered; check the base URL (or raise connect_timeout=)" % (where, connect_timeout)
        )
    elif isinstance(exc, requests.Timeout):
        error = Timeout(
            "the server at %s sent nothing for %ss; it may still be loading the model "
            "(raise timeout= to wait longer)" % (where, read_timeout)
        )
    elif _cause(exc, ConnectionRefusedError):
        error = ConnectionRefused(
            "connection refused by %s: the local server isn't running or the base "
            "URL/port is wrong (%s)" % (where, _safe_url(url))
        )
    elif _cause(exc, socket.gaierror):
        error = ConnectionFailed("could not resolve the host %r: check the base URL" % host)
    elif isinstance(exc, requests.exceptions.SSLError):
        error = ConnectionFailed(
            "TLS with %s failed: %s (is it plain http://?)" % (where, _reason(exc))
        )
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        error = ConfigurationError("the URL %r is not valid: %s" % (_safe_url(url), _reason(exc)))
    elif _cause(exc, http.client.RemoteDisconnected):
        error = ConnectionFailed("%s closed the connection without answering" % where)
    else:
        error = ConnectionFailed("the connection to %s failed: %s" % (where, _reason(exc)))
    error.__cause__ = exc
    return error


def _reason(exc):
    """The innermost, most specific text of a network error."""
    inner = getattr(exc, "reason", None) or (exc.args[0] if exc.args else None)
    while isinstance(getattr(inner, "reason", None), BaseException):
        inner = inner.reason
    return str(inner if isinstance(inner, BaseException) else exc)


def _retry_after(headers):
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After``, or None."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _read_body(response, call):
    """The whole body as bytes, within the call's time limits."""
    with response:
        return b"".join(_read_chunks(response.raw, call))


def _is_event_stream(response, body):
    if "text/event-stream" in response.headers.get("Content-Type", ""):
        return True
    return body.lstrip()[:5] == b"data:"


def _decode_json(response, body):
    try:
        return json.loads(body)
    except ValueError as exc:
        kind = response.headers.get("Content-Type") or "no content type"
        raise InvalidResponse(
            "%s %s answered %s with %s that is not JSON%s: %s"
            % (
                response.request.method,
                _safe_url(response.url),
                response.status_code,
                kind,
                " (an HTML page: a proxy or a web server, not the API?)" if _looks_html(body) else "",
                _clip(_page_text(body)),
            )
        ) from exc


def _looks_html(body):
    return body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html", b"<head", b"<body"))


def _page_text(body):
    """Text of a body for a message: an HTML page's title, else the body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    if _looks_html(text[:64].encode("utf-8", "replace")):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        h1 = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.I | re.S)
        found = title or h1
        if found:
            return re.sub(r"\s+", " ", found.group(1)).strip()
    return text.strip()


def _clip(text, limit=200):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


# -- Internals: images ------------------------------------------------------

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "avif": "image/avif",
}


def _sniff_mime(data):
    """The MIME type from the first bytes of an image, or None."""
    for magic, mime in _SIGNATURES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":  # ISO media: the brand says which
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
    return None


def _mime_from_name(name):
    stem, dot, ext = name.rpartition(".")
    return _EXTENSIONS.get(ext.lower().rstrip("'\"")) if dot else None


def _read_image(source, max_bytes):
    """(bytes, a name for messages) of an image source, at most max_bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the image bytes (%d bytes)" % len(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = repr(path)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise InvalidImage("cannot read the image %s: %s" % (name, exc.strerror or exc)) from exc
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImage("the image %s is not a regular file" % name)
        if info.st_size > max_bytes:
            raise InvalidImage(_too_big(name, info.st_size, max_bytes))
        with open(path, "rb") as f:
            # One byte more than stat said shows a file that grew meanwhile.
            data = f.read(info.st_size + 1)
    elif hasattr(source, "read"):
        name = repr(getattr(source, "name", "the image file object"))
        # In pieces: read(n) sets aside n bytes at once, however short the file.
        pieces, size = [], 0
        while size <= max_bytes:
            piece = source.read(min(1 << 20, max_bytes + 1 - size))
            if not piece:
                break
            if not isinstance(piece, bytes):
                raise InvalidImage("the image file object %s must be opened in binary mode ('rb')" % name)
            pieces.append(piece)
            size += len(piece)
        data = b"".join(pieces)
        del pieces
    else:
        raise InvalidImage(
            "an image must be a path, bytes, a binary file or an http(s)/data URL, not %s"
            % type(source).__name__
        )
    if len(data) > max_bytes:
        raise InvalidImage(_too_big(name, len(data), max_bytes))
    if not data:
        raise InvalidImage("the image %s is empty" % name)
    return data, name


def _too_big(name, size, limit):
    return "the image %s is larger than max_image_bytes (%s > %d bytes); shrink it or raise the limit" % (
        name,
        "at least %d" % size if size == limit + 1 else size,
        limit,
    )


# -- Internals: error bodies -------------------------------------------------

# "Unknown model" and "wrong path" both arrive as 404 from many servers, so the
# body decides. Families, not single strings: Ollama "model 'x' not found",
# vLLM "The model `x` does not exist.", LiteLLM "Invalid model name passed in
# model=x", LM Studio 'Invalid model identifier "x"', OpenAI model_not_found.
# The patterns are compiled on first use (re caches them), not at import.
_MODEL_MISSING = (
    r"(?is)\bmodel\b.{0,300}?\b(not found|does not exist|doesn't exist|not available|"
    r"is not served|not loaded|unknown)|\b(invalid|unknown|no such|unsupported) model\b"
)
_VISION_REFUSED = (
    r"(?is)(image|vision|multi-?modal)\w*.{0,80}?(not supported|unsupported|not enabled|"
    r"not allowed|not available)|(not|n't) (support|accept)\w* (image|vision|multi-?modal)|"
    r"not a multi-?modal model|mmproj"
)
_STREAM_REFUSED = (
    r"(?is)\bstream\w*\b.{0,80}?(not supported|unsupported|not allowed|not permitted|"
    r"unrecognized|extra (fields|inputs)|unexpected)|(unrecognized|unknown|unexpected)\b.{0,40}\bstream\b"
)
_ENDPOINT_MISSING = r"(?i)unexpected endpoint|no route|page not found|^not found$"
# llama-cpp-python answers a malformed request with 500 and pydantic's words.
_VALIDATION = r"(?i)validation error|field required|is not a valid|invalid type"
# LiteLLM without a database answers an unknown key with 400 "no_db_connection".
_AUTH_TYPES = ("authentication_error", "auth_error", "invalid_api_key", "no_db_connection")


def _error_fields(body):
    """(message, code, type) from any of the error body shapes servers send."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):  # {"error": "text"}: vLLM 401, LM Studio
            return error, body.get("code"), body.get("type")
        if isinstance(error, dict):
            message = error.get("message", error.get("detail", error.get("msg")))
            if isinstance(message, dict):  # LiteLLM nests another error
                inner = _error_fields(message)
                return inner[0], error.get("code", inner[1]), error.get("type", inner[2])
            if isinstance(message, list):  # FastAPI's validation list
                message = "; ".join(_detail_text(item) for item in message)
            if message is None and error is not body:
                message = _dumps(error)
            return _unwrap_repr(str(message or "")), error.get("code"), error.get("type")
    if isinstance(body, list):
        return "; ".join(_detail_text(item) for item in body), None, None
    return str(body or ""), None, None


def _detail_text(item):
    if isinstance(item, dict) and "msg" in item:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        return "%s: %s" % (where, item["msg"]) if where else str(item["msg"])
    return str(item)


def _unwrap_repr(message):
    """LiteLLM sometimes puts a Python repr of an error dict in ``message``."""
    match = re.search(r"""['"](?:message|error)['"]\s*:\s*(['"])(.*?)\1\s*[,}]""", message, re.S)
    if match and "{" in message[: match.start()]:
        return match.group(2)
    return message


def _parse_error_body(raw, api_key):
    """Decode an error body; the API key is cut out before anything else."""
    text = raw.decode("utf-8", "replace")
    if api_key:
        text = text.replace(api_key, "***")
    stripped = text.strip()
    for field in ("data:", "error:"):  # an error sent as one SSE event
        if stripped.startswith(field):
            stripped = stripped[len(field):].split("\n", 1)[0].strip()
    try:
        return json.loads(stripped)
    except ValueError:
        return _page_text(stripped) if stripped else ""


def _api_error(status, raw, call, where, base_url, api_key, retry_after):
    """Build the exception for an error answer, with a message that says what to fix."""
    body = _parse_error_body(raw, api_key)
    message, code, kind = _error_fields(body)
    message = message.strip() or http.client.responses.get(status, "no message")
    cls = _error_class(status, message, code, kind, call)
    what = "%s: %s" % ("HTTP %s" % status if status else where, _clip(message, 500))
    base = _safe_url(base_url)
    if cls is UnknownModel:
        text = "Model %r is not served at %s (%s)." % (call.model, base, what)
    elif cls is EndpointNotFound:
        text = "%s does not exist (%s). " % (where, what)
        if re.search(r"/v\d+\w*$", base_url):
            text += "Check the base URL %r: it is the part before /chat/completions." % base
        else:
            text += "The base URL probably lacks /v1: try %r." % (base + "/v1")
    elif cls is AuthenticationError:
        if api_key:
            text = "The server rejected the API key (%s): check OPENAI_API_KEY or api_key=." % what
        else:
            text = "The server wants an API key (%s): set OPENAI_API_KEY or pass api_key=." % what
    elif cls is VisionNotSupported:
        text = (
            "Model %r or this server does not accept images (%s). Use a vision model "
            "(llama.cpp needs --mmproj)." % (call.model, what)
        )
    elif cls is StreamingNotSupported:
        return StreamingNotSupported(
            "%s does not stream the OpenAI way: it rejected stream=true (%s); use chat()." % (base, what)
        )
    elif cls is RateLimited:
        later = "; the server asks to retry after %.0fs" % retry_after if retry_after is not None else ""
        text = "Rate limited (%s)%s." % (what, later)
    elif cls is ServerError:
        text = "The server failed (%s)." % what
    elif cls is BadRequest:
        text = "The server rejected the request (%s)." % what
    else:
        text = "The server answered with an error (%s)." % what
    error = cls(text)
    error.status_code = status
    error.message = message
    error.code = code
    error.body = body
    if cls is UnknownModel:
        error.model = call.model
    if cls is RateLimited:
        error.retry_after = retry_after
    return error


def _error_class(status, message, code, kind, call):
    if call.images and re.search(_VISION_REFUSED, message):
        return VisionNotSupported
    if call.model and (code == "model_not_found" or re.search(_MODEL_MISSING, message)):
        return UnknownModel
    if status in (401, 403) or kind in _AUTH_TYPES or code == "invalid_api_key":
        return AuthenticationError
    if call.stream and status in (400, 422) and re.search(_STREAM_REFUSED, message):
        return StreamingNotSupported
    if status == 404 or re.search(_ENDPOINT_MISSING, message):
        return EndpointNotFound
    if status == 429:
        return RateLimited
    if status is not None and status >= 500:
        return BadRequest if re.search(_VALIDATION, message) else ServerError
    if status is not None and 400 <= status < 500 and status not in (408, 409):
        return BadRequest
    return APIError


def _closest(name, choices):
    """The served name a user most likely meant, or None."""
    if not name or not choices:
        return None
    low = name.lower()
    for choice in choices:
        if choice.lower() == low:
            return choice
    for choice in choices:  # "llama3" for "llama3:latest", or "org/llama3"
        if choice.lower().startswith(low) or low in choice.lower():
            return choice
    import difflib  # only needed on this error path

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


# -- Internals: streams ------------------------------------------------------


def _read_chunks(raw, call):
    """Yield the body's bytes as soon as they arrive, in either framing.

    A chunked body is read one HTTP chunk at a time, as each arrives. For a
    close-delimited one, ``read1`` returns the bytes at hand where ``read(n)``
    would wait for n of them (urllib3 before 2.0 has no ``read1``, its
    http.client response has; the client then asks for uncompressed bodies).
    """
    if raw.chunked and raw.supports_chunked_reads():
        pieces = raw.read_chunked(None, decode_content=True)
    else:
        read1 = getattr(raw, "read1", None) or raw._fp.read1
        pieces = iter(lambda: read1(_READ_SIZE), b"")
    deadline = call.deadline
    while True:
        try:
            data = next(pieces, b"")
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
            if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
                error = Timeout(
                    "the server sent nothing more for %ss in the middle of the answer "
                    "(raise timeout= to wait longer)" % call.timeout
                )
            elif isinstance(exc, urllib3.exceptions.DecodeError):
                error = InvalidResponse("the answer could not be decoded: %s" % exc)
            else:
                error = ConnectionFailed(
                    "the connection dropped in the middle of the answer: %s" % _reason(exc)
                )
            raise error from exc
        if not data:
            return
        yield data
        if deadline is not None and time.monotonic() > deadline:
            raise Timeout("the answer took longer than stream_timeout=%ss" % call.limit)


def _deltas(chunks, acc, response, client, call):
    """Parse a stream into StreamDeltas, folding them into acc."""
    head = []
    try:
        for event in _SSEClient(_event_blocks(chunks, head)).events():
            data = event.data
            if data == "[DONE]" or data[:1] == "[" and data.strip() == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                if event.event == "error":  # an error told in plain text
                    raise _error_event(data, client, call) from exc
                raise InvalidResponse(
                    "the stream sent an event that is not JSON (%s): %s" % (exc, _clip(data))
                ) from exc
            if event.event == "error" or _error_in(chunk):
                if chunk.__class__ is dict and chunk.get("choices"):
                    acc.add(chunk)  # OpenRouter puts the error beside a last delta
                raise _error_event(chunk, client, call)
            yield acc.add(chunk)
        if not acc.finish_reason:
            if not acc.chunks and head:
                raise InvalidResponse(
                    "the server sent no server-sent events, only: %s" % _clip(head[0])
                )
            raise StreamInterrupted(
                "the stream ended before the answer was finished "
                "(no finish_reason and no [DONE])"
            )
    except OpenAICompatError as exc:
        raise _interrupted(exc, acc.result())
    finally:
        response.close()


def _error_event(chunk, client, call):
    """The exception for an error event in a stream."""
    error = chunk.get("error", chunk) if isinstance(chunk, dict) else chunk
    code = error.get("code") if isinstance(error, dict) else None
    status = int(code) if str(code).isdigit() and 400 <= int(code) < 600 else None
    raw = chunk.encode("utf-8") if isinstance(chunk, str) else _dumps(chunk).encode("utf-8")
    return client._error(status, raw, call, where="the stream")


class _SSEClient(sseclient.SSEClient):
    """sseclient-py's parser, fed whole events by :func:`_event_blocks`.

    Its own ``_read`` would cut the stream into events again, line by line.
    """

    def _read(self):
        return self._event_source


def _event_blocks(chunks, head):
    """Cut a byte stream into whole SSE events for sseclient.

    sseclient-py parses an event well but not a stream: it rescans a growing
    buffer (quadratic on a big event), trusts a ``\\r\\n`` not to be split
    between reads, and fails on invalid UTF-8. So each block handed over here
    is one whole event with ``\\n`` line ends, in valid UTF-8. Line ends per
    https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
    are CRLF, LF or CR. The first bytes go into the list ``head``, for a
    message about a body that is not SSE at all.
    """
    pending = []  # pieces of the unfinished event
    cr = False  # the previous chunk ended in CR: it may be half a CRLF
    for data in chunks:
        if not head:
            head.append(data[:200])
        if (
            not pending
            and not cr
            and data.endswith(b"\n\n")
            and data.find(b"\n\n") == len(data) - 2
            and b"\r" not in data
        ):
            # The usual case: one read, one whole event with plain line ends.
            yield _whole_event((data,))
            continue
        if cr:
            data = b"\r" + data
        cr = data.endswith(b"\r")
        if cr:
            data = data[:-1]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if pending and data[:1] == b"\n" and pending[-1][-1:] == b"\n":
            pending.append(b"\n")
            yield _whole_event(pending)
            pending = []
            data = data[1:]
        events = data.split(b"\n\n")
        if len(events) == 1:
            if data:
                pending.append(data)
            continue
        pending.append(events[0])
        pending.append(b"\n\n")
        yield _whole_event(pending)
        for event in events[1:-1]:
            yield _whole_event((event, b"\n\n"))
        pending = [events[-1]] if events[-1] else []
    if pending and b"".join(pending).strip():
        # An unterminated last event is offered too: cut JSON fails to parse.
        pending.append(b"\n\n")
        yield _whole_event(pending)


def _whole_event(pieces):
    event = b"".join(pieces)
    if not event.isascii():  # the SSE spec decodes with replacement
        event = event.decode("utf-8", "replace").encode("utf-8")
    if event.startswith(b"error:"):
        # Old llama.cpp sends "error: {...}", a field sseclient drops.
        event = b"event: error\ndata:" + event[6:]
    return event


class _Accumulator:
    """Folds stream chunks into a ChatResult."""

    def __init__(self, model):
        self.model = model
        self.texts = []
        self.reasonings = []
        self.calls = _ToolCalls()
        self.finish_reason = None
        self.usage = None
        self.chunks = 0
        self.first = None

    def add(self, chunk):
        """Fold in one chunk (or a whole non-stream answer) and return its delta."""
        if chunk.__class__ is not dict:
            raise InvalidResponse("the server sent a JSON %s, not an object: %s" % (type(chunk).__name__, _clip(_dumps(chunk))))
        self.chunks += 1
        if self.first is None:
            self.first = chunk
        text = reasoning = ""
        calls = ()
        finish = None
        try:
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta") or choice.get("message") or {}
                text = delta.get("content") or ""
                if text.__class__ is not str:
                    text = _content_text(text)
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                if reasoning.__class__ is not str:
                    reasoning = _content_text(reasoning)
                calls = delta.get("tool_calls") or ()
                finish = choice.get("finish_reason")
                if text:
                    self.texts.append(text)
                if reasoning:
                    self.reasonings.append(reasoning)
                if calls:
                    self.calls.add(calls)
                if finish:
                    self.finish_reason = finish
            usage = chunk.get("usage")
            if usage is None and "x_groq" in chunk:  # Groq puts it there
                usage = chunk["x_groq"].get("usage")
        except (AttributeError, TypeError, LookupError) as exc:
            raise InvalidResponse(
                "the server sent a chat completion of an unexpected shape (%s): %s" % (exc, _clip(_dumps(chunk)))
            ) from exc
        if usage:
            self.usage = usage
        model = chunk.get("model")
        if model and model.__class__ is str:
            self.model = model
        return StreamDelta(text, reasoning, calls, finish, usage, chunk)

    def text(self):
        return "".join(self.texts)

    def result(self):
        text, reasoning = self.text(), "".join(self.reasonings)
        calls = self.calls.result()
        message = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = [call.to_dict() for call in calls]
        first = self.first or {}
        raw = {
            "id": first.get("id"),
            "object": "chat.completion",
            "created": first.get("created"),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        return ChatResult(
            text,
            reasoning=reasoning,
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            raw=raw,
        )


class _ToolCalls:
    """Merges tool-call fragments: by ``index``, else ``id``, else position."""

    def __init__(self):
        self.calls = []  # [id, type, name, [argument pieces]]
        self.by_index = {}
        self.by_id = {}

    def add(self, fragments):
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                continue
            index, call_id = fragment.get("index"), fragment.get("id")
            call = self.by_index.get(index) if index is not None else None
            if call is not None and call_id and call[0] and call_id != call[0]:
                call = None  # a new id at a reused index is a new call
            if call is None and call_id:
                call = self.by_id.get(call_id)
            if call is None and index is None and not call_id and position < len(self.calls):
                call = self.calls[position]
            if call is None:
                call = [call_id, fragment.get("type") or "function", "", []]
                self.calls.append(call)
                if index is not None:
                    self.by_index[index] = call
            if call_id:
                call[0] = call_id
                self.by_id[call_id] = call
            function = fragment.get("function") or {}
            name = function.get("name")
            if name and name != call[2]:  # some servers repeat the whole name
                call[2] += name
            arguments = function.get("arguments")
            if arguments is not None:
                call[3].append(arguments if isinstance(arguments, str) else _dumps(arguments))

    def result(self):
        return [ToolCall(c[0], c[2], "".join(c[3]), c[1]) for c in self.calls]


def _error_in(data):
    """Whether a 200 body or a stream chunk is an error report.

    ``{"error": ...}`` from most servers, even beside ``choices`` (OpenRouter's
    mid-stream errors); ``{"object": "error", ...}`` from older vLLM.
    """
    return data.__class__ is dict and (bool(data.get("error")) or data.get("object") == "error")


def _content_text(content):
    """Text of a message content that is a list of parts (or None)."""
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _parse_completion(data, response):
    """A ChatResult from the JSON of a non-stream answer.

    The answer is read as one chunk whose choice has a whole ``message``, so
    every dialect the stream reader knows works here too.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list):
        raise InvalidResponse(
            "%s answered %s without the 'choices' of a chat completion: %s"
            % (_safe_url(response.url), response.status_code, _clip(_dumps(data)))
        )
    acc = _Accumulator(None)
    acc.add(data)
    result = acc.result()
    result.raw = data
    return result


_interrupted_classes: dict = {}


def _interrupted(error, partial):
    """Make ``error`` also a StreamInterrupted that carries ``partial``.

    A server error that arrives mid-stream stays catchable by its own class
    (``except ServerError``) and as an interruption (``except StreamInterrupted``).
    """
    cls = type(error)
    if not isinstance(error, StreamInterrupted):
        both = _interrupted_classes.get(cls)
        if both is None:
            both = type(cls.__name__, (cls, StreamInterrupted), {"__module__": __name__, "__doc__": cls.__doc__})
            _interrupted_classes[cls] = both
        error.__class__ = both
    error.partial = partial
    if partial.text:
        error.args = (
            "%s (%d characters had arrived; they are in .partial)" % (error.args[0], len(partial.text)),
        )
    return error


# -- Command line ------------------------------------------------------------

# Exit status of the command line by error family, first match wins.
_EXIT_CODES = (
    (ConfigurationError, 2),
    (InvalidImage, 2),
    (ConnectionFailed, 3),
    (Timeout, 4),
    (AuthenticationError, 5),
    (UnknownModel, 6),
    (EndpointNotFound, 6),
    (StreamInterrupted, 8),
    (StreamingNotSupported, 8),
    (InvalidResponse, 8),
    (APIError, 7),
)
_EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for Ctrl-C
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat` reports when `head` stops reading

# Errors after which a conversation cannot go on: nothing answers any more, or
# the key is refused (and the key cannot be changed from inside the session).
_SESSION_ENDERS = (ConnectionFailed, AuthenticationError)

# What a terminal acts on instead of showing: the C0 and C1 control characters
# and DEL (ESC and CSI start sequences that move the cursor, erase lines, set
# the window title or write the clipboard through OSC 52; CR and BS go back
# over what is shown), and the bidirectional overrides that reorder a line.
# Tab only moves forward, so it stays; newline stays where text has lines.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL_IN_TEXT = re.compile("[%s]" % _CONTROLS)
_CONTROL_IN_LINE = re.compile("[\n%s]" % _CONTROLS)

_CHAT_HELP = """\
/system TEXT   set the system message (/system alone removes it)
/image PATH    attach an image to the next message
/model NAME    switch model (/model alone shows the current one)
/reset         forget the conversation
/exit, /quit   leave (so does Ctrl-D)
/help          this list
Ctrl-C stops an answer; what was printed stays in the conversation.
A line starting with // sends the rest of it from its second /."""


def main(argv: list | None = None) -> int:
    """Run the command line (``python -m bor_openai_compat``); return the exit status."""
    args = _parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    out, err = _Output(sys.stdout), _Output(sys.stderr)
    try:
        try:
            if args.command == "doctor":
                return _Doctor(args, out).run()
            client = Client(args.base_url, args.api_key, args.model, timeout=args.timeout)
            if args.command == "models":
                for model in client.models():
                    out.line(model)
                return 0
            return _cli_chat(client, args, out, err)
        except OpenAICompatError as exc:
            if args.debug:
                import traceback

                traceback.print_exc()
            out.end_line()
            err.line("error: %s" % exc)
            return _exit_code(exc)
        except KeyboardInterrupt:
            # Ctrl-C is how a user says "enough", not a bug to report.
            if args.debug:
                import traceback

                traceback.print_exc()
            out.end_line()
            return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`| head`). Python flushes stdout once more at exit;
        # point it at /dev/null so that flush is quiet as well.
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no real file behind stdout
            pass
        return _EXIT_BROKEN_PIPE


def _parse_args(argv):
    import argparse  # only the command line needs it

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", help="the URL before /chat/completions (default $OPENAI_BASE_URL)")
    common.add_argument("--api-key", help="default $OPENAI_API_KEY")
    common.add_argument("--model", help="default $OPENAI_MODEL")
    common.add_argument("--timeout", type=float, default=_DEFAULT_TIMEOUT, help="seconds to wait for the server")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser = argparse.ArgumentParser(
        prog="bor-openai-compat",
        description="Talk to an OpenAI-compatible endpoint, and find out what is wrong when it fails.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    chat = commands.add_parser("chat", parents=[common], help="send a prompt and print the answer as it arrives")
    chat.add_argument("prompt", nargs="?",
                      help="the prompt, or - to read it from stdin; without one, a conversation on a terminal")
    chat.add_argument("-i", "--interactive", action="store_true",
                      help="hold a conversation (after the prompt, if one is given)")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--image", action="append", default=[], help="attach an image (repeatable)")
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    chat.add_argument("--json", action="store_true", help="print the raw final response as JSON")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    commands.add_parser("models", parents=[common], help="list the models the endpoint serves")
    doctor = commands.add_parser("doctor", parents=[common], help="check the set-up step by step")
    doctor.add_argument("--vision", action="store_true", help="also check that an image is accepted")
    args = parser.parse_args(argv)
    if args.command == "chat":
        args.interactive = args.interactive or (args.prompt is None and _isatty(sys.stdin))
        if args.interactive and args.json:
            chat.error("--json prints one response; give a prompt instead of -i")
    return args


def _exit_code(exc):
    return next((code for cls, code in _EXIT_CODES if isinstance(exc, cls)), 1)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # None under pythonw, or closed
        return False


def _visible(text, *, one_line=False):
    """``text`` with what a terminal would act on written out (``\\x1b``, ``\\r``).

    With ``one_line`` newlines are written out too, so that an error or a
    ``doctor`` check stays on its line.
    """
    text = text.replace("\r\n", "\n")
    return (_CONTROL_IN_LINE if one_line else _CONTROL_IN_TEXT).sub(_written_out, text)


def _written_out(match):
    char = match.group()
    if char in "\n\r":
        return "\\n" if char == "\n" else "\\r"
    return ("\\x%02x" if ord(char) < 0x100 else "\\u%04x") % ord(char)


class _Output:
    """stdout or stderr of the command line.

    Text from the server goes to a file or a pipe as it came, and to a
    terminal with its control characters made visible, so that a server
    cannot move the cursor, rewrite a line, or set the window title. A
    character the output cannot encode (a cp1252 console, ``LANG=C``) is
    replaced instead of ending the program.
    """

    def __init__(self, stream):
        self.stream = stream
        self.tty = _isatty(stream)
        self.at_line_start = True
        self._cr = False  # an answer's CR held back until we see whether LF follows

    def text(self, text, *, dim=False):
        """Write text from the server that may span lines (an answer, reasoning)."""
        if self.tty:
            if self._cr:
                text, self._cr = "\r" + text, False
            if text.endswith("\r"):
                text, self._cr = text[:-1], True
            text = _visible(text)
        self.write(text, dim=dim and self.tty)

    def line(self, text):
        """Write one whole line; whatever it holds shows and stays on it."""
        self.end_line()
        self.write(_visible(text, one_line=True) + "\n")

    def end_line(self):
        """Finish a line left open by an answer."""
        if self._cr:
            self._cr = False
            self.write("\\r")
        if not self.at_line_start:
            self.write("\n")

    def write(self, text, *, dim=False):
        if not text:
            return
        self.at_line_start = text.endswith("\n")
        if dim:
            text = "\033[2m%s\033[0m" % text
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            self.stream.write(text.encode(encoding, "replace").decode(encoding))
        self.stream.flush()


def _cli_chat(client, args, out, err):
    chat = _Chat(client, args, out, err)
    prompt = args.prompt
    if prompt == "-" or (prompt is None and not args.interactive):
        prompt = sys.stdin.read()
    if args.interactive:
        return chat.converse(prompt)
    if args.json:
        result = client.chat(chat.messages(chat.user_message(prompt)), model=chat.model, **chat.params)
        # JSON escapes control characters itself; only the encoding can fail.
        out.write(json.dumps(result.raw, indent=2, ensure_ascii=False) + "\n")
        return 0
    chat.ask(chat.user_message(prompt))
    return 0


class _Chat:
    """The chat command: one prompt, or a conversation at the terminal."""

    def __init__(self, client, args, out, err):
        self.client, self.out, self.err = client, out, err
        self.debug = args.debug
        self.model = client.model
        self.system = args.system
        self.history = []  # the user and assistant messages so far
        self.images = list(args.image)  # paths or image parts for the next message
        self.streaming = not args.no_stream
        self.params = {}
        if args.max_tokens is not None:
            self.params["max_tokens"] = args.max_tokens
        if args.temperature is not None:
            self.params["temperature"] = args.temperature
        self.shown = []  # the answer printed so far, for Ctrl-C

    def user_message(self, prompt):
        """The next user message, with the images attached so far."""
        if not self.images:
            return {"role": "user", "content": prompt}
        parts = [
            image if isinstance(image, dict) else image_part(image, max_bytes=self.client.max_image_bytes)
            for image in self.images
        ]
        return {"role": "user", "content": [{"type": "text", "text": prompt}] + parts}

    def messages(self, user):
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history + [user]

    def ask(self, user):
        """Send ``user`` after the conversation so far, print the answer as it
        arrives and return it as an assistant message."""
        self.shown = []
        messages = self.messages(user)
        if not self.streaming:
            result = self.client.chat(messages, model=self.model, **self.params)
            self.show(result.reasoning, result.text)
            self.out.end_line()
            return result.message
        try:
            stream = self.client.stream(messages, model=self.model, **self.params)
        except StreamingNotSupported as exc:
            if exc.result is None:
                raise
            self.err.line("note: %s" % exc)
            self.streaming = False  # said once; the next turns simply wait
            self.show(exc.result.reasoning, exc.result.text)
            self.out.end_line()
            return exc.result.message
        with stream:
            for delta in stream:
                self.show(delta.reasoning, delta.text)
            answer = stream.result.message
        self.out.end_line()
        return answer

    def show(self, reasoning, text):
        if reasoning:
            self.err.text(reasoning, dim=True)
        if text:
            if self.err.tty and self.out.tty:
                self.err.end_line()  # the answer starts below the reasoning
            self.out.text(text)
            self.shown.append(text)

    def converse(self, first=None):
        """Hold a conversation until Ctrl-D or /exit; return the exit status."""
        if _isatty(sys.stdin) and self.out.tty:
            try:
                import readline  # noqa: F401  (importing it gives input() line editing and history)
            except ImportError:  # Windows without pyreadline
                pass
        self.err.line("Chatting with %s at %s. /help lists the commands; Ctrl-D leaves."
                      % (self.model or "no model yet (/model NAME)", _safe_url(self.client.base_url)))
        line = first
        while True:
            if line is None:
                if self.err.tty:
                    self.err.end_line()  # after reasoning with no answer
                try:
                    line = self.read("> ")
                except KeyboardInterrupt:  # like a shell: the line is dropped
                    self.out.write("\n")
                    continue
                except EOFError:
                    self.out.write("\n")
                    return 0
            if line.startswith("/") and not line.startswith("//"):
                if self.command(line):
                    return 0
            elif line.strip():
                code = self.turn(line[1:] if line.startswith("//") else line)
                if code:
                    return code
            line = None

    def read(self, prompt):
        if _isatty(sys.stdin) and self.out.tty:
            return input(prompt)
        # input() would write the prompt into the redirected stdout.
        if _isatty(sys.stdin):
            self.err.write(prompt)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def turn(self, prompt):
        """One exchange; a failed one leaves the conversation as it was."""
        user, self.shown = None, []
        try:
            user = self.user_message(prompt)
            answer = self.ask(user)
        except KeyboardInterrupt:
            self.out.end_line()
            if user is not None and self.shown:  # what was printed stays, for "go on"
                self.history += [user, {"role": "assistant", "content": "".join(self.shown)}]
                self.images = []
            return 0
        except OpenAICompatError as exc:
            if self.debug:
                import traceback

                traceback.print_exc()
            self.out.end_line()
            if isinstance(exc, _SESSION_ENDERS):
                self.err.line("error: %s" % exc)
                self.err.line("The session ends.")
                return _exit_code(exc)
            self.err.line("error: %s" % exc)
            if self.images:  # kept, the same refusal would come again
                self.err.line("The image is dropped; /image attaches one again.")
                self.images = []
            return 0
        self.history += [user, answer]
        self.images = []
        return 0

    def command(self, line):
        """Run a /command; return True to leave."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name in ("/exit", "/quit"):
            return True
        if name == "/reset":
            self.history, self.images = [], []
            self.err.line("The conversation starts again.")
        elif name == "/system":
            self.system = rest or None
            self.err.line("System message set." if rest else "No system message.")
        elif name == "/image":
            self.attach(os.path.expanduser(rest.strip("'\"")))
        elif name == "/model":
            self.model = rest or self.model
            self.err.line("Model: %s" % (self.model or "none; /model NAME picks one"))
        elif name == "/help":
            for text in _CHAT_HELP.splitlines():
                self.err.line(text)
        else:
            self.err.line("%s is not a command; /help lists them." % name)
        return False

    def attach(self, path):
        if not path:
            self.err.line("/image needs a path.")
            return
        try:  # read now, so that a wrong path is said before the message is typed
            part = image_part(path, max_bytes=self.client.max_image_bytes)
        except OpenAICompatError as exc:
            self.err.line("error: %s" % exc)
            return
        self.images.append(part)
        self.err.line("%s is attached to your next message." % path)


class _Doctor:
    """The troubleshooting list a user would otherwise walk by hand."""

    def __init__(self, args, out):
        self.args = args
        self.out = out
        key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.has_key = bool((key or "").strip())
        self.failed = False
        try:
            "✓✗".encode(getattr(out.stream, "encoding", None) or "ascii")
            self.ok, self.bad = "✓", "✗"
        except (LookupError, UnicodeEncodeError):
            self.ok, self.bad = "ok  ", "FAIL"

    def say(self, good, text):
        self.failed = self.failed or not good
        self.out.line("%s %s" % (self.ok if good else self.bad, text))
        return good

    def run(self):
        args = self.args
        base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            self.say(False, "no base URL: set OPENAI_BASE_URL or pass --base-url")
            self.scan()
            return 1
        source = "--base-url" if args.base_url else "OPENAI_BASE_URL"
        client = Client(base_url, args.api_key, args.model, timeout=args.timeout, max_retries=0)
        self.say(True, "base URL %s (from %s)" % (_safe_url(client.base_url), source))
        served = self.check_server(client)
        if served is None:
            return 1
        model = client.model
        if not model:
            self.say(False, "no model: set OPENAI_MODEL or pass --model (served: %s)" % (", ".join(served) or "none"))
            return 1
        if model in served:
            self.say(True, "model %r is served" % model)
        start = time.monotonic()
        try:
            result = client.chat("Say OK.", max_tokens=8)
        except UnknownModel as exc:
            hint = "; did you mean %r?" % exc.suggestion if exc.suggestion else ""
            self.say(False, "model %r is not served here%s (served: %s)"
                     % (model, hint, ", ".join(exc.available or served) or "none"))
            return 1
        except OpenAICompatError as exc:
            self.say(False, "a short chat failed: %s" % exc)
            return 1
        if model not in served:
            self.say(True, "model %r is not listed, but the server accepts it" % model)
        self.say(True, "a short chat works (%.2fs): %r" % (time.monotonic() - start, _clip(result.text, 40)))
        self.check_stream(client)
        if args.vision:
            self.check_vision(client)
        return 1 if self.failed else 0

    def check_server(self, client):
        """Checks 2-4: the server answers, the path is right, the key is accepted."""
        host, port = _host_port(client.base_url)
        try:
            served, error = client.models(), None
        except ConnectionRefused:
            self.say(False, "nothing answers at %s:%s: the local server isn't running or the base "
                            "URL/port is wrong" % (host, port))
            return None
        except (ConnectionFailed, Timeout) as exc:
            self.say(False, "the server does not answer: %s" % exc)
            return None
        except OpenAICompatError as exc:  # an answer, if not the one we want
            served, error = None, exc
        self.say(True, "the server answers at %s:%s" % (host, port))
        if isinstance(error, EndpointNotFound):
            fixed = self.find_path(client)
            if fixed:
                fix = "add /v1 to the base URL" if fixed == client.base_url + "/v1" else "change the base URL"
                self.say(False, "wrong path: %s/models is not found but %s/models answers: %s "
                                "(--base-url %s or OPENAI_BASE_URL)"
                         % (_safe_url(client.base_url), _safe_url(fixed), fix, _safe_url(fixed)))
            else:
                self.say(False, "wrong path: GET %s/models is not found; the base URL should end "
                                "where /chat/completions begins" % _safe_url(client.base_url))
            return None
        if isinstance(error, AuthenticationError):
            self.say(False, "the API key is not accepted (HTTP %s: %s): %s" % (
                error.status_code, _clip(error.message, 200),
                "check OPENAI_API_KEY or --api-key" if self.has_key else "set OPENAI_API_KEY or --api-key"))
            return None
        if error is not None:
            self.say(False, "GET /models failed: %s" % error)
            return []
        self.say(True, "the path is right (GET /models lists %d model%s)" % (len(served), "" if len(served) == 1 else "s"))
        self.say(True, self.check_key(client))
        return served

    def check_key(self, client):
        """What is known of the key: only a refusal without it shows it was checked."""
        if not self.has_key:
            return "the server asked for no key"
        # "" rather than None: no key at all, not the one from the environment.
        keyless = Client(client.base_url, "", client.model, timeout=self.args.timeout, max_retries=0)
        try:
            keyless.models()
            if not client.model:
                return "the server lists its models without a key (the key was not checked)"
            # Some servers list models to anyone but want the key for a chat.
            keyless.chat("Say OK.", max_tokens=1)
        except AuthenticationError:
            return "the API key is accepted (the server refuses requests without it)"
        except APIError:  # refused for another reason than the key
            pass
        except OpenAICompatError as exc:
            return "the key was not checked: a request without it failed (%s)" % exc
        finally:
            keyless.close()
        return "the server asked for no key (it answers without one; the key set was not checked)"

    def find_path(self, client):
        parts = urllib3.util.parse_url(client.base_url)
        origin = "%s://%s" % (parts.scheme, parts.netloc)
        for candidate in (client.base_url + "/v1", origin + "/v1"):
            try:
                Client(candidate, self.args.api_key, timeout=5, max_retries=0).models()
                return candidate
            except OpenAICompatError:
                continue
        return None

    def check_vision(self, client):
        try:
            client.chat("What colour is this picture?", images=[_tiny_png()], max_tokens=8)
        except VisionNotSupported as exc:
            return self.say(False, "images are refused: %s" % exc)
        except OpenAICompatError as exc:
            return self.say(False, "a chat with an image failed: %s" % exc)
        return self.say(True, "an image is accepted")

    def check_stream(self, client):
        try:
            with client.stream("Count to three.", max_tokens=8) as stream:
                deltas = sum(1 for _ in stream)
        except StreamingNotSupported as exc:
            return self.say(False, "streaming: no. %s" % exc)
        except OpenAICompatError as exc:
            return self.say(False, "streaming failed: %s" % exc)
        return self.say(True, "streaming works the OpenAI way (%d events)" % deltas)

    def scan(self):
        """Without a base URL, look for the usual local servers on 127.0.0.1."""
        found = []
        for name, url in _LOCAL_SERVERS:
            url = url.replace("localhost", "127.0.0.1")
            try:
                models = Client(url, self.args.api_key, timeout=3, connect_timeout=1, max_retries=0).models()
            except ConnectionFailed:
                self.out.line("  nothing at %s (%s)" % (url, name))
                continue
            except OpenAICompatError as exc:
                found.append(url)
                self.out.line("  %s answers at %s, but: %s" % (name, url, exc))
                continue
            found.append(url)
            self.out.line("  %s answers at %s (%s)" % (name, url, ", ".join(models[:5]) or "no models"))
        if found:
            self.out.line("  so: export OPENAI_BASE_URL=%s" % found[0])


def _tiny_png():
    """An 8x8 red PNG, made here so that doctor --vision needs no file."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    sys.exit(main())
