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
import collections
import contextlib
import email.utils
import functools
import http.client
import io
import ipaddress
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import stat
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import weakref
import zlib
from typing import Any, Iterable, Iterator

import requests
import urllib3

try:
    import fcntl  # an output file held by one batch at a time (POSIX)
except ImportError:  # Windows: not held
    fcntl = None

import sseclient

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ChatResult",
    "ModelInfo",
    "BatchItem",
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
    "UnsupportedImage",
    "ContextLengthExceeded",
    "ToolsNotSupported",
    "RateLimited",
    "ServerError",
    "StreamingNotSupported",
    "StreamInterrupted",
    "InvalidResponse",
    "InvalidJSON",
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
_DEFAULT_MAX_EVENT_BYTES = 32 << 20  # one stream event, or one whole answer
_ERROR_BODY_LIMIT = 1 << 20  # an error page bigger than this is cut
_DRAIN_WAIT = 1.0  # seconds to wait for the end of a body after [DONE]
_SCAN_LIMIT = 4096  # characters of server text the classifying patterns see
_MESSAGE_LIMIT = 2000  # characters of a whole message
_SERVER_MESSAGE_LIMIT = 500  # characters of the server's message in ours
_EXCERPT_LIMIT = 200  # characters of a body shown in a message
_MIN_SECRET = 4  # shorter secrets are not cut out of messages: they would cut words
# Exception fields that may hold a secret (a server's echo, a URL), scrubbed
# as the exception is made: it may be shown after its client is gone, or in
# another process.
_SCRUBBED_FIELDS = ("message", "body", "excerpt", "where", "base_url", "available", "suggestion")
_ACCEPT_ENCODING = "gzip, deflate"  # what the client itself can decode, with a bound
_MAX_REDIRECTS = 5
_DEFAULT_POOL_SIZE = 32  # connections kept per host: one per thread of a usual pool
_NO_PROXIES = {"http": None, "https": None, "all": None}  # None drops the environment's
_USER_AGENT = "bor-openai-compat/" + __version__

# What to change on each kind of server, for the errors that name a fix.
_CONTEXT_FIXES = {
    "llama.cpp": "Start llama-server with a larger -c/--ctx-size (it is shared by the --parallel slots).",
    "llama-cpp-python": "Start llama-cpp-python's server with a larger --n_ctx.",
    "vllm": "Start vLLM with a larger --max-model-len, or ask for fewer max_tokens.",
    "lmstudio": "Load the model in LM Studio with a larger context length.",
    "ollama": (
        "Raise Ollama's window: OLLAMA_CONTEXT_LENGTH for the server, or PARAMETER num_ctx in a "
        "Modelfile (its /v1 API cannot set it)."
    ),
    None: "Shorten the prompt, or ask for fewer max_tokens.",
}
_TOOLS_FIXES = {
    "vllm": "Start vLLM with --enable-auto-tool-choice --tool-call-parser NAME (the parser of the model's family).",
    "llama.cpp": "Start llama-server with --jinja (and a chat template that knows tools).",
    "ollama": "This model has no tool support in Ollama: use one whose capabilities list tools.",
    "openrouter": "No provider of this model on OpenRouter takes tools: pick another model.",
    None: "The model or server does not support tools here.",
}


# -- Secrets and messages ----------------------------------------------------

# The secrets of every live Client (keys, URL and proxy credentials, secret
# header values), in the forms a server may echo them. An error is scrubbed
# when it is made, while its client lives, and again whenever it is shown.
_SECRETS: Any = weakref.WeakKeyDictionary()  # a Client -> the forms of its secrets
_SECRETS_LOCK = threading.Lock()
_secrets_sorted: list = [None, ()]  # (the registry's size when sorted, every form longest first)


def _keep_secrets(owner, values):
    forms = set()
    for value in values:
        if value and len(value) >= _MIN_SECRET:
            quoted = urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]
            forms.update((value,) + quoted)
    if forms:
        with _SECRETS_LOCK:
            _SECRETS[owner] = _SECRETS.get(owner, frozenset()) | forms
            _secrets_sorted[0] = None


def _secrets():
    """Every secret form, longest first (one may contain another)."""
    with _SECRETS_LOCK:
        if _secrets_sorted[0] != len(_SECRETS):  # a client added some, or is gone
            forms = set().union(*_SECRETS.values())
            _secrets_sorted[:] = [len(_SECRETS), tuple(sorted(forms, key=len, reverse=True))]
        return _secrets_sorted[1]


def _scrub(text):
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _scrub_value(value):
    """A JSON value (or text) with every secret cut out of its strings."""
    if isinstance(value, str):
        return _scrub(value)
    if not _secrets() or not isinstance(value, (dict, list)):
        return value
    try:
        text = _dumps(value)
        return value if _scrub(text) == text else json.loads(_scrub(text))
    except (ValueError, RecursionError):
        return None


def _finish(text, limit):
    """Every text meant for a person passes here: secrets out, length bounded."""
    if not isinstance(text, str):
        text = str(text)
    secrets = _secrets()
    longest = len(secrets[0]) if secrets else 0
    text = _scrub(text[: limit + longest])
    return text if len(text) <= limit else text[:limit] + "..."


class _ScrubbingFilter(logging.Filter):
    """Log records of this module pass _finish too, whoever formatted them.

    sseclient-py logs under the logger of its subclass's module, which is
    ours: every event (with its id) and any line without a colon, whole.
    Its records are dropped here, so that no part of an answer reaches a log.
    """

    def filter(self, record):
        if record.pathname == _SSECLIENT_SOURCE:
            return False
        record.msg, record.args = _finish(record.getMessage(), _MESSAGE_LIMIT), ()
        return True


class _ForeignScrubbingFilter(logging.Filter):
    """urllib3's log records with the secrets cut out.

    They show the URL of each request with its query (``?key=``), also one
    that a redirect's Location gave.
    """

    def filter(self, record):
        if _secrets():
            try:
                record.msg, record.args = _scrub(record.getMessage()), ()
            except Exception:  # a record that cannot be formatted fails later, where logging reports it
                pass
        return True


_SSECLIENT_SOURCE = getattr(sseclient, "__file__", None)
log.addFilter(_ScrubbingFilter())
# A filter on a logger sees only the records logged there, not its children's:
# each module of urllib3 that logs a URL has its own.
for _name in ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_ForeignScrubbingFilter())
del _name


def _dumps(value):
    return json.dumps(value, separators=(",", ":"))


def _loads(text):
    """``json.loads`` that fails with ValueError only, also on deep nesting."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _text(body):
    """Bytes from a server as text for a message (the start of it is enough)."""
    return body[: _MESSAGE_LIMIT * 4].decode("utf-8", "replace")


def _json_text(value):
    """A decoded JSON value as text for a message."""
    try:
        return _dumps(value)[: _MESSAGE_LIMIT * 4]
    except (ValueError, RecursionError):
        return "(a JSON %s nested too deeply to show)" % type(value).__name__

# -- Exceptions --------------------------------------------------------------
#
# An error takes what it knows as keyword fields, keeps them as attributes and
# builds its message from them when asked (openai-python's _exceptions.py and
# requests' exceptions.py are the models). Code that learns more later, the
# served models or the text that had arrived, sets a field; the message follows.
# Every message passes _finish(), which cuts out secrets and bounds its length.


class OpenAICompatError(Exception):
    """Root of every error raised by this module."""

    def __init__(self, detail: str = "", **fields: Any) -> None:
        detail = _scrub(detail)
        super().__init__(detail)
        #: Our own sentence about what went wrong (the class may add to it).
        self.detail = detail
        for name, value in fields.items():
            if not hasattr(type(self), name):
                raise TypeError("%s has no field %r" % (type(self).__name__, name))
            if name in _SCRUBBED_FIELDS:
                value = _scrub_value(value)
            setattr(self, name, value)

    def __str__(self) -> str:
        text = self._describe()
        hint = getattr(self, "hint", "")
        if hint:
            text += " " + hint
        partial = getattr(self, "partial", None)
        if partial is not None and partial.text:
            text += " (%d characters had arrived; they are in .partial)" % len(partial.text)
        return _finish(text, _MESSAGE_LIMIT)

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, str(self))

    def __reduce__(self):
        # Pools move exceptions between threads and processes by pickling:
        # rebuilt from the sentence and the fields, as they were.
        return (type(self), (self.detail,), self.__dict__)

    def _describe(self) -> str:
        return self.detail


class ConfigurationError(OpenAICompatError, ValueError):
    """The client is set up wrongly (no base URL, a bad scheme, no model)."""


class InvalidImage(OpenAICompatError, ValueError):
    """An image source cannot be read or is not an image."""


class ConnectionFailed(OpenAICompatError):
    """The server could not be reached (DNS failure, reset, TLS, dropped).

    :ivar retryable: whether another try may go better.
    """

    retryable: bool = True


class ConnectionRefused(ConnectionFailed):
    """Nothing listens at the host and port of the base URL."""


class Timeout(OpenAICompatError):
    """The server did not connect, answer or finish in time.

    :ivar connecting: ``True`` when no connection was made (worth a retry).
    """

    connecting: bool = False


class InvalidResponse(OpenAICompatError):
    """A success status with a body that is not what the API promises.

    :ivar excerpt: the start of what the server sent instead.
    """

    excerpt: str | None = None

    def _describe(self) -> str:
        if self.excerpt is None:
            return self.detail
        return "%s: %s" % (self.detail, _finish(self.excerpt, _EXCERPT_LIMIT))


class InvalidJSON(InvalidResponse):
    """A ``schema=`` answer that is not JSON, does not validate, or was cut.

    :ivar attempts: the text of every answer, the re-asks' included.
    :ivar error: why the last one was refused.
    :ivar partial: the last :class:`ChatResult`.
    """

    attempts: list = []
    error: str = ""
    partial: ChatResult | None = None


class APIError(OpenAICompatError):
    """The server answered with an error.

    :ivar status_code: the HTTP status (``None`` for an error event in a stream).
    :ivar message: the server's own error message.
    :ivar code: the server's error code, if it sent one.
    :ivar body: the decoded error body (JSON value or text).
    :ivar retry_after: seconds the server asked to wait before trying again.
    """

    status_code: int | None = None
    message: str = ""
    code: Any = None
    body: Any = None
    retry_after: float | None = None
    #: What to do, when the call explains the error (appended to the message).
    hint: str = ""
    #: Where the answer came from ("POST http://.../chat/completions", "the stream").
    where: str = ""
    base_url: str = ""
    model: str | None = None

    def _what(self) -> str:
        return _status_text(self)

    def _describe(self) -> str:
        return self.detail or "The server answered with an error (%s)." % self._what()


class AuthenticationError(APIError):
    """The API key is missing or was rejected (401/403).

    :ivar key_sent: whether the request carried an API key.
    """

    key_sent: bool = False

    def _describe(self) -> str:
        if self.key_sent:
            return "The server rejected the API key (%s): check OPENAI_API_KEY or api_key=." % self._what()
        return "The server wants an API key (%s): set OPENAI_API_KEY or pass api_key=." % self._what()


class UnknownModel(APIError):
    """The endpoint does not serve the requested model.

    :ivar model: the name that was asked for.
    :ivar available: the names the server serves, when it could list them.
    :ivar suggestion: the closest served name, or ``None``.
    """

    available: list | None = None
    suggestion: str | None = None

    def _describe(self) -> str:
        text = "Model %r is not served at %s (%s)." % (self.model, self.base_url, self._what())
        if self.available is not None:
            served = "Served models: %s." % (", ".join(self.available) or "none")
            if self.suggestion:
                served = "Did you mean %r? %s" % (self.suggestion, served)
            text += " " + served
        return text


class EndpointNotFound(APIError):
    """The URL does not exist on the server, usually a base URL missing ``/v1``."""

    def _describe(self) -> str:
        if self.where.endswith("/embeddings"):
            return "The server serves no embeddings here (%s)." % self._what()
        text = "%s does not exist (%s). " % (self.where, self._what())
        path = self.base_url.partition("?")[0]
        if re.search(r"/v\d+\w*$", path) or "/openai/deployments/" in path:
            return text + "Check the base URL %r: it is the part before /chat/completions." % self.base_url
        return text + "The base URL probably lacks /v1: try %r." % _join_url(self.base_url, "/v1")


class BadRequest(APIError):
    """The server rejected the request as invalid."""

    def _describe(self) -> str:
        return "The server rejected the request (%s)." % self._what()


class VisionNotSupported(BadRequest):
    """The model or server does not accept image input."""

    def _describe(self) -> str:
        if self.detail:  # refused before anything was sent, from what model_info() read
            return self.detail
        return (
            "Model %r or this server does not accept images (%s). Use a vision model "
            "(llama.cpp needs --mmproj)." % (self.model, self._what())
        )


class UnsupportedImage(BadRequest):
    """The server takes images, but not this kind: a URL, or a format it cannot read."""

    def _describe(self) -> str:
        return (
            "The server refused the image (%s). Send a JPEG, PNG or WebP as bytes or a "
            "path (a data: URL), not an http(s) URL: Ollama takes no other." % self._what()
        )


class ContextLengthExceeded(BadRequest):
    """The prompt (with the answer asked for) does not fit the model's context window.

    :ivar limit: the window in tokens, when the server said it.
    :ivar requested: the tokens the request needed in all, when the server said it.
    :ivar server: the kind of server that said so (``"llama.cpp"``, ...), or None.
    """

    limit: int | None = None
    requested: int | None = None
    server: str | None = None

    def _describe(self) -> str:
        if self.limit and self.requested:
            size = "%d tokens are needed and the window holds %d" % (self.requested, self.limit)
        elif self.limit:
            size = "the window holds %d tokens" % self.limit
        else:
            size = "it is too long for the window"
        return "The prompt does not fit the model's context window: %s (%s). %s" % (
            size, self._what(), _CONTEXT_FIXES.get(self.server, _CONTEXT_FIXES[None]))


class ToolsNotSupported(BadRequest):
    """Tools were sent, and the model or server cannot take them.

    :ivar server: the kind of server that said so, or None.
    """

    server: str | None = None

    def _describe(self) -> str:
        return "Tools were refused (%s). %s" % (self._what(), _TOOLS_FIXES.get(self.server, _TOOLS_FIXES[None]))


class RateLimited(APIError):
    """Too many requests (429); ``retry_after`` is the wait the server asked for."""

    def _describe(self) -> str:
        later = ""
        if self.retry_after is not None:
            later = "; the server asks to retry after %.0fs" % self.retry_after
        return "Rate limited (%s)%s." % (self._what(), later)


class ServerError(APIError):
    """The server failed (5xx)."""

    def _describe(self) -> str:
        return "The server failed (%s)." % self._what()


class StreamingNotSupported(OpenAICompatError):
    """The endpoint does not stream the OpenAI way.

    :ivar result: the complete :class:`ChatResult` when the server answered
        in one piece instead, else ``None``.
    :ivar status_code: with ``message``, ``code``, ``body``: the error answer
        that refused ``stream=true``, if that is how the server said it.
    """

    result: ChatResult | None = None
    status_code: int | None = None
    message: str = ""
    code: Any = None
    body: Any = None
    where: str = ""
    base_url: str = ""

    def _describe(self) -> str:
        if self.detail:
            return self.detail
        return "%s does not stream the OpenAI way: it rejected stream=true (%s); use chat()." % (
            self.base_url,
            _status_text(self),
        )


class StreamInterrupted(OpenAICompatError):
    """The stream broke after it started.

    :ivar partial: the :class:`ChatResult` accumulated before the break.
    """

    partial: ChatResult | None = None


# An error after a stream started is raised as its own class *and* as a
# StreamInterrupted, so that both ``except ServerError`` and ``except
# StreamInterrupted`` catch it. Each pair is made here once, under a name of
# its own, so that it pickles like any other class.
_MIDSTREAM: dict = {}
for _family in (
    ConnectionFailed, Timeout, InvalidResponse, APIError, AuthenticationError, UnknownModel,
    EndpointNotFound, BadRequest, VisionNotSupported, UnsupportedImage, ContextLengthExceeded, ToolsNotSupported,
    RateLimited, ServerError, StreamingNotSupported,
):  # fmt: skip
    _name = "_%sMidStream" % _family.__name__
    _MIDSTREAM[_family] = globals()[_name] = type(
        _name, (_family, StreamInterrupted), {"__module__": __name__, "__qualname__": _name, "__doc__": _family.__doc__}
    )
del _family, _name


def _status_text(error):
    """``HTTP 404: <the server's message>``, or where it came from instead of a status."""
    source = "HTTP %s" % error.status_code if error.status_code else error.where
    return "%s: %s" % (source, _finish(error.message, _SERVER_MESSAGE_LIMIT))


class _Cancelled(OpenAICompatError):
    """A call of a batch that was stopped (Ctrl-C, or an error that stops the batch); never leaves batch()."""


def _midstream(error: OpenAICompatError, partial: ChatResult) -> OpenAICompatError:
    """The same error, made also a StreamInterrupted that carries ``partial``."""
    cls = next((_MIDSTREAM[c] for c in type(error).__mro__ if c in _MIDSTREAM), StreamInterrupted)
    if isinstance(error, StreamInterrupted):
        cls = type(error)
    fields = dict(vars(error), partial=partial)
    return cls(fields.pop("detail"), **fields)


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
            return _loads(self.arguments)
        except ValueError as exc:
            raise InvalidResponse(
                "tool call %r (id %s) has arguments that are not valid JSON (%s)" % (self.name, self.id, exc),
                excerpt=self.arguments,
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

    __slots__ = (
        "text", "reasoning", "tool_calls", "finish_reason", "usage", "model", "raw", "logprobs", "warnings",
        "parsed", "schema_mode",
    )

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
        logprobs: list | None = None,
    ):
        self.text = text
        self.reasoning = reasoning
        self.tool_calls = tool_calls or []
        self.finish_reason = finish_reason
        self.usage = usage
        self.model = model
        #: The decoded JSON answer (for a stream: one built from its chunks).
        self.raw = raw
        #: The per-token entries of ``choices[0].logprobs.content`` when asked
        #: for with ``logprobs=True`` (a stream's put together), else None.
        self.logprobs = logprobs
        #: Sentences about an answer that looks fine but is not (empty when all is well).
        self.warnings = []
        #: The value of a ``schema=`` answer, validated.
        self.parsed = None
        #: How a ``schema=`` call asked: "json_schema", "json_object" or "prompt".
        self.schema_mode = None

    @property
    def message(self) -> dict:
        """The assistant message to append to a conversation."""
        message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message

    def json(self) -> Any:
        """Parse the answer text as JSON.

        Whitespace and one Markdown code fence around it (three backticks,
        optionally followed by ``json``) are ignored; the reasoning is not
        part of the text.

        :raises InvalidResponse: the text is not JSON, or is nested too deeply.
        """
        text = self.text.strip()
        fenced = re.match(r"```(?:json)?[ \t]*\r?\n(.*?)\r?\n?```\Z", text, re.S | re.I)
        if fenced:
            text = fenced.group(1)
        try:
            return _loads(text)
        except ValueError as exc:
            excerpt = self.text.strip()[:80] or "(empty)"
            raise InvalidResponse("the answer is not JSON (%s)" % exc, excerpt=excerpt) from exc

    def to_message(self, *, reasoning: bool = False) -> dict:
        """The assistant message to append, with ``reasoning_content`` if asked.

        DeepSeek's thinking mode with tools wants the reasoning back on the
        next turn (it answers 400 "Missing `reasoning_content` field" without
        it); other servers reject the field, so :attr:`message` leaves it out.
        """
        message = self.message
        if reasoning:
            message["reasoning_content"] = self.reasoning
        return message

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return "ChatResult(text=%r, finish_reason=%r, model=%r)" % (
            _finish(self.text, 60),
            self.finish_reason,
            self.model,
        )


class ModelInfo:
    """What the server says about one model (see :meth:`Client.model_info`).

    Each capability is ``True``, ``False``, or ``None`` where the server does
    not say; nothing is guessed from the model's name.
    """

    __slots__ = (
        "id", "server", "context_length", "max_context_length", "vision", "tools", "reasoning", "embeddings",
        "loaded", "sources", "raw",
    )

    def __init__(self, id: str, **fields: Any):
        #: The model id as the server serves it.
        self.id = id
        #: Which kind of server answered: "ollama", "llama.cpp", "llama-cpp-python",
        #: "lmstudio", "vllm", "litellm", "openrouter", or None.
        self.server = None
        #: The window the model has now (the loaded one), in tokens.
        self.context_length = None
        #: The most the model supports (trained or maximum), in tokens.
        self.max_context_length = None
        self.vision = None
        self.tools = None
        self.reasoning = None
        self.embeddings = None
        self.loaded = None
        #: The paths that were read, and their decoded JSON by path.
        self.sources = []
        self.raw = {}
        for name, value in fields.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        shown = ", ".join(
            "%s=%r" % (name, getattr(self, name))
            for name in ("server", "context_length", "max_context_length", "vision", "tools", "reasoning",
                         "embeddings", "loaded")
            if getattr(self, name) is not None
        )
        return _finish("ModelInfo(%r%s)" % (self.id, ", " + shown if shown else ""), _MESSAGE_LIMIT)


class BatchItem:
    """One item of :meth:`Client.batch`: its answer or its error."""

    __slots__ = ("index", "custom_id", "result", "error", "attempts", "elapsed")

    def __init__(self, index: int, custom_id: str, result: Any = None, error: OpenAICompatError | None = None,
                 attempts: int = 0, elapsed: float = 0.0):
        #: Its position in the input, from 0.
        self.index = index
        #: The id it was given, or ``"item-<index>"``.
        self.custom_id = custom_id
        #: A :class:`ChatResult`, or the vectors of an embeddings item; None on error.
        self.result = result
        #: The error it ended with, or None.
        self.error = error
        #: Requests made for it (0 when read back from the output file).
        self.attempts = attempts
        #: Seconds it took.
        self.elapsed = elapsed

    def __repr__(self) -> str:
        outcome = "error=%s" % type(self.error).__name__ if self.error is not None else "ok"
        return _finish("BatchItem(%d, %r, %s)" % (self.index, self.custom_id, outcome), _MESSAGE_LIMIT)


class StreamDelta:
    """One chunk of a stream.

    ``text`` and ``reasoning`` are ``""`` when the chunk has none; ``tool_calls``
    holds the raw tool-call fragments of this chunk (the merged calls are in
    ``stream.result.tool_calls``); ``index`` is the choice it belongs to (with
    ``n`` > 1); ``raw`` is the decoded chunk.
    """

    __slots__ = ("text", "reasoning", "tool_calls", "finish_reason", "usage", "raw", "index")

    def __init__(
        self,
        text: str = "",
        reasoning: str = "",
        tool_calls: Any = (),
        finish_reason: str | None = None,
        usage: dict | None = None,
        raw: Any = None,
        index: int = 0,
    ):
        self.text = text
        self.reasoning = reasoning
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.usage = usage
        self.raw = raw
        self.index = index

    def __repr__(self) -> str:
        return "StreamDelta(text=%r, finish_reason=%r)" % (self.text, self.finish_reason)


# -- Public API --------------------------------------------------------------


class Client:
    """A connection to one OpenAI-compatible endpoint.

    One client may be shared between threads.

    :param base_url: the URL before ``/chat/completions``, such as
        ``http://localhost:11434/v1``; default ``$OPENAI_BASE_URL``.
    :param api_key: sent as ``Authorization: Bearer``; default
        ``$OPENAI_API_KEY``; local servers usually need none.
    :param model: the default model; default ``$OPENAI_MODEL``.
    :param timeout: seconds to wait for the server between bytes of an answer.
    :param connect_timeout: seconds to wait for a connection.
    :param stream_timeout: an overall limit in seconds for one call: its
        connection, retries, and its stream or answer (``None``: no limit
        beyond ``timeout`` between reads).
    :param max_retries: how often a failed connection or a 408/409/429/5xx
        answer is retried, with exponential backoff.
    :param headers: extra headers for every request.
    :param session: a :class:`requests.Session` to use; it is not closed by us.
    :param max_image_bytes: the largest image accepted in ``images=``.
    :param max_event_bytes: the largest stream event, or whole answer, the
        client holds in memory; a server that sends more gets ``InvalidResponse``.
    :param verify: ``True`` to check the server's TLS certificate against the
        usual CAs (or ``$REQUESTS_CA_BUNDLE``), the path of a CA bundle to
        trust instead, or ``False`` not to check; it wins over the environment.
    :param pool_size: connections kept open per host, for threads sharing
        the client.
    :param think_tags: where ``<think>`` reasoning written in the content is
        split off: ``None`` when the content starts with ``<think>``, ``True``
        also when only ``</think>`` comes, ``False`` never (also per call).
    :raises ConfigurationError: no base URL, one that is not http(s), or an
        option out of range.
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
        max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES,
        verify: bool | str = True,
        pool_size: int = _DEFAULT_POOL_SIZE,
        think_tags: bool | None = None,
    ):
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        _keep_secrets(self, _url_secrets(base_url or ""))  # before any message can show them
        self.base_url = _normalize_base_url(base_url)
        self._api_key = _check_api_key(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        _keep_secrets(self, [self._api_key])
        self.model = model or os.environ.get("OPENAI_MODEL") or None
        self.timeout = _seconds("timeout", timeout)
        self.connect_timeout = _seconds("connect_timeout", connect_timeout)
        self.stream_timeout = _seconds("stream_timeout", stream_timeout, optional=True)
        self.max_retries = _count("max_retries", max_retries, 0)
        self.max_image_bytes = _count("max_image_bytes", max_image_bytes, 1)
        self.max_event_bytes = _count("max_event_bytes", max_event_bytes, 1)
        self.think_tags = _think_tags(think_tags)
        self.headers = {
            "User-Agent": _USER_AGENT,
            "Content-Type": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
        }
        self.headers.update(_check_headers(headers or {}))
        _keep_secrets(self, _header_secrets(self.headers))
        if not isinstance(verify, (bool, str, os.PathLike)):
            raise ConfigurationError("verify= must be True, False or the path of a CA bundle")
        if not isinstance(verify, bool) and not os.path.exists(verify):
            raise ConfigurationError("verify=%r: no CA bundle at that path" % os.fspath(verify))
        self.verify = verify if isinstance(verify, bool) else os.fspath(verify)
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _Adapter(pool_maxsize=_count("pool_size", pool_size, 1))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._paused_until = 0.0  # monotonic time before which no request starts (a 429's Retry-After)
        self._infos = {}  # model -> ModelInfo, read by model_info()
        self._json_modes = {}  # model -> the way of asking for JSON that it took (see _JSONCall)
        self._infos_lock = threading.Lock()
        proxies = list(session.proxies.values())
        if session.trust_env:
            proxies += urllib.request.getproxies().values()
        for proxy in proxies:
            _keep_secrets(self, _url_secrets(proxy or ""))

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
            ``max_tokens``, ``tools``, vendor extras), except the options below.
        :param schema: a JSON schema the answer must follow: asked for the
            way the server takes it, checked, and its value set on ``.parsed``.
        :param validate: a callable that takes the parsed JSON and returns the
            value to use or raises, or a class with ``model_validate`` (pydantic).
        :param reask: how often an answer that fails is asked for again (1).
        :raises InvalidJSON: no answer passed, or one was cut.
        """
        schema, validate, reask = _json_options(params, stream=False)
        if schema is not None or validate is not None:
            return _JSONCall(self, schema, validate, reask, model, timeout, stream_timeout).run(
                messages, images, params)
        call = self._call(messages, model, images, params, False, timeout, stream_timeout)
        return self._chat(call)

    def _chat(self, call):
        response = self._send("POST", "/chat/completions", call)
        if _is_event_stream(response):  # some servers stream even when asked not to
            return ChatStream(self, response, call).result
        body = _read_body(response, call, self.max_event_bytes)
        if body.lstrip()[:5] == b"data:":  # SSE under another content type
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
        schema, validate, _ = _json_options(params, stream=True)
        if schema is not None or validate is not None:
            return _JSONCall(self, schema, validate, 0, model, timeout, stream_timeout).stream(
                messages, images, params)
        call = self._call(messages, model, images, params, True, timeout, stream_timeout)
        return self._stream(call)

    def _stream(self, call, check=None):
        response = self._send("POST", "/chat/completions", call)
        if _is_event_stream(response):
            return ChatStream(self, response, call, check=check)
        body = _read_body(response, call, self.max_event_bytes)
        if body.lstrip()[:5] == b"data:":  # SSE under another content type
            return ChatStream(self, response, call, chunks=(body,), check=check)
        kind = response.headers.get("Content-Type") or "no content type"
        raise StreamingNotSupported(
            "%s does not stream the OpenAI way: it answered with %s instead of "
            "text/event-stream; the complete answer is in .result (or use chat())" % (_safe_url(self.base_url), kind),
            result=self._completion(response, body, call),
        )

    def models(self, *, timeout: float | None = None, stream_timeout: float | None = None) -> list:
        """Return the ids of the models the endpoint serves.

        :param timeout: seconds between bytes of the answer.
        :param stream_timeout: overall seconds the call may take.
        """
        return self._models(_Call(None, None, timeout=self._timeout(timeout), limit=self._limit(stream_timeout)))

    def model_info(
        self,
        model: str | None = None,
        *,
        refresh: bool = False,
        timeout: float | None = None,
        stream_timeout: float | None = None,
    ) -> ModelInfo:
        """Return what the server says about a model: its context window, whether
        it takes images and tools, reasons, embeds, is loaded.

        Only metadata is read (``/models`` and the server's own paths such as
        ``/props``, ``/api/show``, ``/api/ps``, ``/api/v0/models``,
        ``/model/info``): no model is loaded and no chat is sent. What a
        server does not say is ``None``. The answer is kept for the client's
        life (``refresh=True`` reads again); once read, ``images=`` for a
        model without vision is refused before anything is sent.

        :raises UnknownModel: the server does not list the model.
        :raises ConnectionFailed: and the other errors of :meth:`models`.
        """
        model = model or self.model
        if not model:
            raise ConfigurationError(
                "no model given: pass model= to Client() or to model_info(), or set OPENAI_MODEL"
            )
        if not refresh:
            known = self._infos.get(model)
            if known is not None:
                return known
        # The listing is models()'s own call: its failures are the same (a 500 that
        # names "model" is no UnknownModel here).
        call = _Call(None, None, timeout=self._timeout(timeout), limit=self._limit(stream_timeout))
        info = self._read_info(model, self._listing(call), call)
        with self._infos_lock:
            self._infos[model] = self._infos[info.id] = info
        return info

    def embed(
        self,
        inputs: str | list,
        *,
        model: str | None = None,
        timeout: float | None = None,
        stream_timeout: float | None = None,
        **params: Any,
    ) -> list:
        """Return the embedding vectors of texts, one per input, in input order.

        :param inputs: a string or a list of strings.
        :param stream_timeout: overall seconds the call may take.
        :param params: go into the JSON payload as they are (``dimensions``,
            ``encoding_format="base64"``: such vectors are decoded).
        :raises EndpointNotFound: the server serves no embeddings (llama.cpp's
            server needs ``--embeddings``).
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        elif not isinstance(inputs, (list, tuple)) or not all(isinstance(text, str) for text in inputs):
            raise TypeError("inputs must be a string or a list of strings, not %r" % (inputs,))
        model = model or self.model
        if not model:
            raise ConfigurationError(
                "no model given: pass model= to Client() or to embed(), or set OPENAI_MODEL "
                "(client.models() lists what %s serves)" % _safe_url(self.base_url)
            )
        if not inputs:
            return []
        _check_params(params)
        payload = dict({"model": model, "input": list(inputs)}, **params)
        body = _dumps(payload).encode("utf-8")
        call = _Call(body, model, timeout=self._timeout(timeout), limit=self._limit(stream_timeout))
        call.embeddings = True
        return self._embed(call, len(inputs))[0]

    def _embed(self, call, count):
        """(vectors, the decoded answer) of an /embeddings call."""
        response = self._send("POST", "/embeddings", call)
        body = _read_body(response, call, self.max_event_bytes)
        data = _decode_json(response, body)
        if _error_in(data):
            where = "%s %s" % (response.request.method, _safe_url(response.url))
            raise self._error(response.status_code, data, call, where)
        return _embeddings(data, count, _safe_url(response.url)), data

    def batch(
        self,
        items: Iterable,
        *,
        workers: int = 4,
        output: str | os.PathLike | None = None,
        model: str | None = None,
        timeout: float | None = None,
        stream_timeout: float | None = None,
        retry_errors: bool = False,
        **params: Any,
    ) -> Iterator[BatchItem]:
        """Run many requests, ``workers`` at a time; yield a :class:`BatchItem` for each, in input order.

        :param items: any iterable, read lazily: prompt strings, lists of
            message dicts, or dicts in the OpenAI Batch input format
            (``{"custom_id", "method": "POST", "url": "/v1/chat/completions"
            or "/v1/embeddings", "body": {...}}``).
        :param output: a JSONL file in the OpenAI Batch output format; each
            finished item is appended, flushed and synced. Run again with the
            same file to resume: items already in it are not sent again.
        :param retry_errors: on resume, send again the items recorded as errors.
        :param params: fill in what an item's body lacks (``temperature``...).
        :raises ConnectionFailed: and the other errors that would fail every
            item (a bad key, an unknown model, a wrong path): the batch stops,
            the items in flight finish and are saved first.
        """
        return _Batch(self, workers, output, model, timeout, stream_timeout, retry_errors, params).run(items)

    def close(self) -> None:
        """Close the HTTP session, unless it was the caller's."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return _finish(
            "Client(base_url=%r, model=%r%s)"
            % (_safe_url(self.base_url), self.model, ", api_key=***" if self._api_key else ""),
            _MESSAGE_LIMIT,
        )

    # -- Internals of the client --

    def _timeout(self, timeout):
        return self.timeout if timeout is None else _seconds("timeout", timeout)

    def _limit(self, stream_timeout):
        return self.stream_timeout if stream_timeout is None else _seconds("stream_timeout", stream_timeout)

    def _call(self, messages, model, images, params, stream, timeout, stream_timeout):
        think_tags = _think_tags(params.pop("think_tags", self.think_tags))
        model = model or self.model
        if not model:
            raise ConfigurationError(
                "no model given: pass model= to Client() or to the call, or set "
                "OPENAI_MODEL (client.models() lists what %s serves)" % _safe_url(self.base_url)
            )
        if "stream" in params:
            raise ConfigurationError(
                "stream= is not a payload option here: client.stream() streams, client.chat() does not"
            )
        _check_params(params)
        if images is not None:
            self._check_vision(model)  # before a big image is even read
            images = [
                image if isinstance(image, dict) else image_part(image, max_bytes=self.max_image_bytes)
                for image in _image_list(images)
            ]
        payload = build_chat_payload(messages, model=model, stream=stream, images=images, **params)
        del images
        urls = []
        mark = "\x00bor-splice-%s\x00" % os.urandom(8).hex()  # no text can be this mark
        payload["messages"], has_images = _lift_urls(payload["messages"], urls, mark)
        if has_images:
            self._check_vision(model)
        prompt_chars = _prompt_chars(payload["messages"])
        text = _dumps(payload)
        del payload  # now only `urls` holds the big image texts
        body = _splice(text, urls, mark)
        call = _Call(
            body,
            model,
            stream=stream,
            images=has_images,
            timeout=self._timeout(timeout),
            limit=self._limit(stream_timeout),
        )
        call.think_tags = think_tags
        call.tools = _tool_names(params.get("tools"), params.get("functions"))
        call.params = frozenset(params)
        call.prompt_chars = prompt_chars
        return call

    def _check_vision(self, model):
        """Refuse images for a model that model_info() found to take none."""
        known = self._infos.get(model)
        if known is not None and known.vision is False:
            raise VisionNotSupported(
                "model %r does not take images, as %s says (client.model_info()); nothing was sent: "
                "use a vision model" % (model, known.server or "the server"),
                model=model,
                base_url=_safe_url(self.base_url),
            )

    def _headers(self, call):
        headers = dict(self.headers)
        headers["Accept"] = "text/event-stream" if call.stream else "application/json"
        if self._api_key:
            headers["Authorization"] = "Bearer " + self._api_key
        return headers

    def _send(self, method, path, call):
        """Make a request, retrying what may be retried; return a 2xx response."""
        url = _join_url(self.base_url, path)
        headers = self._headers(call)
        attempt = 0
        while True:
            # A server that said 429 to one thread is spared by all of them.
            self._wait(call, self._paused_until - time.monotonic())
            call.attempts += 1
            try:
                return self._request(method, url, headers, call)
            except OpenAICompatError as error:
                if isinstance(error, RateLimited):  # the other threads wait too, retried or not
                    pause = _RETRY_BASE if error.retry_after is None else min(error.retry_after, _RETRY_AFTER_CAP)
                    with self._infos_lock:
                        self._paused_until = max(self._paused_until, time.monotonic() + pause)
                left = None if call.deadline is None else call.deadline - time.monotonic()
                wait = _retry_wait(error, attempt, self.max_retries, left, random.random())
                if wait is None:
                    raise
                log.debug("retrying in %.2fs after %s", wait, type(error).__name__)
                self._wait(call, wait)
                attempt += 1

    def _wait(self, call, seconds):
        """Sleep before a try, within the call's deadline; a cancelled call stops at once."""
        if call.deadline is not None:
            seconds = min(seconds, call.deadline - time.monotonic())
        if seconds > 0:
            if call.stop is None:
                time.sleep(seconds)
            else:
                call.stop.wait(seconds)
        if call.stop is not None and call.stop.is_set():
            raise _Cancelled()

    def _request(self, method, url, headers, call):
        """One request, following a few redirects; returns a 2xx response or raises.

        The call's watchdog stays armed over the answer's body too, until
        the body has been read or the response is closed.
        """
        connect, read = self.connect_timeout, call.timeout
        if call.deadline is not None:
            left = call.deadline - time.monotonic()
            if left <= 0:
                raise _overtime(call)
            connect, read = min(connect, left), min(read, left)
        watchdog = call.watchdog = _Watchdog(call.deadline, cancellable=call.stop is not None)
        if call.stop is not None and call.stop.is_set():  # cancelled before the watchdog could say
            raise _Cancelled()
        try:
            return self._answer(method, url, headers, call, connect, read)
        except BaseException:
            watchdog.disarm()
            raise

    def _answer(self, method, url, headers, call, connect, read):
        watchdog = call.watchdog
        seen = [url]
        resent = False
        while True:
            log.debug("%s %s", method, _safe_url(url))
            _inflight.reused = _inflight.location = None
            try:
                with watchdog.sending():
                    response = self.session.request(
                        method,
                        url,
                        data=call.body,
                        headers=headers,
                        timeout=(connect, read),
                        stream=True,
                        allow_redirects=False,
                        # A request's hooks replace the session's (requests' merge_hooks): a
                        # caller's session keeps its own after ours.
                        hooks={"response": [_close_redirect] + list(self.session.hooks.get("response") or ())},
                        verify=self.verify,
                        # A server on this machine is never reached through a proxy.
                        proxies=dict(_NO_PROXIES) if _is_loopback(url) else None,  # requests fills it in
                        # With a key, our Authorization header is what is sent: not
                        # ~/.netrc's, nor Basic from credentials in the URL.
                        auth=_as_given if self._api_key else None,
                    )
            except _REQUEST_ERRORS as exc:
                if not resent and not watchdog.fired and _stale(exc):
                    log.debug("the server had closed the kept-alive connection: sending again")
                    resent = True
                    continue
                location = _inflight.location
                if location is not None and isinstance(exc, (requests.exceptions.InvalidURL, ValueError)):
                    # requests prepares the next hop itself, and failed on the Location.
                    raise ConnectionFailed(
                        "%s %s redirected to %r, which is not a valid http(s) URL: the server's redirect is "
                        "wrong, not the base URL" % (method, _safe_url(url), _safe_url(location.strip()[:500])),
                        retryable=False,
                    ) from exc
                error = _network_error(exc, url, connect, read, self._proxy_for(url))
                late = call.deadline is not None and time.monotonic() >= call.deadline - 0.01
                if watchdog.fired or isinstance(error, Timeout) and late:
                    error = _overtime(call, error.detail)
                raise error from exc
            if watchdog.fired:  # it fired as the answer began: its socket is shut
                response.close()
                raise _overtime(call)
            if not response.is_redirect:
                break
            url, headers = _redirect(response, method, url, headers, seen)
        status = response.status_code
        if status < 200:
            # An interim answer (103 Early Hints) where the answer belongs: the
            # real one still waits on this connection, so it must not be reused.
            response.close()
            raise InvalidResponse(
                "%s %s answered with the interim status %s %s and this client does not wait "
                "past interim answers; ask the server or proxy not to send them"
                % (method, _safe_url(url), status, response.reason)
            )
        if status == 407:
            response.close()
            proxy = self._proxy_for(url)
            raise ConnectionFailed(
                "the proxy %s wants credentials (HTTP 407): put them in its URL "
                "(http://user:password@host:port), or add %s to NO_PROXY to connect directly"
                % (_proxy_name(proxy), _host_port(url)[0]),
                retryable=False,
            )
        if status >= 400:
            raise self._error_response(response, call)
        return response

    def _proxy_for(self, url):
        """The proxy a request to ``url`` goes through, or None (for messages)."""
        if _is_loopback(url):
            return None
        proxies = dict(self.session.proxies)
        if self.session.trust_env:
            for scheme, proxy in requests.utils.get_environ_proxies(url).items():
                proxies.setdefault(scheme, proxy)
        proxy = requests.utils.select_proxy(url, proxies)
        if proxy:
            _keep_secrets(self, _url_secrets(proxy))
        return proxy

    def _error_response(self, response, call):
        try:
            raw = _read_body(response, call, _ERROR_BODY_LIMIT, cut=True)
        except OpenAICompatError as exc:
            # The error page itself broke or trickled: the status is still worth reporting.
            log.debug("could not read the error body: %s", type(exc).__name__)
            raw = b""
        where = "%s %s" % (response.request.method, _safe_url(response.url))
        return self._error(
            response.status_code, _parse_error_body(raw), call, where, _retry_after(response.headers),
            response.headers,
        )

    def _error(self, status, body, call, where, retry_after=None, headers=None):
        """The exception for an error answer, an error body or an error event.

        The one place that decides the class; each class says its own message.
        """
        message, code, kind, param = _error_fields(body)
        message = _finish(message.strip(), _MESSAGE_LIMIT) or http.client.responses.get(status, "no message")
        cls = _error_class(status, message, code, kind, param, call)
        known = self._infos.get(call.model)
        server = _server_in(message[:_SCAN_LIMIT], headers) or (known.server if known else None)
        limit, requested = _context_numbers(message[:_SCAN_LIMIT], body) if cls is ContextLengthExceeded else (
            None, None)
        fields = {
            "status_code": status,
            "message": message,
            "code": code,
            "body": body,
            "where": where,
            "base_url": _safe_url(self.base_url),
            "model": call.model,
            "retry_after": retry_after,
            "key_sent": bool(self._api_key),
            "hint": _hint(cls, message[:_SCAN_LIMIT], call),
            "server": server,
            "limit": limit or (known.context_length if known else None),
            "requested": requested,
        }
        error = cls(**{name: value for name, value in fields.items() if hasattr(cls, name)})
        if cls is UnknownModel:
            self._fill_models(error, call)
            if call.model in (error.available or ()) and re.search(r"(?i)not loaded", message):
                # Served, not loaded: llama.cpp's router with --no-models-autoload.
                fields["hint"] = (
                    "The server lists %r but has not loaded it: load it first (llama.cpp's router: "
                    "POST /models/load, or start it without --no-models-autoload)." % call.model
                )
                error = BadRequest(**{name: value for name, value in fields.items() if hasattr(BadRequest, name)})
        return error

    def _models(self, call):
        return [model_id for model_id, _ in self._listing(call)[0]]

    def _listing(self, call):
        """([(id, entry)] of GET /models, its headers); an entry that is no dict becomes {}."""
        response = self._send("GET", "/models", call)
        body = _read_body(response, call, self.max_event_bytes)
        data = _decode_json(response, body)
        items = data.get("data", data.get("models")) if isinstance(data, dict) else data
        if items is None:  # Ollama with no models pulled says "data": null
            items = []
        if not isinstance(items, list):
            raise InvalidResponse(
                "GET %s/models returned no model list" % _safe_url(self.base_url), excerpt=_text(body)
            )
        listed = []
        for item in items:
            entry = item if isinstance(item, dict) else {}
            if entry:
                item = item.get("id") or item.get("name") or item.get("model")
            if isinstance(item, str):
                listed.append((item, entry))
        return listed, response.headers

    def _read_info(self, model, listing, call, answers=None):
        """The ModelInfo of ``model``: its /models entry, then the server's own paths.

        :param answers: what each path answered, shared by the models of one
            listing (``models --long``), so that each path is asked once.
        """
        listed, headers = listing
        answers = {} if answers is None else answers
        served = dict(listed)
        # Ollama serves "llama3.2" as "llama3.2:latest" and takes either name.
        model_id = model if model in served else model + ":latest" if model + ":latest" in served else None
        entry = served.get(model_id)
        if entry is None:
            ids = [model_id for model_id, _ in listed]
            raise UnknownModel(
                message="not in the list of GET /models",
                where="GET %s/models" % _safe_url(self.base_url),
                base_url=_safe_url(self.base_url),
                model=model,
                available=_scrub_value(ids),
                suggestion=_closest(model, ids),
            )
        info = ModelInfo(model_id, server=_server_of(headers, entry), sources=["/models"],
                         raw={"/models": _scrub_value(entry)})
        _from_models_item(info, entry)

        def read(path, reader, query=None, post=False):
            return self._read(info, path, call, reader, answers, query, post)

        if info.server == "llama.cpp":
            if isinstance(_dig(entry, "status", "value"), str):  # router mode: /props?model= would load it
                if info.loaded:
                    read("/props", _from_llamacpp_props, {"model": model_id, "autoload": "false"})
            else:
                read("/props", _from_llamacpp_props)
        elif info.server == "litellm":
            read("/v1/model/info", _from_litellm)
        elif info.server is None:
            if read("/api/show", _from_ollama_show, {"model": model_id}, post=True):
                info.server = "ollama"
                read("/api/ps", _from_ollama_ps)
            elif read("/api/v0/models", _from_lmstudio) or read("/api/v1/models", _from_lmstudio):
                info.server = "lmstudio"
            elif read("/v1/model/info", _from_litellm):
                info.server = "litellm"  # its /v1/models looks like OpenAI's, headers and all
        if info.loaded is False:
            info.context_length = None  # a model not loaded has no window yet
        return info

    def _read(self, info, path, call, reader, answers, query=None, post=False):
        """Read one of the server's own paths into ``info``; whether it said anything.

        A path that is missing, fails or answers an unexpected shape says
        nothing; only running out of the call's time ends the reading. What
        a path without a query answered, and a path that does not exist, is
        kept in ``answers``.
        """
        data = answers.get(path)
        if data is _MISSING:
            return False
        if data is None or query is not None:
            data = self._fetch(path, call, query, post)
            if data is _MISSING or query is None:
                answers[path] = data
            if data is None or data is _MISSING:
                return False
        try:
            said = reader(info, data)
        except (TypeError, AttributeError, LookupError, ValueError) as exc:  # a shape no reader foresaw
            log.debug("%s answered an odd shape: %s", path, exc)
            said = False
        if not said:
            return False
        info.sources.append(path)
        info.raw[path] = _scrub_value(data)
        return True

    def _fetch(self, path, call, query, post):
        """The decoded JSON of a root path; None when it failed, _MISSING when it does not exist."""
        url = _root_url(self.base_url, path)
        body = None
        if query is not None and post:
            body = _dumps(query).encode("utf-8")
        elif query is not None:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        probe = _Call(body, None, timeout=call.timeout)
        probe.limit, probe.deadline = call.limit, call.deadline
        try:
            response = self._request("POST" if post else "GET", url, self._headers(probe), probe)
            return _loads(_read_body(response, probe, self.max_event_bytes))
        except (OpenAICompatError, ValueError) as exc:
            if call.deadline is not None and time.monotonic() >= call.deadline:
                raise _overtime(call) from exc
            log.debug("%s says nothing: %s", path, type(exc).__name__)
            if isinstance(exc, (EndpointNotFound, InvalidResponse, ValueError)) or getattr(
                exc, "status_code", None) in (404, 405, 501):
                return _MISSING
            return None

    def _completion(self, response, body, call):
        """A ChatResult from a non-stream answer."""
        data = _decode_json(response, body)
        if _error_in(data):
            # LM Studio answers a wrong path with 200 {"error": "Unexpected endpoint..."}.
            where = "%s %s" % (response.request.method, _safe_url(response.url))
            raise self._error(response.status_code, data, call, where)
        result = _parse_completion(data, "%s answered %s" % (_safe_url(response.url), response.status_code),
                                   call.think_tags)
        result.warnings = _warnings(result, call, self._infos.get(call.model))
        return result

    def _fill_models(self, error, call):
        """Add the served models and the closest name to an UnknownModel."""
        listing = _Call(None, None, timeout=min(call.timeout, 10.0))
        listing.deadline = call.deadline  # within the time left to the call
        try:
            error.available = _scrub_value(self._models(listing))
        except OpenAICompatError as exc:
            log.debug("could not list the models: %s", type(exc).__name__)
            return
        error.suggestion = _closest(error.model, error.available)


class ChatStream:
    """An answer arriving as :class:`StreamDelta` objects.

    Iterate it; afterwards ``result`` holds the whole answer. Breaking out of
    the loop early and leaving a ``with`` block release the connection;
    ``close()`` may be called from any thread and ends the loop quietly.
    """

    def __init__(self, client, response, call, chunks=None, check=None):
        self.response = response
        self._check = check  # what makes .parsed of a schema= stream
        self.model = call.model
        self._acc = _Accumulator(call.model, call.think_tags)
        self._body = _Body(response, call, chunks)
        # The generator must not hold self: without a cycle, a stream that
        # is simply dropped closes its connection at once.
        self._deltas = _deltas(self._body, self._acc, response, client, call, client.max_event_bytes)
        # Dropped before its first delta, the generator never runs its finally:
        # the watchdog's timer would wait for stream_timeout.
        weakref.finalize(self, self._body.finish)

    def __iter__(self) -> Iterator[StreamDelta]:
        return self._deltas  # the generator itself: no call of ours per delta

    def __next__(self) -> StreamDelta:
        return next(self._deltas)

    @property
    def result(self) -> ChatResult:
        """The answer; reads the rest of the stream first if it is still open."""
        for _ in self:
            pass
        result = self._acc.result()
        if self._check is not None:
            self._check(result)
        return result

    def close(self) -> None:
        """Stop reading and release the connection; safe from any thread.

        A loop in another thread then ends without an error, and ``result``
        holds what had arrived.
        """
        self._body.cancel()
        if not self._deltas.gi_running:
            self.response.close()
        # Else another thread is inside the loop: the shut socket wakes its
        # read, and the loop ends quietly and closes the response itself.

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        text = "ChatStream(model=%r, text_so_far=%r)" % (self.model, _finish(self._acc.text(), 40))
        return _finish(text, _MESSAGE_LIMIT)


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
        parts = [image if isinstance(image, dict) else image_part(image) for image in _image_list(images)]
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

    :param source: a path (``str`` or ``os.PathLike``), ``bytes``, a binary
        file object, or an image object with a ``save(fp, format=...)`` method
        (a Pillow ``Image``). An ``http(s)://`` or ``data:`` URL is returned
        unchanged.
    :param mime: the MIME type; by default taken from the bytes' signature,
        then from the file name. An image object is saved as PNG, or as
        JPEG or WebP when ``mime`` asks for it.
    :param max_bytes: larger images are refused.
    :raises InvalidImage: the source cannot be read, is too big, or is not an image.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://", "data:")):
        return source
    data, name = _read_image(source, max_bytes, mime)
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
    source: Any,
    *,
    detail: str | None = None,
    mime: str | None = None,
    max_bytes: int = _DEFAULT_MAX_IMAGE_BYTES,
) -> dict:
    """Return an ``image_url`` content part for a message.

    :param source: anything :func:`image_data_url` takes.
    :param detail: ``"low"``, ``"high"`` or ``"auto"`` where the server knows it.
    :param mime: as for :func:`image_data_url`.
    """
    image_url = {"url": image_data_url(source, mime=mime, max_bytes=max_bytes)}
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


# -- Internals: configuration ------------------------------------------------


def _normalize_base_url(url):
    if not url or not url.strip():
        known = "; ".join("%s %s" % pair for pair in _LOCAL_SERVERS)
        raise ConfigurationError(
            "no base URL: pass base_url= or set OPENAI_BASE_URL to the URL before "
            "/chat/completions. Usual local servers: " + known
        )
    url = url.strip()
    if "#" in url:
        raise ConfigurationError(
            "the base URL %r has a fragment (#...), which is never sent: remove it" % _safe_url(url)
        )
    path, mark, query = url.partition("?")
    path = path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")].rstrip("/")
    url = path + mark + query
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        guess = "http://" + url.split("://", 1)[-1]
        raise ConfigurationError(
            "the base URL %r must start with http:// or https:// (did you mean %r?)"
            % (_safe_url(url), _safe_url(guess))
        )
    try:
        parts = urllib3.util.parse_url(url)
        port = parts.port
    except (ValueError, urllib3.exceptions.HTTPError):
        raise ConfigurationError(
            "the base URL %r is not a valid URL: check its host and its port (1-65535)" % _safe_url(url)
        ) from None
    host = parts.host or ""
    if not host or not re.match(r"^(\[[0-9A-Fa-f:.]+\]|[^\s\[\]/\\@]+)$", host):
        raise ConfigurationError("the base URL %r has no valid host name" % _safe_url(url))
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError("the base URL %r has a port out of range (1-65535)" % _safe_url(url))
    return url


def _join_url(base_url, path):
    """The URL of an endpoint; a query in the base URL (Azure's ?api-version=) goes last."""
    base, mark, query = base_url.partition("?")
    return base + path + mark + query


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


def _check_headers(headers):
    """The caller's headers, checked now; the values of secret ones become secrets."""
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name):
            raise ConfigurationError("%r is not a valid header name" % (name,))
        if not isinstance(value, str):
            raise ConfigurationError("the header %s must have a str value, not %s" % (name, type(value).__name__))
        if any(ch in "\r\n\x00" or ord(ch) > 255 for ch in value):
            # Said without the value: it may be a key.
            raise ConfigurationError(
                "the header %s has a value with a line break or a character outside Latin-1" % name
            )
        checked[name] = value
    return checked


def _header_secrets(headers):
    """The values of the headers that carry secrets (and the token after "Bearer ")."""
    values = [value for name, value in headers.items() if _is_secret_header(name)]
    return values + [value.partition(" ")[2] for value in values]


def _url_secrets(url):
    """The secrets in a URL: its credentials, and query values named like keys (?key=)."""
    found = []
    userinfo = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*://)?([^/?#]*)@", url)
    if userinfo:
        for secret in (userinfo.group(1), userinfo.group(1).partition(":")[2]):
            found += [secret, urllib.parse.unquote(secret)]
        # As requests sends them: Basic auth, to the server or the proxy.
        user, _, password = userinfo.group(1).partition(":")
        plain = "%s:%s" % (urllib.parse.unquote(user), urllib.parse.unquote(password))
        found.append(base64.b64encode(plain.encode("latin-1", "replace")).decode("ascii"))
    query = url.partition("?")[2].partition("#")[0]
    found += [value for name, value in urllib.parse.parse_qsl(query) if _is_secret_header(name)]
    return found


def _is_secret_header(name):
    name = name.lower()
    return name in ("authorization", "cookie") or any(word in name for word in ("key", "token", "secret", "auth"))


def _seconds(name, value, optional=False):
    """A time option, checked: a positive number of seconds (or None where allowed)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigurationError(
            "%s= must be a positive number of seconds%s, not %r" % (name, " or None" if optional else "", value)
        )
    return value


def _count(name, value, least):
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError("%s= must be a whole number of at least %d, not %r" % (name, least, value))
    return value


def _safe_url(url):
    """The URL without the credentials in it."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: "user:password@host/v1"
        scheme, rest = "", url
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        return scheme + sep + "***@" + rest[len(authority.rsplit("@", 1)[0]) + 1 :]
    return url


def _host_port(url):
    parts = urllib3.util.parse_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.host or "", port


@functools.lru_cache(maxsize=64)  # asked for every request, of a few URLs
def _is_loopback(url):
    """Whether a URL names this machine: ``localhost`` (and ``*.localhost``, RFC 6761)
    or a loopback address in any form the resolver takes (``127.1``, ``::ffff:127.0.0.1``)."""
    host = _host_port(url)[0].strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        try:  # the short IPv4 forms getaddrinfo takes: 127.1, 0x7f.1
            return host[:1].isdigit() and socket.inet_aton(host)[0] == 127
        except OSError:
            return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or mapped is not None and mapped.is_loopback


# -- Internals: the request body ---------------------------------------------


class _Call:
    """What a request needs to know about the call that made it."""

    __slots__ = (
        "body", "model", "stream", "images", "timeout", "limit", "deadline", "think_tags", "embeddings",
        "watchdog", "tools", "params", "prompt_chars", "attempts", "stop",
    )

    def __init__(self, body, model, *, stream=False, images=False, timeout=_DEFAULT_TIMEOUT, limit=None):
        self.body = body
        self.model = model
        self.stream = stream
        self.images = images
        self.timeout = timeout  # seconds between bytes
        self.limit = limit  # seconds for the whole call, or None
        self.deadline = time.monotonic() + limit if limit is not None else None
        self.think_tags = None  # how <think> in the content is split off
        self.embeddings = False  # a POST /embeddings
        self.watchdog = None  # of the request under way (see Client._request)
        self.tools = ()  # the names of the tools sent
        self.params = frozenset()  # the names of the payload options the caller gave
        self.prompt_chars = 0  # characters of text in the messages
        self.attempts = 0  # requests made, retries included
        self.stop = None  # a threading.Event that cancels the call (batch())


def _schema_format(schema, params, strict=True):
    """The ``response_format`` that asks for answers valid under a JSON schema."""
    if not isinstance(schema, dict):
        raise ConfigurationError("schema= must be a JSON schema dict, not %s" % type(schema).__name__)
    if "response_format" in params:
        raise ConfigurationError("pass schema= or response_format=, not both")
    # OpenAI allows names of letters, digits, _ and - up to 64 characters.
    title = schema.get("title")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", title)[:64] if isinstance(title, str) and title.strip() else "answer"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def _tool_names(tools, functions):
    """The names of the tools (or legacy functions) a payload offers (any other value: the server says)."""
    names = []
    for tool in [*(tools if isinstance(tools, list) else ()), *(functions if isinstance(functions, list) else ())]:
        if isinstance(tool, dict):
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            if isinstance(function.get("name"), str):
                names.append(function["name"])
    return tuple(names)


def _prompt_chars(messages):
    """Characters of text in the messages (image parts not counted)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part.get("text") or "") for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return total


def _lift_urls(messages, urls, mark):
    """Take long image URLs out of the messages, for :func:`_splice`.

    ``json.dumps`` copies a string twice (escaped, then joined), so a 20 MB
    image would sit in memory as base64 text four times at once. A URL that
    needs no JSON escaping is replaced by ``mark`` and collected in ``urls``.
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
                        part = dict(part, image_url=dict(image, url=mark))
                parts.append(part)
            message = dict(message, content=parts)
        lifted.append(message)
    return lifted, seen


def _plain(text):
    """Whether JSON writes ``text`` as it is (printable ASCII, no quote or backslash)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _splice(text, urls, mark):
    """UTF-8 JSON bytes of ``text`` with the lifted URLs put back in order.

    Each URL is let go as soon as it is bytes, so a big image is held at most
    twice at any moment.
    """
    if not urls:
        return text.encode("utf-8")
    pieces = text.split(_dumps(mark))
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


def _check_params(params):
    """Refuse payload values JSON cannot carry, before anything is sent."""
    for name, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ConfigurationError(
                "the parameter %s= holds NaN or an infinity, which JSON cannot carry" % name
            ) from None


def _think_tags(value):
    if value not in (None, True, False):
        raise ConfigurationError("think_tags must be None, True or False, not %r" % (value,))
    return value


# -- Internals: the wire -----------------------------------------------------
#
# A request goes through requests and urllib3 by their documented doors: the
# adapter's pool classes (``PoolManager.pool_classes_by_scheme``, also on the
# managers ``proxy_manager_for`` makes) whose ``ConnectionCls`` tells the
# call's watchdog which connection carries it; a response hook that closes a
# redirect before requests reads its body; ``HTTPResponse.connection`` and
# ``release_conn()``. A body is read with http.client's own ``read1``, which
# gives the bytes at hand (one chunk of a chunked body at a time), and
# decoded here a bounded piece at a time.
#
# What is still touched below the documented surface, checked with urllib3
# 1.26.20, 2.0.7 and 2.7.0, requests 2.26.0 and 2.34.2, http.client of
# Python 3.8 to 3.13, and sseclient-py 1.7.2 and 1.8.0:
# - urllib3 ``HTTPResponse._fp``: the http.client response under it, read
#   through its public ``read1``; its ``length``, ``chunked`` and
#   ``will_close`` say whether the body ended whole and the connection may be
#   reused (urllib3 keeps no such state itself in 1.26);
# - http.client ``HTTPConnection.sock``: shut by the watchdog and by
#   ``ChatStream.close()`` from another thread;
# - sseclient-py ``SSEClient._read``: see _SSEClient (setup.cfg pins < 2;
#   a test fails if the hook is not taken).

# What sending a request may raise below us: requests' own errors, and what
# slips past them (an invalid Location, a proxy URL urllib3 cannot parse).
_REQUEST_ERRORS = (
    requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError
)
# What reading a body may raise: a reset, a bad chunk size, a timeout.
_READ_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError, ArithmeticError)

_inflight = threading.local()  # the watchdog of the request this thread is sending
# A connection the server had closed fails at once: a failure this soon after
# the request was sent is that, not a server that worked on it and died.
_STALE_WINDOW = 0.05


class _Watchdog:
    """Shuts the socket of a call that runs past its deadline (``stream_timeout``).

    Each read waits no longer than the time left, but a server that trickles
    its status line, its headers, a chunk size or a trailer makes many reads
    inside one call of http.client's; this bounds them all. A connection of
    :class:`_Adapter` tells the watchdog of the request it carries (a caller's
    own session goes without one), and the watchdog is disarmed before the
    connection can carry another request.
    """

    def __init__(self, deadline, cancellable=False):
        self.conn = None  # the connection carrying the call's request
        self.fired = False
        self.lock = threading.Lock()
        self.timer = None
        self.armed = cancellable or deadline is not None  # fire() may be called
        if deadline is not None:
            self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
            self.timer.daemon = True
            self.timer.start()

    @contextlib.contextmanager
    def sending(self):
        """While a request is sent from this thread, its connection finds the watchdog."""
        if not self.armed:
            yield
            return
        _inflight.watchdog = self
        try:
            yield
        finally:
            _inflight.watchdog = None

    def watch(self, conn):
        with self.lock:
            self.conn = conn
            if self.fired:  # it fired before the request found its connection
                self.shut(conn)

    def disarm(self):
        if self.timer is not None:
            self.timer.cancel()
        if self.armed:
            with self.lock:
                self.conn = None

    def fire(self):
        with self.lock:
            conn = self.conn
            if conn is not None and getattr(conn, "watchdog", None) is not self:
                return  # the connection carries another request by now
            self.fired = True  # a connection made after this is shut at once (see _Watched)
            self.shut(conn)

    def shut(self, conn):
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _Watched:
    """A connection that tells the watchdog of the request it carries, and
    counts the requests it carried since it connected."""

    watchdog = None
    carried = 0

    def connect(self):
        self._carry()
        super().connect()
        watchdog = self.watchdog
        if watchdog is not None and watchdog.fired:  # it fired while this connected
            with watchdog.lock:
                watchdog.shut(self)

    def close(self):
        self.carried = 0  # a new socket next time
        return super().close()

    def putrequest(self, *args, **kwargs):
        self.carried += 1
        _inflight.reused = self.carried > 1  # read by _stale(): urllib3 closes a failed connection first
        _inflight.asked = None
        self._carry()
        return super().putrequest(*args, **kwargs)

    def getresponse(self, *args, **kwargs):
        _inflight.asked = time.monotonic()  # the request is sent: the answer is awaited from now
        return super().getresponse(*args, **kwargs)

    def _carry(self):
        self.watchdog = getattr(_inflight, "watchdog", None)  # None: no deadline, or another thread's pool
        if self.watchdog is not None:
            self.watchdog.watch(self)


def _stale(exc):
    """Whether a request failed on a kept-alive connection that the server had
    closed meanwhile, before any byte of an answer: it is sent again once.

    A server may close an idle connection just as the next request goes out
    on it (uvicorn, llama.cpp's router a few ms after an answer that said
    keep-alive); the request never reached it, so sending it again on a new
    connection is what browsers and curl do.
    """
    if not getattr(_inflight, "reused", False):
        return False
    asked = getattr(_inflight, "asked", None)
    if asked is not None and time.monotonic() - asked > _STALE_WINDOW:
        return False  # the server had the request a while: it may have worked on it
    return _cause(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)) is not None


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose connections a watchdog can stop, proxied or not."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have connections of their own
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def _close_redirect(response, **kwargs):
    """requests' response hook: a redirect's body is never read.

    Even with ``allow_redirects=False``, ``Session.send`` reads and decodes
    the whole body of a 3xx before it returns (to prepare ``response.next``):
    an endless or compressed body would grow without bound. Closed here, the
    body is left unread; the status and ``Location`` are all :func:`_redirect`
    needs.
    """
    if response.is_redirect:
        _inflight.location = response.headers["Location"]  # for a Location that requests cannot follow
        response.close()


def _as_given(request):
    """requests' auth hook that sends the request with the headers it has."""
    return request


def _origin(url):
    """(scheme, host, port) of an http(s) URL, or None for any other URL.

    :raises ValueError: the URL cannot be parsed.
    """
    parts = urllib3.util.parse_url(url)
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https") or not parts.host or " " in parts.host:
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    return (scheme, parts.host.lower(), port) if 0 < port < 65536 else None


def _redirect(response, method, url, headers, seen):
    """(url, headers) of the next hop of a redirect, or the error why it is not taken.

    Like a browser, but for an API: a few hops at most, a loop said as one,
    no POST turned into a body-less GET (301/302/303), and the headers that
    carry secrets are not taken to another origin (as requests does for
    ``Authorization``).
    """
    status, location = response.status_code, response.headers.get("Location", "")
    response.close()
    where = "%s %s" % (method, _safe_url(url))
    try:
        target = urllib.parse.urljoin(url, location.strip())
        origin = _origin(target)
    except ValueError:
        origin = None
    if origin is None:
        raise ConnectionFailed(
            "%s redirected (HTTP %s) to %r, which is not a valid http(s) URL: the server's redirect is "
            "wrong, not the base URL" % (where, status, _safe_url(location.strip()[:500])),
            retryable=False,
        )
    if target in seen or len(seen) > _MAX_REDIRECTS:
        hops = " -> ".join(_safe_url(hop) for hop in seen + [target])
        kind = "a redirect loop" if target in seen else "more than %d redirects" % _MAX_REDIRECTS
        raise ConnectionFailed("%s: %s (%s); check the base URL or the server" % (where, kind, hops), retryable=False)
    if method == "POST" and status in (301, 302, 303):
        path = urllib.parse.urlsplit(url).path
        endpoint = next((e for e in ("/chat/completions", "/embeddings") if path.endswith(e)), "")
        moved = urllib.parse.urlsplit(target)
        path = moved.path[: len(moved.path) - len(endpoint)] if moved.path.endswith(endpoint) else moved.path
        base = moved._replace(path=path)
        raise ConfigurationError(
            "%s moved to %s (HTTP %s), where a POST would become a GET without its body: "
            "use the base URL %r" % (where, _safe_url(target), status, _safe_url(base.geturl()))
        )
    if origin != _origin(url):
        headers = {name: value for name, value in headers.items() if not _is_secret_header(name)}
    seen.append(target)
    return target, headers


def _proxy_name(proxy):
    """host:port of a proxy URL, without its credentials."""
    if not proxy:
        return "(none set; a proxy in between)"
    try:
        return "%s:%s" % _host_port(proxy if "://" in proxy else "http://" + proxy)
    except ValueError:  # a URL urllib3 cannot parse: said as it is, credentials cut
        return _safe_url(proxy)


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


def _network_error(exc, url, connect_timeout, read_timeout, proxy=None):
    """Map a requests exception to ours, with a message that says what to do."""
    host, port = _host_port(url)
    where = "%s:%s" % (host, port)
    if isinstance(exc, requests.ConnectTimeout):
        return Timeout(
            "could not connect to %s within %ss: the host is unreachable or the port "
            "is filtered; check the base URL (or raise connect_timeout=)" % (where, connect_timeout),
            connecting=True,
        )
    if isinstance(exc, requests.Timeout):
        return Timeout(
            "the server at %s sent nothing for %ss; it may still be loading the model "
            "(raise timeout= to wait longer)" % (where, read_timeout)
        )
    if proxy and isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return ConfigurationError(
            "the proxy %s cannot be used (%s): fix HTTP_PROXY/HTTPS_PROXY, or add %s to NO_PROXY"
            % (_proxy_name(proxy), _reason(exc), host)
        )
    if proxy and (
        isinstance(exc, requests.exceptions.ProxyError)
        or _cause(exc, (ConnectionRefusedError, http.client.RemoteDisconnected, ConnectionResetError))
    ):
        return ConnectionFailed(
            "could not reach %s through the proxy %s (%s): check the proxy, or add %s to NO_PROXY "
            "to connect directly" % (where, _proxy_name(proxy), _reason(exc), host)
        )
    if _cause(exc, ConnectionRefusedError):
        text = "connection refused by %s: the local server isn't running or the base URL/port is wrong (%s)" % (
            where, _safe_url(url))
        if _is_loopback(url) and _in_container():
            text += (
                "; inside a container %s is the container itself: for a server on the host, try "
                "http://host.docker.internal:%s" % (host, port)
            )
        return ConnectionRefused(text, retryable=not _is_loopback(url))  # a local server is simply not running
    if _cause(exc, socket.gaierror):
        return ConnectionFailed("could not resolve the host %r: check the base URL" % host)
    if _cause(exc, ssl.SSLCertVerificationError):
        return ConnectionFailed(
            "the TLS certificate of %s is not trusted (%s): pass verify= the path of a CA bundle "
            "that signs it (or set REQUESTS_CA_BUNDLE)" % (where, _reason(exc)),
            retryable=False,
        )
    if isinstance(exc, requests.exceptions.SSLError):
        text = _reason(exc)
        if re.search(r"(?i)wrong version number|record layer failure|http request|packet length too long", text):
            text += "; the server speaks plain http://, not https://"
        return ConnectionFailed("TLS with %s failed: %s" % (where, text))
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return ConfigurationError("the URL %r is not valid: %s" % (_safe_url(url), _reason(exc)))
    if _cause(exc, http.client.RemoteDisconnected):
        return ConnectionFailed("%s closed the connection without answering" % where)
    return ConnectionFailed("the connection to %s failed: %s" % (where, _reason(exc)))


def _in_container():
    """Whether this process runs in a container (Docker, Podman, Kubernetes)."""
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        return True
    try:
        with open("/proc/1/cgroup", "rb") as f:
            return bool(re.search(rb"docker|kubepods|containerd|libpod|lxc", f.read(1 << 16)))
    except OSError:
        return False


def _reason(exc):
    """The innermost, most specific text of a network error."""
    inner = getattr(exc, "reason", None) or (exc.args[0] if exc.args else None)
    while isinstance(getattr(inner, "reason", None), BaseException):
        inner = inner.reason
    return str(inner if isinstance(inner, BaseException) else exc)


def _retry_wait(error, attempt, max_retries, time_left, jitter):
    """Seconds to wait before trying a failed request again, or None to give up.

    Retried: a failed connection (not a refused loopback port: that server is
    simply not running), a connect timeout, and a 408/409/429/5xx answer that
    is no more specific error. Never a read timeout (the server may still be
    working), a configuration error, or a wait past the call's deadline.
    Nothing is retried once stream data reached the caller: that happens
    outside :meth:`Client._send`.
    """
    if attempt >= max_retries:
        return None
    if isinstance(error, ConnectionFailed):
        retry = error.retryable
    elif isinstance(error, Timeout):
        retry = error.connecting
    else:
        retry = type(error) in (APIError, RateLimited, ServerError) and error.status_code in _RETRY_STATUSES
    if not retry:
        return None
    wait = getattr(error, "retry_after", None)
    if wait is None:
        wait = min(_RETRY_MAX_WAIT, _RETRY_BASE * 2**attempt) * (0.5 + jitter / 2)
    elif wait > _RETRY_AFTER_CAP:
        return None  # the caller decides whether to wait that long
    if time_left is not None and wait >= time_left:
        return None  # no time left for another try
    return wait


def _retry_after(headers):
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After``, or None."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return _finite(float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return _finite(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return _finite(when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _finite(seconds):
    if seconds != seconds or seconds == float("inf"):
        raise ValueError("not a finite number")
    return max(0.0, seconds)


def _overtime(call, detail=None):
    """The Timeout of a call that ran past its ``stream_timeout``."""
    text = "the call took longer than stream_timeout=%ss" % call.limit
    return Timeout(text + " (%s)" % detail if detail else text)


class _Body:
    """The bytes of one answer as they arrive: decoded, within the call's time.

    Every framing gives the bytes at hand as soon as there are any, through
    ``read1`` of http.client's response under urllib3 (a chunked body one
    chunk at a time). The client decodes gzip and deflate itself, a bounded
    piece at a time (urllib3's decoder inflates a whole chunk at once, and
    urllib3 1.26 has no ``read1`` at all). Once the body has been read to its
    end, the call's watchdog is disarmed and the connection goes back to the
    pool.
    """

    def __init__(self, response, call, chunks=None):
        self.response = response
        self.call = call
        self.chunks = chunks  # the body's bytes, when they were read already
        self.head = b""  # the first bytes, for a message about a body that is not SSE
        self.tail = False  # the body ended inside an unterminated event
        self.cancelled = False  # ChatStream.close(), maybe from another thread
        self.released = False  # the connection went back to the pool
        self.lock = threading.Lock()  # between those two
        self.watchdog = call.watchdog
        raw = getattr(response, "raw", None)
        self.fp = getattr(raw, "_fp", None)
        self.sock = getattr(getattr(raw, "connection", None), "sock", None)
        if self.fp is not None:
            self.read1 = self.fp.read1
        elif raw is not None:  # a session whose adapter is not urllib3's
            self.read1 = getattr(raw, "read1", None) or raw.read
        self.timeout = None  # the socket's own timeout, while we have shortened it
        self.deadline = None  # of the read under way

    def __iter__(self):
        if self.chunks is not None:
            for data in self.chunks:
                self.head = self.head or data[:200]
                yield data
            return
        decoder = _Decoder.of(self.response.headers.get("Content-Encoding", ""))
        data = self.read()
        while data:
            if decoder is None:
                self.head = self.head or data[:200]
                yield data
            else:
                for piece in decoder.feed(data):
                    self.head = self.head or piece[:200]
                    yield piece
            data = self.read()
        if decoder is not None:
            yield decoder.flush()

    def read(self, deadline=None):
        """One read: bytes, or ``b""`` at the end of a complete body.

        :param deadline: when to give up, if sooner than the call's deadline.
        """
        if deadline is None:
            deadline = self.call.deadline
        self.deadline = deadline
        self.on_time()
        try:
            data = self.read1(_READ_SIZE)
        except _READ_ERRORS as exc:
            if self.cancelled:
                return b""
            if self.overtime(deadline):
                raise _overtime(self.call) from exc
            if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
                raise Timeout(
                    "the server sent nothing more for %ss in the middle of the answer "
                    "(raise timeout= to wait longer)" % self.call.timeout
                ) from exc
            raise ConnectionFailed("the connection dropped in the middle of the answer: %s" % _reason(exc)) from exc
        if not data and not self.cancelled:
            if self.watchdog is not None and self.watchdog.fired:  # it shut the socket: no end of the body
                raise _overtime(self.call)
            self.ended()
        return data

    def overtime(self, deadline):
        fired = self.watchdog is not None and self.watchdog.fired
        return fired or deadline is not None and time.monotonic() >= deadline - 0.01

    def on_time(self):
        """Before each wait for the socket: raise Timeout past the deadline, else wait no longer than it."""
        if self.deadline is not None:
            self.wait_at_most(self.deadline - time.monotonic())

    def wait_at_most(self, seconds):
        """Shorten the socket's timeout to the time left to the call."""
        if seconds <= 0:
            raise _overtime(self.call)
        if self.sock is not None and seconds < (self.timeout or self.call.timeout):
            if self.timeout is None:
                self.timeout = self.sock.gettimeout()
            self.sock.settimeout(seconds)

    def ended(self):
        """At the end of the body: check it is whole; reuse the connection if it may be."""
        left = getattr(self.fp, "length", None)
        if left:
            raise ConnectionFailed("the connection closed %d bytes before the end the server announced" % left)
        self.finish()
        whole = left == 0 or getattr(self.fp, "chunked", False)
        if whole and not getattr(self.fp, "will_close", True) and self.sock is not None:
            with self.lock:
                if self.cancelled:
                    return
                if self.timeout is not None:
                    self.sock.settimeout(self.timeout)
                # http.client must see its response closed (the socket stays
                # open), or the next request on the connection fails.
                self.fp.close()
                self.response.raw.release_conn()
                self.released = True
                self.sock = None  # another request's now

    def finish(self):
        """The body is done with: its watchdog has nothing left to bound."""
        if self.watchdog is not None:
            self.watchdog.disarm()

    def cancel(self):
        """Stop reading: a read waiting in another thread returns at once."""
        self.finish()
        with self.lock:
            self.cancelled = True
            if not self.released and self.sock is not None:
                try:
                    # The plain socket's shutdown, also under TLS: the TLS
                    # object stays whole for the thread reading through it.
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                except OSError:
                    pass  # closed already

    def drain(self):
        """After ``[DONE]``: read the end of the body, so that the connection is reused.

        A server may keep the body open after ``[DONE]``, so this waits
        :data:`_DRAIN_WAIT` at most and reads a few KiB; else the connection is closed.
        """
        if self.chunks is not None or self.sock is None or getattr(self.fp, "will_close", True):
            return
        deadline = time.monotonic() + _DRAIN_WAIT
        if self.call.deadline is not None:
            deadline = min(deadline, self.call.deadline)
        try:
            for _ in range(16):
                if not self.read(deadline):
                    return
        except OpenAICompatError as exc:
            log.debug("the body did not end after [DONE]: %s", type(exc).__name__)


class _Decoder:
    """gzip or deflate, decoded a bounded piece at a time."""

    @staticmethod
    def of(encoding):
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip", "deflate"):
            return _Decoder(encoding)
        raise InvalidResponse(
            "the answer is encoded as %r, which the client did not ask for (Accept-Encoding: %s)"
            % (encoding[:40], _ACCEPT_ENCODING)
        )

    def __init__(self, encoding):
        self.encoding = encoding
        self.zlib = None
        self.lead = b""  # deflate's first byte, until the second says which kind it is

    def feed(self, data):
        if self.encoding == "deflate" and self.zlib is None and len(self.lead + data) < 2:
            self.lead += data
            return
        data, self.lead = self.lead + data, b""
        try:
            while data:
                if self.zlib is None:
                    self.zlib = zlib.decompressobj(self.wbits(data))
                out = self.zlib.decompress(data, _READ_SIZE)  # no more at once
                data = self.zlib.unconsumed_tail
                if self.zlib.eof:
                    data = self.zlib.unused_data
                    if self.encoding != "deflate" and data[:2] == b"\x1f\x8b":
                        self.zlib = None  # another gzip member follows
                    else:
                        data = b""  # what follows the stream is not the answer (as urllib3 does)
                if out:
                    yield out
        except zlib.error as exc:
            raise InvalidResponse("the answer's %s encoding is broken (%s)" % (self.encoding, exc)) from exc

    def flush(self):
        return self.zlib.flush() if self.zlib is not None else b""

    def wbits(self, data):
        if self.encoding != "deflate":
            return 16 + zlib.MAX_WBITS
        # "deflate" is meant as zlib-wrapped (RFC 9110), but some servers send
        # raw deflate: a zlib header is a multiple of 31 with method 8.
        if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
            return zlib.MAX_WBITS
        return -zlib.MAX_WBITS


def _read_body(response, call, limit, cut=False):
    """The whole body as bytes, within the call's time limits.

    :param limit: the most bytes kept; more raise InvalidResponse, or with
        ``cut`` are left unread.
    """
    pieces, size = [], 0
    body = _Body(response, call)
    try:
        with response:
            for piece in body:
                size += len(piece)
                if size > limit:
                    if cut:
                        pieces.append(piece[: len(piece) - (size - limit)])
                        break
                    raise InvalidResponse(
                        "the answer is larger than max_event_bytes=%d; raise it if such answers are real" % limit
                    )
                pieces.append(piece)
    finally:
        body.finish()
    return b"".join(pieces)


def _is_event_stream(response):
    return "text/event-stream" in response.headers.get("Content-Type", "").lower()


def _decode_json(response, body):
    try:
        return _loads(body)
    except ValueError as exc:
        kind = response.headers.get("Content-Type") or "no content type"
        raise InvalidResponse(
            "%s %s answered %s with %s that is not JSON%s"
            % (
                response.request.method,
                _safe_url(response.url),
                response.status_code,
                kind,
                " (an HTML page: a proxy or a web server, not the API?)" if _looks_html(body) else "",
            ),
            excerpt=_page_text(_text(body)),
        ) from exc


def _looks_html(body):
    return body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html", b"<head", b"<body"))


def _page_text(text):
    """Text of a body for a message: an HTML page's title, else the body.

    Found with ``str.find``, not a pattern: a hostile page costs linear time.
    """
    head = text[:_SCAN_LIMIT * 16]
    lower = head.lower()
    if _looks_html(lower[:64].encode("utf-8", "replace")):
        for tag in ("title", "h1"):
            start = lower.find("<" + tag)
            opened = lower.find(">", start) if start >= 0 else -1
            end = lower.find("</" + tag + ">", opened) if opened >= 0 else -1
            if end >= 0:
                return " ".join(head[opened + 1 : end].split())
    return text.strip()


# -- Internals: what servers say ---------------------------------------------
#
# Every server publishes what it knows of its models in a place and shape of
# its own. Each reader below takes one decoded answer and fills in what it
# says, keyed on the shape of the answer, never on a version or a name;
# whatever is missing, of an odd type or out of range is left as it was
# (None: not said). The sources were read at these commits:
# - Ollama ollama/ollama@fb30760996871fa9460115c753afd2c60d4ab0f7:
#   server/routes.go (ShowHandler, PsHandler), api/types.go (ShowResponse,
#   ProcessModelResponse), types/model/capability.go, openai/openai.go;
# - llama.cpp b9553 (cbbe868c0): tools/server/server-context.cpp (/props,
#   /v1/models, exceed_context_size_error), server-models.cpp (router mode:
#   status.value, /props?model= loads a model), common/jinja/caps.cpp;
# - llama-cpp-python abetlen/llama-cpp-python@3691546f: llama_cpp/server/
#   app.py (/v1/models: owned_by "me"), errors.py (context_length_exceeded);
# - vLLM vllm/entrypoints/openai/engine/protocol.py (ModelCard.max_model_len,
#   owned_by "vllm") and serving.py (_validate_input wordings);
# - LiteLLM 1.110.2 proxy_server.py (/model/info), exceptions.py
#   (ContextWindowExceededError), x-litellm-* headers;
# - LM Studio's REST API docs (/api/v0/models, /api/v1/models), OpenRouter's
#   models API docs (context_length, architecture, supported_parameters).

_MAX_TOKENS_SAID = 1 << 31  # a larger window is a broken answer, not a model
_MISSING = object()  # what a server's own path that does not exist answers


def _tokens(value):
    """A token count a server said: a positive int of a believable size, else None."""
    if value.__class__ is int and 0 < value < _MAX_TOKENS_SAID:
        return value
    return None


def _flag(value):
    return value if value.__class__ is bool else None


def _dig(data, *keys):
    """``data[k1][k2]...`` where each step is a dict, else None."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _listed(names, *wanted):
    """Whether a capability list names any of ``wanted``; None when it is no list."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return any(name in names for name in wanted)


def _root_url(base_url, path):
    """The URL of a server's own path (``/props``, ``/api/show``) from a base URL ending in /v1."""
    base, mark, query = base_url.partition("?")
    if base.endswith("/v1"):
        base = base[:-3]
    return base + path + mark + query


def _server_of(headers, item):
    """The kind of server, from the headers and the model's entry in /v1/models, or None."""
    if headers.get("Server", "").startswith("llama.cpp") or _dig(item, "owned_by") == "llamacpp":
        return "llama.cpp"
    if any(name.lower().startswith("x-litellm-") for name in headers):
        return "litellm"
    owner = _dig(item, "owned_by")
    if owner == "vllm" or "max_model_len" in item:
        return "vllm"
    if owner == "me" and "permissions" in item:
        return "llama-cpp-python"
    if isinstance(item.get("architecture"), dict) and "supported_parameters" in item:
        return "openrouter"
    return None


def _from_models_item(info, item):
    """What the model's own entry in /v1/models says (llama.cpp, vLLM, OpenRouter)."""
    if info.server == "llama.cpp":
        info.max_context_length = _tokens(_dig(item, "meta", "n_ctx_train"))
        info.context_length = _tokens(_dig(item, "meta", "n_ctx"))
        status = _dig(item, "status", "value")  # router mode
        if isinstance(status, str):
            info.loaded = status == "loaded"
        else:
            info.loaded = True  # one model, served since the server started
        info.vision = _listed(_dig(item, "architecture", "input_modalities"), "image")
    elif info.server == "vllm":
        info.context_length = _tokens(item.get("max_model_len"))
        info.loaded = True
    elif info.server == "llama-cpp-python":
        info.loaded = True
    elif info.server == "openrouter":
        info.context_length = info.max_context_length = _tokens(item.get("context_length"))
        info.vision = _listed(_dig(item, "architecture", "input_modalities"), "image")
        info.embeddings = _listed(_dig(item, "architecture", "output_modalities"), "embeddings")
        parameters = item.get("supported_parameters")
        info.tools = _listed(parameters, "tools")
        info.reasoning = _listed(parameters, "reasoning", "include_reasoning")


def _from_llamacpp_props(info, props):
    if not isinstance(props, dict) or "default_generation_settings" not in props:
        return False
    info.context_length = _tokens(_dig(props, "default_generation_settings", "n_ctx")) or info.context_length
    vision = _flag(_dig(props, "modalities", "vision"))
    info.vision = info.vision if vision is None else vision
    info.tools = _flag(_dig(props, "chat_template_caps", "supports_tools"))
    return True


def _from_ollama_show(info, show):
    if not isinstance(show, dict) or not isinstance(show.get("model_info"), dict):
        return False
    details = show["model_info"]
    arch = details.get("general.architecture")
    if isinstance(arch, str):
        info.max_context_length = _tokens(details.get(arch + ".context_length"))
    capabilities = show.get("capabilities")
    if capabilities is not None:
        info.vision = _listed(capabilities, "vision")
        info.tools = _listed(capabilities, "tools")
        info.reasoning = _listed(capabilities, "thinking")
        info.embeddings = _listed(capabilities, "embedding")
    return True


def _from_ollama_ps(info, ps):
    runners = _dig(ps, "models")
    if not isinstance(runners, list):
        return False
    for runner in runners:
        if isinstance(runner, dict) and info.id in (runner.get("name"), runner.get("model")):
            info.loaded = True
            info.context_length = _tokens(runner.get("context_length"))  # Ollama 0.10 and later
            return True
    info.loaded = False
    return True


def _from_lmstudio(info, data):
    """LM Studio's /api/v0/models (``data``, ``id``) or /api/v1/models (``models``, ``key``)."""
    v0 = isinstance(_dig(data, "data"), list)
    items = _dig(data, "data" if v0 else "models")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or info.id not in (item.get("id"), item.get("key")):
            continue
        kind = item.get("type")
        if not isinstance(kind, str) or ("state" not in item and "loaded_instances" not in item):
            return False  # not LM Studio's shape
        info.max_context_length = _tokens(item.get("max_context_length"))
        info.embeddings = kind in ("embeddings", "embedding")
        if v0:
            info.vision = kind == "vlm"
            info.loaded = item.get("state") == "loaded" if isinstance(item.get("state"), str) else None
            info.context_length = _tokens(item.get("loaded_context_length")) if info.loaded else None
            info.tools = _listed(item.get("capabilities"), "tool_use")
        else:
            instances = item.get("loaded_instances")
            info.loaded = bool(instances) if isinstance(instances, list) else None
            if info.loaded:
                info.context_length = _tokens(_dig(instances[0], "config", "context_length"))
            info.vision = _flag(_dig(item, "capabilities", "vision"))
            info.tools = _flag(_dig(item, "capabilities", "trained_for_tool_use"))
        return True
    return False


def _from_litellm(info, data):
    """LiteLLM proxy's /model/info: the first deployment of this model name."""
    items = _dig(data, "data")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or item.get("model_name") != info.id or "litellm_params" not in item:
            continue
        details = item.get("model_info")
        if not isinstance(details, dict):
            return False
        info.context_length = info.max_context_length = (
            _tokens(details.get("max_input_tokens")) or _tokens(details.get("max_tokens"))
        )
        info.vision = _flag(details.get("supports_vision"))
        info.tools = _flag(details.get("supports_function_calling"))
        info.reasoning = _flag(details.get("supports_reasoning"))
        mode = details.get("mode")
        if isinstance(mode, str):
            info.embeddings = mode == "embedding"
        return True
    return False


# How each kind of server words a prompt that does not fit, with the numbers
# in it: (pattern, the group of the window, the group(s) of the tokens needed).
_CONTEXT_WORDINGS = (
    # llama.cpp: "request (9412 tokens) exceeds the available context size (8192 tokens), try increasing it"
    (r"(?i)\((\d+) tokens\) exceeds the available context size \((\d+) tokens\)", 2, (1,)),
    # vLLM: "... maximum context length is 4096 tokens. However, your request has 5000 input tokens."
    (r"(?i)maximum context length is (\d+) tokens\. However, your request has (\d+) input tokens", 1, (2,)),
    # vLLM: "'max_tokens' or 'max_completion_tokens' is too large: 500. This model's maximum context
    # length is 4096 tokens and your request has 3700 input tokens"
    (r"(?i)is too large: (\d+)\. This model's maximum context length is (\d+) tokens and your request "
     r"has (\d+) input tokens", 2, (1, 3)),
    # OpenAI and llama-cpp-python's server: "maximum context length is 2048 tokens. However, you
    # requested 3000 tokens (3000 in the messages, None in the completion)"; OpenRouter "about N".
    (r"(?i)maximum context length is (\d+) tokens\.? However,? you requested (?:about )?(\d+) tokens", 1, (2,)),
    (r"(?i)maximum context length is (\d+) tokens\. However, your messages resulted in (\d+) tokens", 1, (2,)),
    # llama-cpp-python's own: "Requested tokens (3000) exceed context window of 2048"
    (r"(?i)Requested tokens \((\d+)\) exceed context window of (\d+)", 2, (1,)),
    # LM Studio: "Trying to keep the first 9000 tokens when context the overflows. However, the
    # model is loaded with context length of only 4096 tokens"
    (r"(?i)keep the first (\d+) tokens.{0,80}?context length of only (\d+) tokens", 2, (1,)),
    (r"(?i)maximum context length is (\d+) tokens", 1, ()),
)
_CONTEXT_EXCEEDED = (
    r"(?i)context_length_exceeded|exceed_context_size_error|ContextWindowExceeded|maximum context length is|"
    r"exceeds? the (available |maximum )?context (size|window|length)|context length of only|"
    r"exceed context window|input length exceeds the context length|prompt is longer than the context length|"
    r"prompt is too long|context (length|window|size) (is )?exceeded"
)
# Who words it so (for the fix to name), when nothing else says.
_SERVER_WORDINGS = (
    (r"(?i)available context size|exceed_context_size_error|requires --jinja", "llama.cpp"),
    (r"(?i)your request has \d+ input tokens|--enable-auto-tool-choice|--max-model-len", "vllm"),
    (r"(?i)Requested tokens \(\d+\) exceed context window|None in the completion", "llama-cpp-python"),
    (r"(?i)keep the first \d+ tokens", "lmstudio"),
    (r"(?i)does not support tools|input length exceeds the context length|"
     r"prompt is longer than the context length currently available", "ollama"),
    (r"(?i)No endpoints found that support", "openrouter"),
    (r"^litellm\.", "litellm"),
)
# Tools refused: vLLM '"auto" tool choice requires --enable-auto-tool-choice and
# --tool-call-parser to be set'; Ollama "<model> does not support tools";
# llama.cpp "tools param requires --jinja flag" (a 500); OpenRouter (404) "No
# endpoints found that support tool use".
_TOOLS_REFUSED = (
    r"(?i)does not support tools|tool.choice requires --enable-auto-tool-choice|(tools|tool_choice) param "
    r"requires --jinja|support tool use|support the provided 'tool_choice'|"
    r"(tools|function calling|tool calls?) (is |are )?not supported"
)
# Ollama's /v1: "invalid image input" (not a JPEG, PNG or WebP data URL), "image
# URLs are not currently supported, please use base64 encoded data instead".
_IMAGE_REFUSED = r"(?i)invalid image input|image URLs are not (currently )?supported"


def _context_numbers(message, body):
    """(window, tokens needed) of a context overflow, each None where not said."""
    error = _dig(body, "error")
    limit, requested = _tokens(_dig(error, "n_ctx")), _tokens(_dig(error, "n_prompt_tokens"))
    if limit or requested:  # llama.cpp says them as fields too
        return limit, requested
    for pattern, window, needed in _CONTEXT_WORDINGS:
        match = re.search(pattern, message)
        if match:
            total = sum(int(match.group(i)) for i in needed) if needed else None
            return _tokens(int(match.group(window))), _tokens(total) if total else None
    return None, None


def _server_in(message, headers):
    """The kind of server an error answer came from, by its words (a gateway passes
    on its upstream's) or its headers."""
    for pattern, server in _SERVER_WORDINGS:
        if re.search(pattern, message):
            return server
    if headers is not None:
        if headers.get("Server", "").startswith("llama.cpp"):
            return "llama.cpp"
        if any(name.lower().startswith("x-litellm-") for name in headers):
            return "litellm"
    return None



# -- Internals: error answers ------------------------------------------------

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
    r"(?is)(image|vision|multi-?modal)\w{0,20}.{0,80}?(not supported|unsupported|not enabled|"
    r"not allowed|not available)|(not|n't) (support|accept)\w* (image|vision|multi-?modal)|"
    r"not a multi-?modal model|mmproj"
)
_STREAM_REFUSED = (
    r"(?is)\bstream\w{0,20}\b.{0,80}?(not supported|unsupported|not allowed|not permitted|"
    r"unrecognized|extra (fields|inputs)|unexpected)|(unrecognized|unknown|unexpected)\b.{0,40}\bstream\b"
)
_ENDPOINT_MISSING = r"(?i)unexpected endpoint|no route|page not found|^not found$"
# llama-cpp-python answers a malformed request with 500 and pydantic's words.
_VALIDATION = r"(?i)validation error|field required|is not a valid|invalid type|literal_error|Input should be"
# LiteLLM without a database answers an unknown key with 400 "no_db_connection".
_AUTH_TYPES = ("authentication_error", "auth_error", "invalid_api_key", "no_db_connection")


def _error_fields(body):
    """(message, code, type, param) from any of the error body shapes servers send."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):  # {"error": "text"}: vLLM 401, LM Studio
            return error, body.get("code"), body.get("type"), None
        if isinstance(error, dict):
            message = error.get("message", error.get("detail", error.get("msg")))
            if isinstance(message, dict):  # LiteLLM nests another error
                inner = _error_fields(message)
                return inner[0], error.get("code", inner[1]), error.get("type", inner[2]), inner[3]
            if isinstance(message, list):  # FastAPI's validation list
                message = "; ".join(_detail_text(item) for item in message[:20])
            if message is None and error is not body:
                message = _dumps(error)
            return _unwrap_repr(str(message or "")), error.get("code"), error.get("type"), error.get("param")
    if isinstance(body, list):
        return "; ".join(_detail_text(item) for item in body[:20]), None, None, None
    return str(body or ""), None, None, None


def _detail_text(item):
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
        return "%s: %s" % (where, item["msg"]) if where else str(item["msg"])
    return str(item)


def _unwrap_repr(message):
    """LiteLLM sometimes puts a Python repr of an error dict in ``message``.

    The opening is found by a pattern of bounded length and the closing quote
    by a search from there, so a hostile text costs linear time.
    """
    opening = re.search(r"""['"](?:message|error)['"]\s{0,8}:\s{0,8}(['"])""", message[:_SCAN_LIMIT])
    if not opening or "{" not in message[: opening.start()]:
        return message
    closing = re.compile(re.escape(opening.group(1)) + r"\s{0,8}[,}]").search(message, opening.end())
    return message[opening.end() : closing.start()] if closing else message


def _parse_error_body(raw):
    """Decode an error body: JSON if it is, else the page's text."""
    text = _scrub(raw.decode("utf-8", "replace")).strip()
    for field in ("data:", "error:"):  # an error sent as one SSE event
        if text.startswith(field):
            text = text[len(field):].split("\n", 1)[0].strip()
    try:
        return _loads(text)
    except ValueError:
        return _page_text(text) if text else ""


def _error_class(status, message, code, kind, param, call):
    """Which exception an error answer is; the patterns see the message's start only."""
    message = message[:_SCAN_LIMIT]
    if code == "context_length_exceeded" or kind == "exceed_context_size_error" or re.search(
        _CONTEXT_EXCEEDED, message
    ):
        return ContextLengthExceeded
    if call.tools and re.search(_TOOLS_REFUSED, message):
        return ToolsNotSupported
    if call.images and re.search(_IMAGE_REFUSED, message):
        return UnsupportedImage
    if call.images and re.search(_VISION_REFUSED, message):
        return VisionNotSupported
    if call.stream and param == "stream":  # OpenAI: "Unsupported value: 'stream' ..."
        return StreamingNotSupported
    if call.model and (code == "model_not_found" or re.search(_MODEL_MISSING, message)):
        return UnknownModel
    if status in (401, 403) or kind in _AUTH_TYPES or code == "invalid_api_key":
        return AuthenticationError
    if call.embeddings and (status in (404, 405, 501) or re.search(_EMBEDDINGS_OFF, message)):
        return EndpointNotFound
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


# DeepSeek: 400 "Missing `reasoning_content` field in the assistant message at
# message index 2" (https://api-docs.deepseek.com/guides/thinking_mode#tool-calls).
_REASONING_MISSING = (
    r"(?is)reasoning_content\W{0,3}\s*(field\s*)?(is\s*)?(missing|required)|missing\W{0,3}\s*reasoning_content"
)


# llama.cpp without --embeddings: 501 "This server does not support embeddings.
# Start it with `--embeddings`"; llama-cpp-python without --embedding true: 500
# "Llama model must be created with embedding=True to call this method"; vLLM
# with a generative model: "does not support Embeddings API".
_EMBEDDINGS_OFF = (
    r"(?i)(not support|unsupported|not enabled).{0,20}embedding|embeddings? (api |are |is )?not "
    r"(supported|enabled)|created with embedding=true"
)


def _hint(cls, message, call):
    """What to do about an error that the features of the call explain, or ""."""
    if call.embeddings:
        if cls is EndpointNotFound:
            return (
                "llama.cpp's server needs --embeddings (and --pooling mean), llama-cpp-python's "
                "--embedding true; Ollama and vLLM need an embedding model; a 404 may also mean "
                "a base URL without /v1."
            )
        if re.search(r"(?i)pooling", message):
            return "llama.cpp's server serves /v1/embeddings with --pooling mean (or cls, last), not none."
    elif issubclass(cls, BadRequest) and re.search(_REASONING_MISSING, message):
        return (
            "This server wants the reasoning back in assistant messages: append "
            "result.to_message(reasoning=True) instead of result.message."
        )
    return ""


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


# -- Internals: warnings -----------------------------------------------------
#
# An answer can look fine and not be: the reasoning took the whole budget, a
# tool call came back as text, Ollama cut the prompt to its window without a
# word. Each detector looks only at what the answer and the call say (and the
# model_info() read for the model, if any); on an ordinary answer each stays
# silent.

# At least one token per this many characters of text: no tokenizer packs
# prose tighter, so a prompt counted at fewer tokens was cut.
_CHARS_PER_TOKEN_MAX = 8
# Payload options a server takes and drops without a word. Ollama's /v1 API
# decodes into a Go struct without them (openai/openai.go, ChatCompletionRequest).
_DROPPED_PARAMS = {"ollama": frozenset(("options", "keep_alive", "num_ctx"))}
_TOOL_CALL_TEXT = 1 << 16  # characters of an answer searched for a written-out call


def _warnings(result, call, known):
    """The warnings about an answer, each logged once at WARNING."""
    found = []
    text = result.text.strip()
    if not text and result.reasoning.strip() and not result.tool_calls:
        if result.finish_reason == "length":
            found.append(
                "The answer never started: the reasoning used the whole max_tokens budget (%d characters "
                "of reasoning, no text, finish_reason 'length'). Raise max_tokens, or lower the reasoning "
                "(reasoning_effort=\"low\", or turn thinking off for this model)." % len(result.reasoning)
            )
        elif result.finish_reason == "stop":
            found.append(
                "The answer is in .reasoning: the model wrote no text after its reasoning. The server's "
                "reasoning parser may have taken the whole answer (llama.cpp: --reasoning-format none; vLLM: "
                "start it without --reasoning-parser); result.reasoning holds it."
            )
    if call.tools and not result.tool_calls and text:
        name = _written_call(text[:_TOOL_CALL_TEXT], call.tools)
        if name:
            found.append(
                "The model wrote a call of the tool %r as text and no tool call came back: the server did "
                "not parse tool calls (llama.cpp needs --jinja; vLLM --enable-auto-tool-choice "
                "--tool-call-parser NAME; Ollama a model whose template knows tools)." % name
            )
    window = known.context_length if known else None
    counted = _tokens(_dig(result.usage, "prompt_tokens"))
    least = call.prompt_chars // _CHARS_PER_TOKEN_MAX
    if window and counted and least > max(window, counted):
        found.append(
            "The prompt was cut: its %d characters need at least %d tokens, but the server counted %d, "
            "within the model's window of %d; the model never saw the rest. %s"
            % (call.prompt_chars, least, counted, window, _CONTEXT_FIXES.get(known.server, _CONTEXT_FIXES[None]))
        )
    server = known.server if known else None
    if server is None and _dig(result.raw, "system_fingerprint") == "fp_ollama":
        server = "ollama"
    dropped = sorted(call.params & _DROPPED_PARAMS.get(server, frozenset()))
    if dropped:
        found.append(
            "%s does not reach the model: %s's OpenAI API drops it without a word. Set the context "
            "window with OLLAMA_CONTEXT_LENGTH or a Modelfile's PARAMETER num_ctx, and keep_alive with "
            "OLLAMA_KEEP_ALIVE." % (", ".join(dropped), "Ollama")
        )
    for warning in found:
        log.warning("%s", warning)
    return found


def _written_call(text, names):
    """The name of a sent tool that the text writes out as a call, or None.

    As models write it with no tool parser on the server: a JSON object with
    ``name`` and ``arguments`` (or ``parameters``, as Llama 3 does), bare, in
    a code fence, in ``<tool_call>`` tags or after ``<|python_tag|>``; or a
    list of such objects.
    """
    candidates = [text]
    candidates += re.findall(r"(?s)```(?:json)?\s*(.*?)```", text)
    candidates += re.findall(r"(?s)<tool_call>\s*(.*?)\s*</tool_call>", text)
    if text.startswith("<|python_tag|>"):
        candidates.append(text[len("<|python_tag|>"):])
    for candidate in candidates:
        try:
            value = _loads(candidate.strip())
        except ValueError:
            continue
        for call in value if isinstance(value, list) else [value]:
            if not isinstance(call, dict):
                continue
            function = call.get("function") if isinstance(call.get("function"), dict) else call
            arguments = function.get("arguments", function.get("parameters"))
            if function.get("name") in names and isinstance(arguments, (dict, str)):
                return function["name"]
    return None



# -- Internals: event streams ------------------------------------------------


def _deltas(body, acc, response, client, call, limit):
    """Parse a stream into StreamDeltas, folding them into acc."""
    try:
        for event in _SSEClient(_event_blocks(_strip_bom(iter(body)), body, limit)).events():
            data = event.data
            if data == "[DONE]" or data[:1] == "[" and data.strip() == "[DONE]":
                body.drain()
                break
            try:
                chunk = json.loads(data)
            except (ValueError, RecursionError) as exc:
                chunk = _odd_event(event, exc, body, acc, client, call)
                if chunk is _END:
                    break
                if chunk is None:
                    continue
            # _error_in(chunk), written out on this hot path:
            failed = chunk.__class__ is dict and (chunk.get("error") or chunk.get("object") == "error")
            if failed or event.event == "error":
                if chunk.__class__ is dict and chunk.get("choices"):
                    acc.add(chunk)  # OpenRouter puts the error beside a last delta
                raise _error_event(chunk, client, call)
            yield acc.add(chunk)
        else:
            if body.cancelled:
                return
            if not acc.finish_reason:
                if not acc.chunks and body.head:
                    raise InvalidResponse("the server sent no server-sent events, only", excerpt=_text(body.head))
                raise StreamInterrupted(
                    "the stream ended before the answer was finished (no finish_reason and no [DONE])"
                )
        yield from acc.flush()  # text held back as a possible <think> tag
        acc.warnings = _warnings(acc.result(), call, client._infos.get(call.model))
    except OpenAICompatError as exc:
        if body.cancelled:
            return
        raise _midstream(exc, acc.result()) from exc.__cause__
    finally:
        body.finish()
        response.close()


_END = object()  # what _odd_event returns for an event that ends the stream


def _odd_event(event, exc, body, acc, client, call):
    """What an event whose data is not JSON means: a chunk after all, None to
    skip it, ``_END``, or an error."""
    data = event.data
    if _LF in data:  # many data lines, joined by _whole_event
        data = data.replace(_LF, "\n")
        if data.strip() == "[DONE]":
            return _END
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as inner:
            exc = inner
    if not data.strip():
        return None  # a keep-alive: an event with blank data
    if body.tail and acc.finish_reason:
        return _END  # a cut-off last event after the answer was finished
    if event.event == "error":  # an error told in plain text
        raise client._error(None, data, call, "the stream") from exc
    raise InvalidResponse(
        "the stream sent an event that is not JSON (%s)" % exc, excerpt=data[: _MESSAGE_LIMIT * 4]
    ) from exc


def _error_event(chunk, client, call):
    """The exception for an error event in a stream."""
    error = chunk.get("error", chunk) if isinstance(chunk, dict) else chunk
    status = None
    # Groq says the status as error.status_code (its error.code is a word,
    # such as "tool_use_failed"); others put it in error.code.
    for field in ("status_code", "status", "code"):
        value = error.get(field) if isinstance(error, dict) else None
        if isinstance(value, str) and len(value) == 3 and value.isdecimal():
            value = int(value)
        if value.__class__ is int and 400 <= value < 600:
            status = value
            break
    return client._error(status, chunk, call, "the stream")


class _SSEClient(sseclient.SSEClient):
    """sseclient-py's parser, fed whole events by :func:`_event_blocks`.

    ``_read`` is the one hook below its public surface: it hands over those
    events as they are, where sseclient's own would cut them into lines and
    join them again (quadratic on a big event). Were the hook not taken (a
    later sseclient-py; setup.cfg pins < 2), its own ``_read`` would still
    read every block right, only slower: each is one whole event with LF
    line ends. It logs event sizes at DEBUG through our logger.
    """

    def _read(self):
        return self._event_source


_BOM = b"\xef\xbb\xbf"


def _strip_bom(chunks):
    """Drop one leading UTF-8 byte order mark, also when it arrives in pieces.

    https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream:
    "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
    """
    lead = b""
    for data in chunks:
        lead += data
        if len(lead) >= 3 or not _BOM.startswith(lead):
            break
    if lead.startswith(_BOM):
        lead = lead[3:]
    if lead:
        yield lead
    yield from chunks


def _event_blocks(chunks, body, limit):
    """Cut a byte stream into whole SSE events for sseclient.

    sseclient-py parses an event well but not a stream: it rescans a growing
    buffer (quadratic on a big event), trusts a ``\\r\\n`` not to be split
    between reads, and fails on invalid UTF-8. So each block handed over here
    is one whole event with ``\\n`` line ends, in valid UTF-8, of at most
    ``limit`` bytes. Line ends per the WHATWG rules (link above) are CRLF, LF
    or CR: a CR ends its line at once, and an LF right after it is dropped, so
    an event ends at its blank line even when the next read is far off.
    """
    pending = []  # pieces of the unfinished event
    size = 0
    after_cr = False  # the last read ended in CR: an LF starting the next one belongs to it
    for data in chunks:
        if (
            not pending
            and not after_cr
            and data.endswith(b"\n\n")
            and data.find(b"\n\n") == len(data) - 2
            and b"\r" not in data
            and len(data) <= limit
        ):
            # The usual case: one read, one whole event with plain line ends.
            plain = data.isascii() and data[:6] != b"error:" and data.count(b"\n") <= _MANY_LINES
            yield data if plain else _whole_event((data,))
            continue
        if after_cr and data[:1] == b"\n":
            data = data[1:]
        after_cr = data[-1:] == b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if pending and data[:1] == b"\n" and pending[-1][-1:] == b"\n":
            pending.append(b"\n")
            yield _whole_event(pending)
            pending, size = [], 0
            data = data[1:]
        start, end = 0, data.find(b"\n\n")
        while end >= 0:
            event = data[start : end + 2]  # with its blank line, as sseclient's own _read would cut it
            start, end = end + 2, data.find(b"\n\n", end + 2)
            if pending:
                pending.append(event)
                event, pending, size = b"".join(pending), [], 0
            if len(event) > limit:
                raise _too_large(limit)
            plain = event.isascii() and event[:6] != b"error:" and event.count(b"\n") <= _MANY_LINES
            yield event if plain else _whole_event((event,))
        last = data[start:]
        if last:
            size += len(last)
            if size > limit:
                raise _too_large(limit)
            pending.append(last)
    if pending and b"".join(pending).strip():
        # An unterminated last event is offered too: cut JSON fails to parse.
        body.tail = True
        pending.append(b"\n\n")
        yield _whole_event(pending)


def _too_large(limit):
    return InvalidResponse(
        "the stream sent an event larger than max_event_bytes=%d; raise it if such events are real" % limit
    )


def _whole_event(pieces):
    event = b"".join(pieces)
    if not event.isascii():  # the SSE spec decodes with replacement
        event = event.decode("utf-8", "replace").encode("utf-8")
    if event.startswith(b"error:"):
        # Old llama.cpp sends "error: {...}", a field sseclient drops.
        event = b"event: error\ndata:" + event[6:]
    if event.count(b"\n") > _MANY_LINES:
        event = _joined(event)
    return event


_MANY_LINES = 32
# Joins the data lines of an event of many lines: no text holds it (a NUL is
# not even valid JSON), and JSON never parses with it in.
_LF = "\x00%s\x00" % os.urandom(8).hex()


def _joined(event):
    """An event of many lines with its ``data`` values on one line, joined by ``_LF``.

    sseclient-py adds each ``data`` line's value to a growing string: nothing
    for the line or two of a usual event, quadratic for one of thousands.
    Joined here in one pass, the values become one line, and :func:`_odd_event`
    puts the LFs back as the WHATWG rules join them (sseclient strips the one
    space after the colon).
    """
    values, lines = [], []
    for line in event.split(b"\n"):
        if line == b"data" or line.startswith(b"data:"):
            value = line[5:]
            values.append(value[1:] if value[:1] == b" " else value)
        elif line:
            lines.append(line)
    if values:
        lines.append(b"data: " + _LF.encode("ascii").join(values))
    return b"\n".join(lines) + b"\n\n"


# -- Internals: assembling answers -------------------------------------------


class _Accumulator:
    """Folds stream chunks into a ChatResult, following one choice.

    With ``n`` > 1 servers send each choice in chunks of its own ``index``;
    the result follows the lowest index seen, the others pass by as deltas.
    """

    def __init__(self, model, think_tags=None):
        self.model = model
        self.index = None  # the choice followed
        self.think_tags = think_tags
        self.splitter = None if think_tags is False else _ThinkSplitter(think_tags)
        self.others = {}  # the splitters of the other choices, by index
        self.texts = []
        self.reasonings = []
        self.calls = _ToolCalls()
        self.finish_reason = None
        self.usage = None
        self.chunks = 0
        self.first = None
        self.logprobs = None
        self.warnings = []  # once the stream has ended well

    def add(self, chunk):
        """Fold in one chunk (or a whole non-stream answer) and return its delta."""
        if chunk.__class__ is not dict:
            raise InvalidResponse(
                "the server sent a JSON %s, not an object" % type(chunk).__name__, excerpt=_json_text(chunk)
            )
        self.chunks += 1
        if self.first is None:
            self.first = chunk
        text = reasoning = ""
        calls = ()
        finish = None
        index = 0
        try:
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                if len(choices) > 1:  # all choices in one chunk: the followed one first
                    choice = min(choices, key=_choice_index)
                index = choice.get("index", 0)
                if index.__class__ is not int:
                    index = 0
                delta = choice.get("delta") or choice.get("message") or {}
                text = delta.get("content") or ""
                if text.__class__ is not str:
                    text, reasoning = _content_parts(text)
                if len(delta) > 1 or not text:  # more than the usual content
                    more = delta.get("reasoning_content") or delta.get("reasoning") or ""
                    if more.__class__ is not str:
                        more = "".join(_content_parts(more))
                    reasoning += more
                    calls = delta.get("tool_calls") or ()
                finish = choice.get("finish_reason")
                if index != self.index:
                    if self.index is not None and index > self.index:
                        if self.think_tags is not False:
                            splitter = self.others.setdefault(index, _ThinkSplitter(self.think_tags))
                            if splitter is not None:
                                text, reasoning, self.others[index] = _split(splitter, text, reasoning, finish)
                        return StreamDelta(text, reasoning, calls, finish, chunk.get("usage"), chunk, index)
                    self._follow(index)
                if self.splitter is not None:
                    text, reasoning, self.splitter = _split(self.splitter, text, reasoning, finish)
                logprobs = choice.get("logprobs")
                if logprobs:
                    self._add_logprobs(logprobs)
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
                "the server sent a chat completion of an unexpected shape (%s)" % exc, excerpt=_json_text(chunk)
            ) from exc
        if usage:
            self.usage = usage
        model = chunk.get("model")
        if model and model.__class__ is str:
            self.model = model
        return StreamDelta(text, reasoning, calls, finish, usage, chunk, index)

    def _follow(self, index):
        """Follow the choice ``index`` (a lower one than before starts afresh)."""
        if self.index is not None:
            log.debug("choice %d arrived after choice %d: following it", index, self.index)
        self.index = index
        self.texts, self.reasonings, self.calls, self.finish_reason = [], [], _ToolCalls(), None
        if self.splitter is not None:
            self.splitter = _ThinkSplitter(self.splitter.always)
        self.logprobs = None

    def text(self):
        return "".join(self.texts)

    def flush(self):
        """Deltas of the text held back as a possible tag, once the stream has ended."""
        held = []
        if self.splitter is not None:
            text, reasoning = self.splitter.flush()
            self.splitter = None
            if text:
                self.texts.append(text)
            if reasoning:
                self.reasonings.append(reasoning)
            if text or reasoning:
                held.append(StreamDelta(text, reasoning, index=self.index or 0))
        for index, splitter in self.others.items():
            if splitter is not None:
                text, reasoning = splitter.flush()
                self.others[index] = None
                if text or reasoning:
                    held.append(StreamDelta(text, reasoning, index=index))
        return held

    def _add_logprobs(self, logprobs):
        if logprobs.__class__ is not dict:
            raise TypeError("logprobs is a %s, not an object" % type(logprobs).__name__)
        entries = logprobs.get("content")
        if entries is not None and entries.__class__ is not list:
            raise TypeError("logprobs.content is a %s, not a list" % type(entries).__name__)
        if entries:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(entries)

    def result(self):
        text, reasoning = self.text(), "".join(self.reasonings)
        if self.splitter is not None:  # a stream that stopped inside a tag
            held_text, held_reasoning = self.splitter.held_back()
            text, reasoning = text + held_text, reasoning + held_reasoning
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
            "system_fingerprint": first.get("system_fingerprint"),
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        if self.logprobs is not None:
            raw["choices"][0]["logprobs"] = {"content": self.logprobs}
        result = ChatResult(
            text,
            reasoning=reasoning,
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            raw=raw,
            logprobs=self.logprobs,
        )
        result.warnings = list(self.warnings)
        return result


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def _split(splitter, text, reasoning, finish):
    """(text, reasoning, the splitter or None once done) of a content delta (see _ThinkSplitter).

    A splitter that is done is dropped: the rest of the answer costs nothing.
    """
    text, thought = splitter.feed(text)
    if finish:  # the end of the answer: nothing can become a tag any more
        held_text, held_thought = splitter.flush()
        text, thought = text + held_text, thought + held_thought
    return text, reasoning + thought if thought else reasoning, None if splitter.done else splitter


class _ThinkSplitter:
    """Splits ``<think>...</think>`` reasoning off the start of the content.

    Reasoning models write it there when the server has no reasoning parser
    (vLLM without ``--reasoning-parser``, llama.cpp with ``--reasoning-format
    none``, some LM Studio and Ollama set-ups). Only a tag at the start counts
    (after whitespace); with ``always`` (``think_tags=True``) the reasoning is
    taken as open from the start, for templates that put ``<think>`` in the
    prompt, and ends at ``</think>``. Tags may arrive cut at any character, so
    text is held back while it may still be the start of a tag (at most a
    tag's length, besides leading whitespace, which is kept aside as a list
    of pieces: cheap however much comes); once the answer's first
    character is out, the splitter is done and the rest passes untouched.
    Leading whitespace of the reasoning and of the answer is dropped.
    """

    __slots__ = ("always", "state", "held", "space", "done")

    # States: before any visible character; at the start of the reasoning;
    # in the reasoning; after </think>, before the answer's first character.
    START, THINK_START, THINK, ANSWER_START = range(4)

    def __init__(self, always):
        self.always = bool(always)
        self.state = self.START
        self.held = ""
        self.space = []  # whitespace before anything visible
        self.done = False

    def feed(self, text):
        """(answer text, reasoning) of one content delta."""
        if self.held:
            text, self.held = self.held + text, ""
        if not text:
            return "", ""
        state = self.state
        if state == self.START:
            visible = text.lstrip()
            if len(visible) < len(text):
                self.space.append(text[: len(text) - len(visible)])
            if visible.startswith(_THINK_OPEN):
                text, state, self.space = visible[len(_THINK_OPEN):], self.THINK_START, []
            elif _THINK_OPEN.startswith(visible):  # "", "<", "<th"...
                self.held = visible
                return "", ""
            elif self.always:
                text, state, self.space = visible, self.THINK_START, []
            else:
                self.done = True  # no tag: the content is all answer, untouched
                space, self.space = "".join(self.space), []
                return space + visible, ""
        reasoning = ""
        if state == self.THINK_START:
            text = text.lstrip()
            if not text:
                self.state = state
                return "", ""
            state = self.THINK
        if state == self.THINK:
            end = text.find(_THINK_CLOSE)
            if end < 0:
                # Hold back a tail that may be the start of "</think>".
                cut = text.rfind("<", max(0, len(text) - len(_THINK_CLOSE) + 1))
                if cut >= 0 and _THINK_CLOSE.startswith(text[cut:]):
                    text, self.held = text[:cut], text[cut:]
                self.state = state
                return "", text
            reasoning, text = text[:end], text[end + len(_THINK_CLOSE):]
        text = text.lstrip()  # state is ANSWER_START here
        self.state = self.ANSWER_START
        if text:
            self.done = True
        return text, reasoning

    def held_back(self):
        """(answer text, reasoning) of what is held, were the content to end now."""
        if self.state == self.START and not self.always:
            return "".join(self.space) + self.held, ""  # "<thi" and no more: it was answer after all
        return "", self.held

    def flush(self):
        """Release what is held at the end of the answer."""
        held = self.held_back()
        self.held, self.space = "", []
        self.done = True
        return held


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


def _embeddings(data, count, url):
    """The vectors of an /embeddings answer, in input order."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise InvalidResponse(
            "%s answered without %d embedding%s in 'data'" % (url, count, "" if count == 1 else "s"),
            excerpt=_json_text(data),
        )
    try:
        indexed = sum("index" in item for item in items)
        if indexed:
            if indexed < count:
                raise ValueError("only %d of %d items have an index" % (indexed, count))
            if sorted(item["index"] for item in items) != list(range(count)):
                raise ValueError("the indexes are not 0 to %d, once each" % (count - 1))
            items = sorted(items, key=lambda item: item["index"])
        vectors = []
        for item in items:
            vector = item["embedding"]
            if isinstance(vector, str):  # encoding_format="base64": float32, little-endian
                raw = base64.b64decode(vector, validate=True)  # junk is an error, not skipped
                if len(raw) % 4:
                    raise ValueError("a base64 embedding of %d bytes is no float32 vector" % len(raw))
                vector = list(struct.unpack("<%df" % (len(raw) // 4), raw))
            elif not isinstance(vector, list) or not all(x.__class__ in (float, int) for x in vector):
                raise TypeError("an embedding is not a list of numbers")
            if not all(map(math.isfinite, vector)):
                raise ValueError("an embedding holds NaN or an infinity")
            vectors.append(vector)
    except (TypeError, LookupError, ValueError, ArithmeticError, struct.error) as exc:  # binascii.Error: a ValueError
        raise InvalidResponse(
            "%s answered with embeddings of an unexpected shape (%s)" % (url, exc), excerpt=_json_text(data)
        ) from exc
    return vectors


def _error_in(data):
    """Whether a 200 body or a stream chunk is an error report.

    ``{"error": ...}`` from most servers, even beside ``choices`` (OpenRouter's
    mid-stream errors); ``{"object": "error", ...}`` from older vLLM.
    """
    return data.__class__ is dict and (bool(data.get("error")) or data.get("object") == "error")


def _content_parts(content):
    """(text, reasoning) of a message content that is a list of parts (or None).

    Text parts make the text. Mistral's ``thinking`` parts, each holding text
    parts of its own, make the reasoning
    (https://docs.mistral.ai/capabilities/reasoning/). A part of any other
    type (an image, audio, a refusal) is left out of both: it stays in ``raw``.
    """
    if content is None:
        return "", ""
    if not isinstance(content, list):
        raise TypeError("the content is a %s, not text or a list of parts" % type(content).__name__)
    texts, thoughts = [], []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in (None, "text", "output_text"):
            texts.append(part.get("text") or "")
        elif kind in ("thinking", "reasoning"):
            thought = part.get(kind) or part.get("text") or ""
            thoughts.append("".join(_content_parts(thought)) if isinstance(thought, list) else thought)
    return "".join(texts), "".join(thoughts)


def _choice_index(choice):
    index = choice.get("index")
    return index if index.__class__ is int else 0


def _parse_completion(data, where, think_tags=None):
    """A ChatResult from the JSON of a non-stream answer (``where``: whence, for a message).

    The answer is read as one chunk whose choice has a whole ``message``, so
    every dialect the stream reader knows works here too.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list):
        raise InvalidResponse(
            "%s without the 'choices' of a chat completion" % where,
            excerpt=_json_text(data),
        )
    acc = _Accumulator(None, think_tags)
    acc.add(data)
    result = acc.result()
    result.raw = data
    return result


# -- Internals: JSON answers -------------------------------------------------
#
# schema= asks for JSON the way the server takes it, down a ladder learned
# per client and model: a json_schema response_format; else json_object with
# the schema stated in a system message (and in response_format's "schema",
# as llama.cpp and llama-cpp-python read it); else no response_format, the
# schema in the system message only. A rung is left only when the server
# refuses it in words (a BadRequest naming response_format or the JSON
# types; llama-cpp-python says it as a 500 with pydantic's words), never on a
# network error. The answer is then parsed, checked and, when it fails, asked
# for again with the reason quoted.

_JSON_MODES = ("json_schema", "json_object", "prompt")
_DEFAULT_REASK = 1
# LM Studio: 400 {"error": "'response_format.type' must be 'json_schema'"};
# llama.cpp: 'response_format type must be one of "text" or "json_object"';
# llama-cpp-python (llama_cpp/llama_types.py, a Literal of "text" and
# "json_object"): 500 "... 'loc': ('body', 'response_format', 'type'), 'msg':
# \"Input should be 'text' or 'json_object'\"", worded by FastAPI's version.
_SCHEMA_REFUSED = r"(?i)response_format|json_schema|json_object|Failed to initialize samplers"
# OpenAI's strict mode refuses a schema that leaves properties optional or open:
# "Invalid schema for response_format 'city': ... 'additionalProperties' is
# required to be supplied and to be false". The same rung is asked again, not strict.
_STRICT_REFUSED = r"(?i)strict|additionalProperties|Invalid schema for response_format"


def _json_options(params, stream):
    """Pop schema=, validate= and reask= from a call's options, checked."""
    schema = params.pop("schema", None)
    validate = params.pop("validate", None)
    if stream and params.get("reask", 0) != 0:
        raise ConfigurationError("reask= is for chat(): a stream cannot ask again once its text is shown")
    reask = params.pop("reask", _DEFAULT_REASK)
    if schema is not None and not isinstance(schema, dict):
        raise ConfigurationError("schema= must be a JSON schema dict, not %s" % type(schema).__name__)
    if validate is not None and not callable(getattr(validate, "model_validate", validate)):
        raise ConfigurationError("validate= must be a callable or a class with model_validate, not %r" % (validate,))
    if schema is None and validate is not None and callable(getattr(validate, "model_json_schema", None)):
        schema = validate.model_json_schema()  # a pydantic model says its own schema
    if schema is not None and "response_format" in params:
        raise ConfigurationError("pass schema= or response_format=, not both")
    if isinstance(reask, bool) or not isinstance(reask, int) or reask < 0:
        raise ConfigurationError("reask= must be a whole number of at least 0, not %r" % (reask,))
    return schema, validate, reask


class _JSONCall:
    """One chat(schema=...): the ladder, the check and the re-asks, within one stream_timeout."""

    def __init__(self, client, schema, validate, reask, model, timeout, stream_timeout):
        self.client = client
        self.schema = schema
        self.validate = validate
        self.reask = reask
        self.model = model or client.model
        self.timeout = timeout
        limit = client._limit(stream_timeout)
        self.limit = limit
        self.strict = True  # json_schema's "strict", until the server refuses this schema so
        self.deadline = None if limit is None else time.monotonic() + limit

    def run(self, messages, images, params):
        messages = _as_messages(messages)
        attempts, warnings = [], []
        mode = self.first_mode()
        while True:
            try:
                result = self.client._chat(self.call(messages, images, params, mode, stream=False))
            except BadRequest as exc:
                mode = self.next_mode(mode, exc)
                continue
            self.learn(mode)
            attempts.append(result.text)
            result.schema_mode = mode
            try:
                self.check(result)
            except InvalidJSON as exc:
                if exc.error.startswith("the answer is not JSON") and mode != "prompt" and not warnings:
                    warnings.append(
                        "The server took response_format (%s) but answered without JSON: it ignored the "
                        "schema." % mode
                    )
                    log.warning("%s", warnings[-1])
                if result.finish_reason == "length" or len(attempts) > self.reask:
                    exc.attempts = attempts
                    exc.partial.warnings = warnings + exc.partial.warnings
                    raise
                messages = messages + [result.message, {"role": "user", "content": _REASK % exc.error}]
                images = None  # already in the conversation
                continue
            result.warnings = warnings + result.warnings
            return result

    def stream(self, messages, images, params):
        messages = _as_messages(messages)
        mode = self.first_mode()
        while True:
            call = self.call(messages, images, params, mode, stream=True)
            try:
                stream = self.client._stream(call, functools.partial(self.checked, mode))
            except BadRequest as exc:
                mode = self.next_mode(mode, exc)
                continue
            self.learn(mode)
            return stream

    def checked(self, mode, result):
        """The check of a stream's result, once it has ended."""
        result.schema_mode = mode
        self.check(result)

    def first_mode(self):
        if self.schema is None:
            return None  # validate= alone: the caller's own params ask for JSON
        with self.client._infos_lock:
            return self.client._json_modes.get(self.model, _JSON_MODES[0])

    def next_mode(self, mode, exc):
        """The next rung after a refusal (or json_schema again, not strict), or the refusal raised."""
        message = exc.message[:_SCAN_LIMIT]
        if mode is None or mode == _JSON_MODES[-1] or not re.search(_SCHEMA_REFUSED, message):
            raise exc
        if mode == "json_schema" and self.strict and re.search(_STRICT_REFUSED, message):
            self.strict = False
            return mode
        log.debug("%s refused response_format %s: trying the next way", self.model, mode)
        return _JSON_MODES[_JSON_MODES.index(mode) + 1]

    def learn(self, mode):
        if mode is not None:
            with self.client._infos_lock:
                self.client._json_modes[self.model] = mode

    def call(self, messages, images, params, mode, stream):
        params = dict(params)
        if mode is not None:
            if mode == "json_schema":
                params["response_format"] = _schema_format(self.schema, params, self.strict)
            else:
                messages = _with_instruction(messages, self.schema)
                if mode == "json_object":
                    params["response_format"] = {"type": "json_object", "schema": self.schema}
        left = None
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Timeout("the call took longer than stream_timeout=%ss" % self.limit)
        return self.client._call(messages, self.model, images, params, stream, self.timeout, left)

    def check(self, result):
        """Set ``result.parsed``, or raise InvalidJSON saying why not."""
        if result.finish_reason == "length":
            raise InvalidJSON(
                "the JSON answer was cut at max_tokens (finish_reason 'length'): raise max_tokens",
                excerpt=result.text[-_EXCERPT_LIMIT:], error="the answer was cut", partial=result,
                attempts=[result.text],
            )
        try:
            value = _json_in(result.text)
        except ValueError as exc:
            error = "the answer is not JSON (%s)" % exc
        else:
            error = None
            try:
                if self.validate is not None:
                    value = getattr(self.validate, "model_validate", self.validate)(value)
                elif self.schema is not None:
                    problem = _schema_problem(self.schema, value)
                    if problem:
                        raise ValueError(problem)
            except Exception as exc:  # whatever the caller's validator raises
                error = "the JSON does not validate: %s" % (_finish(exc, _SERVER_MESSAGE_LIMIT) or type(exc).__name__)
        if error is not None:
            raise InvalidJSON(error, excerpt=result.text, error=error, partial=result, attempts=[result.text])
        result.parsed = value


_REASK = (
    "That answer cannot be used: %s. Answer again with the JSON value only, "
    "valid under the schema, and no other text."
)


def _as_messages(messages):
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return list(messages)


def _with_instruction(messages, schema):
    """The messages with the schema stated in the system message."""
    text = "Answer with a JSON value only, valid under this JSON schema:\n" + json.dumps(schema)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [dict(messages[0], content=messages[0]["content"] + "\n\n" + text)] + messages[1:]
    return [{"role": "system", "content": text}] + messages


def _json_in(text):
    """The JSON value of an answer: whole, in a code fence, or first in the text.

    Models add a fence or a sentence around the JSON; the first object or
    array in the text is taken when the whole is not JSON.
    """
    text = text.strip()
    fenced = re.search(r"(?s)```(?:json)?[ \t]*\r?\n(.*?)\r?\n?```", text, re.I)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return _loads(text)
    except ValueError as exc:
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if not starts:
            raise
        try:
            return json.JSONDecoder().raw_decode(text, min(starts))[0]
        except (ValueError, RecursionError):
            raise exc from None


# JSON Schema's type names and the Python types json.loads makes of them.
_JSON_TYPES = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def _schema_problem(schema, value, where="the answer"):
    """What is wrong with ``value`` under the basic structure of ``schema``, or None.

    Checked: ``type`` (a name or a list of names), ``enum`` and ``const``,
    and for an object its ``required`` keys and the ``type``, ``enum`` and
    ``const`` of each property, one level down. Not a full JSON Schema
    validator: for more, pass validate=.
    """
    problem = _value_problem(schema, value, where)
    if problem or not isinstance(value, dict):
        return problem
    for name in schema.get("required") or ():
        if name not in value:
            return "%s lacks the required key %r" % (where, name)
    properties = schema.get("properties")
    for name, sub in (properties.items() if isinstance(properties, dict) else ()):
        if name in value and isinstance(sub, dict):
            problem = _value_problem(sub, value[name], "%r" % name)
            if problem:
                return problem
    return None


def _value_problem(schema, value, where):
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if isinstance(kinds, list) and all(kind in _JSON_TYPES for kind in kinds):
        fits = any(isinstance(value, _JSON_TYPES[kind]) for kind in kinds) or (
            "integer" in kinds and isinstance(value, float) and value.is_integer())  # 3.0 is an integer
        if not fits or isinstance(value, bool) and "boolean" not in kinds:  # True is no number here
            return "%s is %s, not %s" % (where, _json_kind(value), " or ".join(kinds))
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return "%s is %s, not one of %s" % (where, json.dumps(value)[:80], json.dumps(schema["enum"])[:200])
    if "const" in schema and value != schema["const"]:
        return "%s is %s, not %s" % (where, json.dumps(value)[:80], json.dumps(schema["const"])[:80])
    return None


def _json_kind(value):
    for kind in ("boolean", "integer", "number", "string", "array", "object", "null"):
        if isinstance(value, _JSON_TYPES[kind]):
            return "a string" if kind == "string" else "an " + kind if kind[0] in "aeio" else "a " + kind
    return type(value).__name__



# -- Internals: batches ------------------------------------------------------
#
# batch() keeps up to `workers` requests in flight on the client's pool and
# yields in input order, reading the input only as far as that needs. With
# an output file, each finished item is one line in the OpenAI Batch output
# format (https://platform.openai.com/docs/guides/batch), appended whole,
# flushed and synced before it counts as done; a rerun reads the file back
# and sends only what is missing. Errors that would fail every item stop the
# batch and are not recorded (a rerun sends those items again); any other
# error is recorded for its item.

_BATCH_AHEAD = 4  # items held ahead of the next one to yield, per worker
_BATCH_URLS = {
    "/v1/chat/completions": "chat", "/chat/completions": "chat",
    "/v1/embeddings": "embeddings", "/embeddings": "embeddings",
}
# What would fail every item: the batch stops.
_BATCH_STOPPERS = (ConnectionFailed, AuthenticationError, UnknownModel, EndpointNotFound, ConfigurationError)
# Per-call options that are no payload, and what a batch cannot do per item.
_BATCH_REFUSED = ("schema", "validate", "reask", "stream", "images")


class _Batch:
    """One run of Client.batch()."""

    def __init__(self, client, workers, output, model, timeout, stream_timeout, retry_errors, params):
        self.client = client
        self.workers = _count("workers", workers, 1)
        self.model = model
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        for name in _BATCH_REFUSED:
            if name in params:
                raise ConfigurationError("batch() takes no %s=: each item is one plain request" % name)
        _check_params(params)
        self.params = params
        self.stop = threading.Event()  # set to cancel the calls in flight
        self.lock = threading.Lock()  # the output file, and the calls in flight
        self.calls = set()
        self.path = None if output is None else os.fspath(output)
        self.retry_errors = retry_errors
        self.done = {}  # custom_id -> (offset, length) of its line in the output file
        self.file = None

    def run(self, items):
        if isinstance(items, (list, tuple)):  # known whole: duplicates are said before anything is sent
            seen = set()
            for index, item in enumerate(items):
                custom_id = _item_id(item, index)
                if custom_id in seen:
                    raise ConfigurationError("the custom_id %r is in the input twice (item %d)" % (custom_id, index))
                seen.add(custom_id)
        return self.results(items)

    def results(self, items):
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        if self.path is not None:
            self.open()
            self.resume(self.retry_errors)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bor-batch")
        window = collections.deque()  # [index, custom_id, None (not sent yet), a Future or the BatchItem]
        backlog = collections.deque()  # (entry, kind, body) of the items read and not sent yet
        flying = set()
        seen = set()
        source = enumerate(items)
        exhausted, failure, finished = False, None, False
        try:
            while True:
                while not exhausted and failure is None and len(window) < self.workers * _BATCH_AHEAD:
                    try:
                        index, item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    try:
                        custom_id, kind, body = _batch_request(item, index, self.model, self.params)
                        if custom_id in seen:
                            raise ConfigurationError("the custom_id %r is in the input twice (item %d)"
                                                     % (custom_id, index))
                    except ConfigurationError as exc:
                        failure = exc
                        break
                    seen.add(custom_id)
                    if custom_id in self.done:
                        window.append([index, custom_id, self.recorded(index, custom_id, kind, body)])
                        continue
                    entry = [index, custom_id, None]
                    window.append(entry)
                    backlog.append((entry, kind, body))
                while backlog and failure is None and len(flying) < self.workers:
                    entry, kind, body = backlog.popleft()
                    entry[2] = pool.submit(self.send, entry[0], entry[1], kind, body)
                    flying.add(entry[2])
                yielded = False
                while window and (isinstance(window[0][2], BatchItem) or window[0][2] is not None
                                  and window[0][2].done()):
                    yielded = True
                    entry = window.popleft()
                    flying.discard(entry[2])
                    item = entry[2] if isinstance(entry[2], BatchItem) else entry[2].result()
                    if isinstance(item.error, _BATCH_STOPPERS) and failure is None:
                        failure = item.error
                    if failure is None:
                        yield item
                if failure is not None and not flying:
                    raise failure
                if not window and exhausted:
                    finished = True
                    return
                if failure is not None and not flying:
                    raise failure
                if yielded:
                    continue  # read and send more before waiting: a worker may be free
                if flying:
                    done, _ = wait(flying, return_when=FIRST_COMPLETED)
                    flying -= done
                    for future in done:
                        item = future.result()
                        if isinstance(item.error, _BATCH_STOPPERS) and failure is None:
                            failure = item.error  # no new item starts; those in flight finish
        finally:
            if not finished and failure is None:  # Ctrl-C, or the caller left the loop
                self.cancel()
            pool.shutdown(wait=True)
            if self.file is not None:
                self.file.close()

    def cancel(self):
        """Stop the calls in flight: their sockets are shut, their waits end."""
        self.stop.set()
        with self.lock:
            calls = list(self.calls)
        for call in calls:
            if call.watchdog is not None:
                call.watchdog.fire()

    def send(self, index, custom_id, kind, body):
        """Run one item (in a worker); record it unless it stops the batch."""
        start = time.monotonic()
        item = BatchItem(index, custom_id)
        call = None
        try:
            if kind == "chat":
                model = body.pop("model", None) or self.model
                messages = body.pop("messages")
                call = self.client._call(messages, model, None, body, False, self.timeout, self.stream_timeout)
                call.stop = self.stop
                with self.lock:
                    self.calls.add(call)
                item.result = self.client._chat(call)
                record = {"status_code": 200, "request_id": None, "body": item.result.raw}
            else:
                inputs = body.get("input")
                body["model"] = body.get("model") or self.model or self.client.model
                if not body["model"]:
                    raise ConfigurationError("no model given: pass model= to Client() or to batch(), or set OPENAI_MODEL")
                _check_params(body)
                call = _Call(_dumps(body).encode("utf-8"), body["model"], timeout=self.client._timeout(self.timeout),
                             limit=self.client._limit(self.stream_timeout))
                call.embeddings, call.stop = True, self.stop
                with self.lock:
                    self.calls.add(call)
                item.result, data = self.client._embed(call, len(inputs) if isinstance(inputs, list) else 1)
                record = {"status_code": 200, "request_id": None, "body": data}
            error = None
        except _Cancelled:
            return item
        except OpenAICompatError as exc:
            item.error = exc
            if self.stop.is_set() or isinstance(exc, _BATCH_STOPPERS):
                return item  # cancelled by us, or failing every item: a rerun sends it again
            record, error = _error_record(exc)
        finally:
            if call is not None:
                with self.lock:
                    self.calls.discard(call)
                item.attempts = call.attempts
            item.elapsed = time.monotonic() - start
        if self.file is not None:
            self.write({"id": "batch_req_" + os.urandom(12).hex(), "custom_id": custom_id, "response": record,
                        "error": error})
        return item

    def open(self):
        """Open the output to append, held by this run alone (where the system can lock files)."""
        if self.file is not None:
            self.file.close()
        try:
            self.file = open(self.path, "ab")
        except OSError as exc:
            raise ConfigurationError("cannot write the output file %r: %s" % (self.path, exc.strerror)) from None
        if fcntl is not None:
            try:
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.close()
                raise ConfigurationError(
                    "another batch is writing %r: wait for it, or give another output file" % self.path
                ) from None

    def write(self, record):
        """Append one line whole; it counts as done once synced (a sync outside
        the lock takes the lines of the workers that wrote meanwhile too)."""
        line = (_dumps(record) + "\n").encode("utf-8")
        try:
            with self.lock:
                self.file.write(line)
                self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as exc:  # a full disk: it would fail every item
            raise ConfigurationError("cannot write the output file %r: %s" % (self.path, exc.strerror)) from None

    def resume(self, retry_errors):
        """Read what an earlier run left in the output file, a line at a time; drop a torn last line.

        Only the ids and where their lines are stay in memory.
        """
        failed, offset = set(), 0
        try:
            with open(self.path, "rb") as f:
                for number, line in enumerate(f, 1):
                    if not line.endswith(b"\n"):  # cut by a crash while it was written
                        log.debug("dropping a torn last line of %s", self.path)
                        self.file.truncate(offset)
                        os.fsync(self.file.fileno())
                        break
                    custom_id, failure = _output_line(line, number, self.path)
                    if custom_id in self.done:
                        raise ConfigurationError("the custom_id %r is in %r twice" % (custom_id, self.path))
                    self.done[custom_id] = (offset, len(line) - 1)
                    if failure:
                        failed.add(custom_id)
                    offset += len(line)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigurationError("cannot read the output file %r: %s" % (self.path, exc.strerror)) from None
        if retry_errors and failed:
            self.rewrite(failed)

    def rewrite(self, failed):
        """The output without the lines of failed items, swapped in atomically."""
        done, self.done, offset = self.done, {}, 0
        temporary = self.path + ".tmp"
        try:
            with open(self.path, "rb") as source, open(temporary, "wb") as f:
                for custom_id, (start, length) in sorted(done.items(), key=lambda pair: pair[1][0]):
                    if custom_id in failed:
                        continue
                    source.seek(start)
                    f.write(source.read(length + 1))
                    self.done[custom_id] = (offset, length)
                    offset += length + 1
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ConfigurationError("cannot rewrite the output file %r: %s" % (self.path, exc.strerror)) from None
        if hasattr(os, "O_DIRECTORY"):  # the rename itself made durable (POSIX)
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self.open()  # the new file, held as the old one was

    def recorded(self, index, custom_id, kind, body):
        """The BatchItem of an item finished by an earlier run, read back from the file.

        An error answer is classified again with what the item asks (tools,
        images), as it was when it arrived.
        """
        offset, length = self.done[custom_id]
        with open(self.path, "rb") as f:
            f.seek(offset)
            record = _loads(f.read(length))
        item, request = BatchItem(index, custom_id), body
        response, error = record.get("response"), record.get("error")
        body = _dig(response, "body")
        status = _dig(response, "status_code")
        if isinstance(error, dict):
            cls = globals().get(str(error.get("code")))
            cls = cls if isinstance(cls, type) and issubclass(cls, OpenAICompatError) else OpenAICompatError
            item.error = cls(str(error.get("message", "")))
        elif status >= 400:
            call = _Call(None, request.get("model") or self.model or self.client.model)
            call.embeddings = kind == "embeddings"
            call.tools = _tool_names(request.get("tools"), request.get("functions"))
            messages = request.get("messages")
            call.images = isinstance(messages, list) and _lift_urls(messages, [], "")[1]
            item.error = self.client._error(status, body, call, "the output file %s" % self.path)
        elif isinstance(_dig(body, "data"), list):
            item.result = _embeddings(body, len(body["data"]), self.path)
        else:
            item.result = _parse_completion(body, "the output file %s" % self.path)
        return item


def _item_id(item, index):
    if not isinstance(item, dict) or "custom_id" not in item:
        return "item-%d" % index
    if not isinstance(item["custom_id"], str) or not item["custom_id"]:
        raise ConfigurationError("item %d has the custom_id %s: a custom_id is a non-empty string"
                                 % (index, _finish(repr(item["custom_id"]), _EXCERPT_LIMIT)))
    return item["custom_id"]


def _batch_request(item, index, model, params):
    """(custom_id, "chat" or "embeddings", the body) of one input item."""
    custom_id = _item_id(item, index)
    if isinstance(item, str):
        body = {"messages": [{"role": "user", "content": item}]}
        kind = "chat"
    elif isinstance(item, list):
        body, kind = {"messages": item}, "chat"
    elif isinstance(item, dict) and ("body" in item or "url" in item):
        url = item.get("url")
        if str(item.get("method", "POST")).upper() != "POST" or not isinstance(url, str) or url not in _BATCH_URLS:
            raise ConfigurationError(
                "item %d (%s) asks for %s %s: a batch sends POST /v1/chat/completions or /v1/embeddings"
                % (index, custom_id, item.get("method", "POST"), item.get("url"))
            )
        if not isinstance(item.get("body"), dict):
            raise ConfigurationError("item %d (%s) has no body object" % (index, custom_id))
        body, kind = dict(item["body"]), _BATCH_URLS[item["url"]]
    elif isinstance(item, dict) and ("messages" in item or "prompt" in item):
        body = {key: value for key, value in item.items() if key not in ("custom_id", "prompt")}
        if "prompt" in item:
            body["messages"] = [{"role": "user", "content": item["prompt"]}]
        kind = "chat"
    else:
        raise ConfigurationError(
            "item %d is not a prompt, a list of messages or a request in the OpenAI Batch format: %s"
            % (index, _finish(repr(item), _EXCERPT_LIMIT))
        )
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, (str, list)) or isinstance(messages, list) and not all(
            isinstance(message, dict) and "role" in message for message in messages
        ):
            raise ConfigurationError("item %d (%s) has no messages (a list of dicts with a role)" % (index, custom_id))
    else:
        inputs = body.get("input")
        if not isinstance(inputs, (str, list)) or isinstance(inputs, list) and not all(
            isinstance(text, str) for text in inputs
        ):
            raise ConfigurationError("item %d (%s) has no input (a string or a list of strings)" % (index, custom_id))
    for name, value in params.items():
        body.setdefault(name, value)
    if model and "model" not in body:
        body["model"] = model
    for name in _BATCH_REFUSED:
        if name in body:
            raise ConfigurationError("item %d (%s) asks for %s, which a batch does not do" % (index, custom_id, name))
    try:
        _check_params(body)
        _think_tags(body.get("think_tags"))
    except ConfigurationError as exc:
        raise ConfigurationError("item %d (%s): %s" % (index, custom_id, exc.detail)) from None
    return custom_id, kind, body


def _error_record(exc):
    """(response, error) of the output line of an item that failed: an HTTP
    error answer goes in ``response``, a failure without one in ``error``."""
    status = getattr(exc, "status_code", None)
    if status:
        return {"status_code": status, "request_id": None, "body": exc.body}, None
    return None, {"code": type(exc).__name__.replace("MidStream", "").lstrip("_"), "message": str(exc)}


def _output_line(line, number, path):
    """(custom_id, whether it records a failure) of one line of an output file."""
    try:
        record = _loads(line)
        custom_id, response, error = record["custom_id"], record["response"], record["error"]
        if not isinstance(custom_id, str) or not (
            isinstance(_dig(response, "status_code"), int) and error is None
            or response is None and isinstance(error, dict)
        ):
            raise TypeError
    except (ValueError, TypeError, LookupError):
        raise ConfigurationError(
            "line %d of %r is not a line of a batch output: give another output file" % (number, path)
        ) from None
    return custom_id, error is not None or response["status_code"] >= 400



# -- Internals: images -------------------------------------------------------

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


def _read_image(source, max_bytes, mime=None):
    """(bytes, a name for messages) of an image source, at most max_bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the image bytes (%d bytes)" % len(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = repr(path)
        try:
            info = os.stat(path)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            raise InvalidImage("cannot read the image %s: %s" % (name, getattr(exc, "strerror", None) or exc)) from exc
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImage("the image %s is not a regular file" % name)
        if info.st_size > max_bytes:
            raise InvalidImage(_too_big(name, info.st_size, max_bytes))
        try:
            with open(path, "rb") as f:
                # The size stat said in one read; a file that grew meanwhile
                # is read on, to the limit.
                data = f.read(info.st_size)
                more = _read_limited(f, max_bytes - len(data), name)
        except OSError as exc:  # no permission, gone meanwhile, a disk error
            raise InvalidImage("cannot read the image %s: %s" % (name, exc.strerror or exc)) from exc
        if more:
            data += more
    elif hasattr(source, "read"):
        name = repr(getattr(source, "name", "the image file object"))
        data = _read_limited(source, max_bytes, name)
    elif callable(getattr(source, "save", None)):
        data, name = _saved_image(source, mime, max_bytes)
    else:
        raise InvalidImage(
            "an image must be a path, bytes, a binary file, an image object with save() "
            "or an http(s)/data URL, not %s"
            % type(source).__name__
        )
    if len(data) > max_bytes:
        raise InvalidImage(_too_big(name, len(data), max_bytes))
    if not data:
        raise InvalidImage("the image %s is empty" % name)
    return data, name


def _read_limited(source, max_bytes, name):
    """The bytes of a binary file object, to one byte past ``max_bytes`` at most.

    In pieces: ``read(n)`` sets aside n bytes at once, however short the file.
    """
    pieces, size = [], 0
    while size <= max_bytes:
        try:
            piece = source.read(min(1 << 20, max_bytes + 1 - size))
        except OSError as exc:
            raise InvalidImage("cannot read the image %s: %s" % (name, exc.strerror or exc)) from exc
        except ValueError as exc:  # a text-mode file decoding an image, or a closed file
            raise InvalidImage(
                "cannot read the image %s (%s); open it in binary mode ('rb')" % (name, type(exc).__name__)
            ) from exc
        if not piece:
            break
        if not isinstance(piece, bytes):
            raise InvalidImage("the image file object %s must be opened in binary mode ('rb')" % name)
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


# The formats an image object is saved in, by the MIME type asked for.
_SAVE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP"}


class _Full(Exception):
    """An image object wrote more than it may."""


class _BoundedBuffer(io.BytesIO):
    """A BytesIO that refuses to grow past a limit: an endless ``save()`` stops there."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def write(self, data):
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise _Full()
        return super().write(data)

    def writelines(self, lines):
        for data in lines:
            self.write(data)


def _saved_image(image, mime, max_bytes):
    """(bytes, name) of an object with ``save(fp, format=...)``, like a Pillow Image.

    Pillow itself is not imported: anything that saves itself this way works.
    Whatever ``save()`` raises is an InvalidImage (Pillow raises SyntaxError
    for a broken PNG, OSError or ValueError for a mode a format cannot hold).
    """
    kind = _SAVE_FORMATS.get((mime or "image/png").lower())
    if kind is None:
        raise InvalidImage(
            "an image object is saved as image/png, image/jpeg or image/webp, not %s" % mime
        )
    size = getattr(image, "size", None)
    name = "the %s image object%s" % (type(image).__name__, " (%sx%s)" % tuple(size) if
                                      isinstance(size, tuple) and len(size) == 2 else "")
    buffer = _BoundedBuffer(max_bytes)
    try:
        image.save(buffer, format=kind)
    except _Full:
        raise InvalidImage(_too_big(name, max_bytes + 1, max_bytes)) from None
    except Exception as exc:
        raise InvalidImage("could not save %s as %s: %s" % (name, kind, exc or type(exc).__name__)) from exc
    return buffer.getvalue(), name


def _image_list(images):
    """``images=`` as a list: one path, bytes, file or image object is one image."""
    if (
        isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, dict))
        or hasattr(images, "read")
        or callable(getattr(images, "save", None))
    ):
        return [images]
    return images


def _too_big(name, size, limit):
    return (
        "the image %s is larger than max_image_bytes (%s > %d bytes); downscale it (models see "
        "about 1-2 megapixels at most; with Pillow: img.thumbnail((1568, 1568))), save it as "
        "JPEG, or raise the limit"
    ) % (
        name,
        "at least %d" % size if size == limit + 1 else size,
        limit,
    )


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
_EXIT_SOME_FAILED = 9  # a batch that finished with items failed (or input lines refused)
_EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for Ctrl-C
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat` reports when `head` stops reading

# Errors after which a conversation cannot go on: nothing answers any more, or
# the key is refused (and the key cannot be changed from inside the session).
# Any other failure (a connection dropped mid-answer, a timeout) costs one turn.
_SESSION_ENDERS = (ConnectionRefused, AuthenticationError)

# What a terminal acts on instead of showing: the C0 and C1 control characters
# and DEL (ESC and CSI start sequences that move the cursor, erase lines, set
# the window title or write the clipboard through OSC 52; CR and BS go back
# over what is shown), and the bidirectional overrides that reorder a line.
# Tab only moves forward, so it stays; newline stays where text has lines.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL_IN_TEXT = "[%s]" % _CONTROLS  # compiled on first use, not at import
_CONTROL_IN_LINE = "[\n%s]" % _CONTROLS

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
            client = Client(
                args.base_url, args.api_key, args.model, timeout=args.timeout, stream_timeout=args.stream_timeout
            )
            if args.command == "batch":
                return _cli_batch(client, args, err)
            if args.command == "models":
                if args.long:
                    return _cli_models_long(client, out)
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
    common.add_argument("--stream-timeout", type=float, help="seconds one call may take in all")
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
    chat.add_argument("--schema", metavar="FILE.json",
                      help="ask for JSON valid under this JSON schema; print the validated JSON")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    models = commands.add_parser("models", parents=[common], help="list the models the endpoint serves")
    models.add_argument("--long", action="store_true",
                        help="with each model's context window, vision, tools and whether it is loaded")
    batch = commands.add_parser("batch", parents=[common], help="run a JSONL file of requests, resumably")
    batch.add_argument("input", help="JSONL: OpenAI Batch requests, objects with messages or prompt, or JSON "
                                     "strings; - reads stdin")
    batch.add_argument("-o", "--output", required=True,
                       help="the JSONL file of results (OpenAI Batch output); run again to resume")
    batch.add_argument("--workers", type=int, default=4, help="requests at once (default 4)")
    batch.add_argument("--retry-errors", action="store_true", help="send again the items recorded as errors")
    doctor = commands.add_parser("doctor", parents=[common], help="check the set-up step by step")
    doctor.add_argument("--vision", action="store_true", help="also check that an image is accepted")
    args = parser.parse_args(argv)
    if args.command == "chat":
        args.interactive = args.interactive or (args.prompt is None and _isatty(sys.stdin))
        if args.interactive and (args.json or args.schema):
            chat.error("--json and --schema print one response; give a prompt instead of -i")
    return args


def _cli_models_long(client, out):
    """One row per model, as the server describes it; no model is loaded."""
    call = _Call(None, None, timeout=client.timeout, limit=client.stream_timeout)
    listing = client._listing(call)
    answers = {}  # each path asked once for all the models
    rows = [("MODEL", "CONTEXT", "VISION", "TOOLS", "LOADED")]
    for model, _ in listing[0]:
        info = client._read_info(model, listing, call, answers)
        rows.append((model, _window(info), _yes_no(info.vision), _yes_no(info.tools), _yes_no(info.loaded)))
    width = max(len(row[0]) for row in rows)
    for row in rows:
        out.line("%-*s  %-15s %-7s %-6s %s" % ((width,) + row))
    return 0


def _cli_batch(client, args, err):
    """The batch command: a JSONL file through Client.batch(), with progress on a terminal."""
    if args.input == "-":
        if sys.stdin is None:
            raise ConfigurationError("no input: give a file, or - with the lines on stdin")
        source, total = sys.stdin.buffer, None
    else:
        if os.path.exists(args.output) and os.path.exists(args.input) and os.path.samefile(args.input, args.output):
            raise ConfigurationError("the output %s is the input file: give another output file" % args.output)
        total = _batch_file_check(args.input)
        try:
            source = open(args.input, "rb")
        except OSError as exc:
            raise ConfigurationError("cannot read %s: %s" % (args.input, exc.strerror)) from None
    counts = {"done": 0, "failed": 0, "earlier": 0, "bad": 0, "read": 0}
    start, shown = time.monotonic(), 0.0

    def lines():
        for number, raw in enumerate(source, 1):
            counts["read"] += 1
            item = _batch_line(raw, number)
            if item is None:
                continue
            if isinstance(item, str):  # why the line is refused
                counts["bad"] += 1
                err.line("line %d: %s; it is not sent" % (number, item))
                continue
            yield item

    def progress(final=False):
        elapsed = max(time.monotonic() - start, 1e-9)
        rate = (counts["done"] - counts["earlier"]) / elapsed
        text = "%d%s done, %d failed" % (counts["done"], "/%d" % total if total else "", counts["failed"])
        if counts["earlier"]:
            text += " (%d from an earlier run)" % counts["earlier"]
        if counts["bad"]:
            text += ", %d bad lines" % counts["bad"]
        text += ", %.1f/s" % rate
        if total and rate > 0 and not final:
            text += ", %ds left" % ((total - counts["done"]) / rate)
        return text + (" in %.1fs" % elapsed if final else "")

    try:
        with source:
            batch = client.batch(lines(), workers=_count("--workers", args.workers, 1), output=args.output,
                                 retry_errors=args.retry_errors)
            for item in batch:
                counts["done"] += 1
                counts["failed"] += item.error is not None
                counts["earlier"] += item.attempts == 0
                if err.tty and time.monotonic() - shown > 0.2:
                    shown = time.monotonic()
                    err.write("\r\x1b[K" + progress())
    finally:
        if err.tty:
            err.write("\r\x1b[K")
            err.at_line_start = True
        if counts["read"]:  # not for a batch that could not start (its output file, say)
            err.line(progress(final=True))
    return _EXIT_SOME_FAILED if counts["failed"] or counts["bad"] else 0


def _batch_line(raw, number):
    """The batch item of one input line, None for a blank one, or a str saying why it is refused.

    An item without a custom_id gets ``line-<number>``: stable when lines
    before it are fixed or removed, so that a rerun resumes.
    """
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "not UTF-8"
    if not text:
        return None
    try:
        item = _loads(text)
    except ValueError as exc:
        return "not JSON (%s)" % exc
    try:
        json.dumps(item, allow_nan=False)
    except ValueError:
        return "it holds NaN or an infinity, which JSON cannot carry"
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        return "a JSON %s, not a request, an object with messages or prompt, or a string" % type(item).__name__
    item.setdefault("custom_id", "line-%d" % number)
    try:
        _batch_request(item, number, None, {})
    except ConfigurationError as exc:
        return exc.detail.replace("item %d " % number, "it ", 1)
    return item


def _batch_file_check(path):
    """The number of lines to run in a batch input file; a custom_id twice is said before anything is sent."""
    seen, count = set(), 0
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                item = _batch_line(raw, number)
                if isinstance(item, dict):
                    count += 1
                    if item["custom_id"] in seen:
                        raise ConfigurationError("%s: line %d has the custom_id %r of an earlier line"
                                                 % (path, number, item["custom_id"]))
                    seen.add(item["custom_id"])
    except OSError as exc:
        raise ConfigurationError("cannot read %s: %s" % (path, exc.strerror)) from None
    return count


def _window(info):
    """"now/most" tokens of a model's context window, "-" where not said."""
    now, most = info.context_length, info.max_context_length
    if now is None and most is None:
        return "-"
    return "%s/%s" % (now or "-", most or "-")


def _yes_no(value):
    return "-" if value is None else "yes" if value else "no"


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
    return re.sub(_CONTROL_IN_LINE if one_line else _CONTROL_IN_TEXT, _written_out, text)


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
        """Write one whole line; whatever it holds shows and stays on it, secrets cut."""
        self.end_line()
        self.write(_visible(_finish(text, _MESSAGE_LIMIT * 2), one_line=True) + "\n")

    def end_line(self):
        """Finish a line left open by an answer."""
        if self._cr:
            self._cr = False
            self.write("\\r")
        if not self.at_line_start:
            self.write("\n")

    def write(self, text, *, dim=False):
        if not text or self.stream is None:  # None: started with the descriptor closed
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


def _schema_file(path):
    """The JSON schema in a file, for --schema."""
    try:
        with open(path, "rb") as f:
            schema = _loads(f.read(_ERROR_BODY_LIMIT))
    except (OSError, ValueError) as exc:
        raise ConfigurationError("--schema %s: %s" % (path, getattr(exc, "strerror", None) or exc)) from None
    if not isinstance(schema, dict):
        raise ConfigurationError("--schema %s holds a JSON %s, not a schema object" % (path, type(schema).__name__))
    return schema


def _cli_chat(client, args, out, err):
    chat = _Chat(client, args, out, err)
    prompt = args.prompt
    if prompt == "-" or (prompt is None and not args.interactive):
        if sys.stdin is None:  # started with the descriptor closed
            raise ConfigurationError("no prompt: give one, or - with the prompt on stdin")
        prompt = sys.stdin.read()
    if args.interactive:
        return chat.converse(prompt)
    if args.json or args.schema:
        params = dict(chat.params)
        if args.schema:
            params["schema"] = _schema_file(args.schema)
        result = client.chat(chat.messages(chat.user_message(prompt)), model=chat.model, **params)
        text = json.dumps(result.parsed if args.schema else result.raw, indent=2, ensure_ascii=False)
        if out.tty:  # JSON escapes C0 controls itself; C1 and bidi ones too here, still as JSON
            text = re.sub(_CONTROL_IN_TEXT, lambda match: "\\u%04x" % ord(match.group()), text)
        out.write(text + "\n")
        for warning in result.warnings:
            err.line("warning: %s" % warning)
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
            self.ok, self.bad, self.note = "✓", "✗", "!"
        except (LookupError, UnicodeEncodeError):
            self.ok, self.bad, self.note = "ok  ", "FAIL", "note"

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
        client = Client(
            base_url, args.api_key, args.model, timeout=args.timeout, stream_timeout=args.stream_timeout, max_retries=0
        )
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
        self.say(True, "a short chat works (%.2fs): %r" % (time.monotonic() - start, _finish(result.text, 40)))
        self.check_stream(client)
        self.check_model(client)
        if args.vision:
            self.check_vision(client)
        return 1 if self.failed else 0

    def check_model(self, client):
        """What the server says of the model, and a fix for a window left at a small default."""
        try:
            info = client.model_info()
        except UnknownModel:  # served, but not listed: nothing to read
            self.out.line("%s the server lists nothing about %r (it is not in GET /models)" % (
                self.note, client.model))
            return True
        except OpenAICompatError as exc:
            return self.say(False, "what the server says of the model could not be read: %s" % exc)
        self.say(True, "%s says: context window %s (now/most), vision %s, tools %s, reasoning %s, loaded %s" % (
            info.server or "the server", _window(info), _yes_no(info.vision), _yes_no(info.tools),
            _yes_no(info.reasoning), _yes_no(info.loaded)))
        now, most = info.context_length, info.max_context_length
        if now and most and now <= 8192 and most >= 4 * now:
            self.out.line("%s the window is %d tokens, a server default far below the %d the model supports: %s" % (
                self.note, now, most, _CONTEXT_FIXES.get(info.server, _CONTEXT_FIXES[None])))
        return True

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
                error.status_code, _finish(error.message, 200),
                "check OPENAI_API_KEY or --api-key" if self.has_key else "set OPENAI_API_KEY or --api-key"))
            return None
        if error is not None:
            self.say(False, "GET /models failed: %s" % error)
            return []
        plural = "" if len(served) == 1 else "s"
        self.say(True, "the path is right (GET /models lists %d model%s)" % (len(served), plural))
        self.say(True, self.check_key(client))
        return served

    def check_key(self, client):
        """What is known of the key: only a refusal without it shows it was checked."""
        if not self.has_key:
            return "the server asked for no key"
        # "" rather than None: no key at all, not the one from the environment.
        keyless = Client(
            client.base_url,
            "",
            client.model,
            timeout=self.args.timeout,
            stream_timeout=client.stream_timeout,
            max_retries=0,
        )
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
                with Client(candidate, self.args.api_key, timeout=5, max_retries=0) as probe:
                    probe.models()
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
                with Client(url, self.args.api_key, timeout=3, connect_timeout=1, max_retries=0) as probe:
                    models = probe.models()
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

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    sys.exit(main())
