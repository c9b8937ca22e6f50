"""The client: one :class:`Client` per daemon, talking HTTP with httpx.

Generation and embeddings go to the daemon's OpenAI routes (``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``), models to its Ollama routes (``/api/tags``,
``/api/pull``, ``/api/generate`` to load), processes and training tasks to its own ``/os``
routes. Example::

    from llmasos import Client

    with Client() as client:                       # http://127.0.0.1:8080, or $LLMASOS_HOST
        print(client.generate_text("Name three colours.", max_tokens=32, seed=1).text)
        for chunk in client.chat([{"role": "user", "content": "Hi"}], stream=True):
            print(chunk.text, end="", flush=True)
"""
from __future__ import annotations

import base64
import json
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import (Any, Callable, Dict, Generic, Iterator, List, Literal, Mapping, Optional, Sequence, Type,
                    TypeVar, Union, overload)
from urllib.parse import quote, urlsplit

import httpx

from .errors import ConnectionFailed, LLMasOSError, StreamError, error_from_response, error_from_stream
from .types import (BatchTask, Chunk, Completion, Message, ModelInfo, ProcessInfo, PullProgress, Task, TaskStatus,
                    TrainingTask, Usage)

__all__ = ["Client", "Model", "Stream", "DEFAULT_BASE_URL", "DEFAULT_MODEL", "GENERATION_OPTIONS"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
#: The model a request uses when neither the call nor the client names one (the daemon's
#: default model, as ``scripts/setup`` installs it).
DEFAULT_MODEL = "smollm2-135m-instruct:q4_1"
#: The keyword options :meth:`Client.generate_text` and :meth:`Client.chat` accept, with the
#: daemon's ``/v1`` names and ranges (docs/api.md); any other name is a TypeError here, since
#: the daemon would silently ignore it.
GENERATION_OPTIONS = frozenset({
    "max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
    "frequency_penalty", "seed", "stop", "logit_bias", "user", "priority",
})
# The daemon's limit on inputs per /v1/embeddings request; longer lists go in several.
_EMBED_BATCH = 2048

T = TypeVar("T")
Messages = Sequence[Union[Message, Mapping[str, Any]]]


def _normalise_base_url(value: str) -> str:
    """The daemon's address as a URL without a trailing slash. ``host`` or ``host:port`` (as
    OLLAMA_HOST is read) mean http, and port 8080 when none is given.

    >>> _normalise_base_url("localhost"), _normalise_base_url("10.0.0.2:9000"), _normalise_base_url("https://h/")
    ('http://localhost:8080', 'http://10.0.0.2:9000', 'https://h')
    """
    value = value.strip()
    if not value:
        raise ValueError("the daemon's address is empty")
    has_scheme = "://" in value
    parts = urlsplit(value if has_scheme else "http://" + value)
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not an address of the daemon: {value!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) address of the daemon: {value!r}")
    netloc = parts.netloc if has_scheme or port is not None else parts.netloc + ":8080"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


class Stream(Generic[T]):
    """The items of a response still arriving: iterate it, and close it (or use ``with``) when
    leaving early so the daemon stops the generation. Iterating to the end closes it.

    Errors the daemon reports mid-stream raise :class:`~llmasos.StreamError`; a broken
    connection raises :class:`~llmasos.ConnectionFailed`.
    """

    def __init__(self, items: Iterator[T], response: httpx.Response) -> None:
        self._items = items
        self._response = response

    def __iter__(self) -> "Stream[T]":
        return self

    def __next__(self) -> T:
        try:
            return next(self._items)
        except httpx.TransportError as e:
            self.close()
            raise ConnectionFailed(f"the stream broke: {e}") from e
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stops reading and closes the connection (the daemon cancels what it was streaming)."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()
        self._response.close()

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


def _decode_json(response: httpx.Response, route: str) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise LLMasOSError(f"{route} answered {response.status_code} with a body that is not JSON: "
                           f"{response.text[:200]!r}", status=response.status_code) from e


def _bad_shape(route: str, what: str, body: Any) -> LLMasOSError:
    return LLMasOSError(f"{route} answered without {what}: {json.dumps(body)[:300]}", body=body)


def _stream_object(text: str, what: str) -> Dict[str, Any]:
    """One JSON object of a stream; an object carrying ``error`` raises it as StreamError."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise StreamError(f"a stream {what} is not JSON: {text[:200]!r}") from e
    if not isinstance(obj, dict):
        raise StreamError(f"a stream {what} is not a JSON object: {text[:200]!r}")
    if "error" in obj:
        raise error_from_stream(obj)
    return obj


def _sse_events(response: httpx.Response) -> Iterator[Dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to ``data: [DONE]``. An event with an
    ``error`` raises it; a stream that ends before ``[DONE]`` raises StreamError."""
    data: List[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue
        if line or not data:
            continue  # comments, other fields, blank lines between events
        payload = "\n".join(data)
        data = []
        if payload == "[DONE]":
            return
        yield _stream_object(payload, "event")
    raise StreamError("the stream ended before its last event (data: [DONE])")


def _ndjson_lines(response: httpx.Response) -> Iterator[Dict[str, Any]]:
    """The objects of an NDJSON stream; a line with an ``error`` raises it."""
    for line in response.iter_lines():
        if line.strip():
            yield _stream_object(line, "line")


def _chunks(events: Iterator[Dict[str, Any]], chat: bool) -> Iterator[Chunk]:
    """Chunks of an OpenAI stream (choice 0): the text pieces, then the finish reason, then
    the usage. Events with nothing of these (the chat role announcement) are skipped."""
    for event in events:
        usage = Usage.from_json(event.get("usage"))
        choices = event.get("choices") or []
        if not choices:
            if usage is not None:
                yield Chunk("", None, usage, event)
            continue
        choice = choices[0]
        if chat:
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, Mapping) else None
        else:
            text = choice.get("text")
        finish_reason = choice.get("finish_reason")
        if text or finish_reason or usage is not None:
            yield Chunk(str(text or ""), finish_reason, usage, event)


def _decode_embedding(data: Any) -> List[float]:
    """An embedding given as base64 little-endian float32 (or as a list of numbers)."""
    if isinstance(data, list):
        return [float(x) for x in data]
    raw = base64.b64decode(data, validate=True)
    if len(raw) % 4:
        raise LLMasOSError(f"an embedding of {len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class Model:
    """A model loaded in the daemon (see :meth:`Client.load_model`), with the client's calls
    bound to it::

        model = client.load_model("smollm2-135m-instruct:q4_1")
        print(model.predict("What is the capital of France?", max_tokens=16, temperature=0))
        answers = model.predict(["2+2?", "3+3?"], max_tokens=8)   # run side by side
    """

    def __init__(self, client: "Client", name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    @overload
    def predict(self, inputs: str, *, raw: bool = ..., max_workers: int = ..., **options: Any) -> str: ...

    @overload
    def predict(self, inputs: Sequence[str], *, raw: bool = ..., max_workers: int = ...,
                **options: Any) -> List[str]: ...

    def predict(self, inputs: Union[str, Sequence[str]], *, raw: bool = False, max_workers: int = 4,
                **options: Any) -> Union[str, List[str]]:
        """The generated text for one prompt, or a list of texts for a list of prompts, in order.

        Each prompt goes through the model's chat template as a user message, as
        ``llmasos run`` does (``raw=True``: fed as is, a plain completion). A list is sent
        ``max_workers`` requests at a time, so the daemon runs them in one batched step.
        ``options`` are those of :meth:`Client.generate_text`.

        >>> model.predict(["Say yes.", "Say no."], max_tokens=4, temperature=0)  # doctest: +SKIP
        ['Yes.', 'No.']
        """
        if isinstance(inputs, str):
            return self.client.generate_text(inputs, self.name, raw=raw, stream=False, **options).text
        prompts = list(inputs)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"predict: inputs[{i}] is {type(p).__name__}, not a str prompt")
        if max_workers < 1:
            raise ValueError("predict: max_workers must be at least 1")
        if len(prompts) <= 1 or max_workers == 1:
            return [self.client.generate_text(p, self.name, raw=raw, stream=False, **options).text for p in prompts]
        with ThreadPoolExecutor(max_workers=min(max_workers, len(prompts))) as pool:
            return list(pool.map(lambda p: self.client.generate_text(p, self.name, raw=raw, stream=False, **options).text,
                                 prompts))

    def embed(self, texts: Union[str, Sequence[str]]) -> List[List[float]]:
        """:meth:`Client.embed` with this model."""
        return self.client.embed(texts, self.name)

    def unload(self) -> None:
        """Asks the daemon to unload the model once its running requests end."""
        self.client._post_json("/api/generate", "POST /api/generate", {"model": self.name, "keep_alive": 0,
                                                                      "stream": False})


class Client:
    """A connection to an LLMasOS daemon (``llmasos serve``).

    Args:
        base_url: the daemon's address; default ``$LLMASOS_HOST`` or ``http://127.0.0.1:8080``
            (``host`` or ``host:port`` work too: http and port 8080 are assumed).
        api_key: sent as ``Authorization: Bearer KEY``; default ``$LLMASOS_API_KEY``.
        model: the model for calls that name none; default ``$LLMASOS_MODEL`` or
            :data:`DEFAULT_MODEL`.
        timeout: seconds to wait for the daemon to connect and for each read (a stream's next
            piece included); None waits forever.
        transport: an httpx transport, for tests or a proxy.

    The client is thread-safe; close it (or use ``with``) to release its connections.

    Example::

        client = Client("http://127.0.0.1:8080", api_key="sk-...")
        result = client.chat([{"role": "user", "content": "Hello"}], max_tokens=20, seed=7)
        print(result.text, result.finish_reason, result.usage.completion_tokens)
    """

    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None, *,
                 model: Optional[str] = None, timeout: Optional[float] = 300.0,
                 transport: Optional[httpx.BaseTransport] = None) -> None:
        self.base_url = _normalise_base_url(base_url or os.environ.get("LLMASOS_HOST") or DEFAULT_BASE_URL)
        key = api_key if api_key is not None else os.environ.get("LLMASOS_API_KEY")
        self.model = model or os.environ.get("LLMASOS_MODEL") or DEFAULT_MODEL
        headers = {"User-Agent": "llmasos-python"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Closes the client's connections."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    # --- HTTP --------------------------------------------------------------------------------

    def _send(self, method: str, path: str, route: str, *, body: Any = None,
              params: Optional[Mapping[str, str]] = None, stream: bool = False,
              timeout: Union[float, None, httpx.Timeout, object] = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        """Sends a request; an answer of 400 or more raises its typed error. ``route`` is the
        route's pattern ("GET /os/jobs/{id}"), named by NotImplementedByServer."""
        try:
            request = self._http.build_request(method, path, json=body, params=params,
                                               timeout=timeout)  # type: ignore[arg-type]
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as e:
            raise ConnectionFailed(f"{route} to {self.base_url} failed: {e}") from e
        if response.status_code >= 400:
            try:
                if stream:
                    response.read()
                text = response.text
            except httpx.TransportError as e:
                raise ConnectionFailed(f"{route}: the error answer broke off: {e}") from e
            finally:
                response.close()
            raise error_from_response(response.status_code, text, response.headers, route)
        return response

    def _get_json(self, path: str, route: str, params: Optional[Mapping[str, str]] = None) -> Any:
        return _decode_json(self._send("GET", path, route, params=params), route)

    def _post_json(self, path: str, route: str, body: Any, method: str = "POST", timeout: Any = httpx.USE_CLIENT_DEFAULT) -> Any:
        return _decode_json(self._send(method, path, route, body=body, timeout=timeout), route)

    def _stream(self, path: str, route: str, body: Any, parse: Callable[[httpx.Response], Iterator[T]]) -> Stream[T]:
        response = self._send("POST", path, route, body=body, stream=True)
        return Stream(parse(response), response)

    # --- Generation ----------------------------------------------------------------------------

    def _generation_body(self, model: Optional[str], options: Mapping[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(options) - GENERATION_OPTIONS)
        if unknown:
            raise TypeError(f"unknown generation option(s) {', '.join(unknown)}; the options are "
                            f"{', '.join(sorted(GENERATION_OPTIONS))}")
        body: Dict[str, Any] = {"model": model or self.model}
        body.update({k: v for k, v in options.items() if v is not None})
        return body

    def _complete(self, path: str, route: str, body: Dict[str, Any], chat: bool,
                  stream: bool) -> Union[Completion, Stream[Chunk]]:
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            return self._stream(path, route, body, lambda r: _chunks(_sse_events(r), chat))
        result = self._post_json(path, route, body)
        choices = result.get("choices") if isinstance(result, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise _bad_shape(route, "choices", result)
        choice = choices[0]
        if chat:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            raise _bad_shape(route, "the generated text", result)
        return Completion(text=text, finish_reason=choice.get("finish_reason"), usage=Usage.from_json(result.get("usage")),
                          model=str(result.get("model", "")), id=str(result.get("id", "")), raw=result)

    @overload
    def generate_text(self, prompt: str, model: Optional[str] = ..., *, raw: bool = ..., system: Optional[str] = ...,
                      stream: Literal[False] = ..., **options: Any) -> Completion: ...

    @overload
    def generate_text(self, prompt: str, model: Optional[str] = ..., *, raw: bool = ..., system: Optional[str] = ...,
                      stream: Literal[True], **options: Any) -> Stream[Chunk]: ...

    def generate_text(self, prompt: str, model: Optional[str] = None, *, raw: bool = False,
                      system: Optional[str] = None, stream: bool = False,
                      **options: Any) -> Union[Completion, Stream[Chunk]]:
        """Generates text for one prompt.

        The prompt goes through the model's chat template as a user message (after ``system``,
        if given), as ``llmasos run`` does; ``raw=True`` feeds it as is (a plain completion,
        ``/v1/completions``). With the same ``seed``, streamed and complete answers are equal.

        Args:
            prompt: the text.
            model: a registry reference (``name``, ``name:tag``, ``name@1.2``); default the
                client's model.
            raw: no chat template.
            system: a system message (not with ``raw``).
            stream: return a :class:`Stream` of :class:`~llmasos.Chunk` instead of waiting.
            **options: ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``min_p``,
                ``repeat_penalty``, ``presence_penalty``, ``frequency_penalty``, ``seed``,
                ``stop`` (a string or a list), ``logit_bias``, ``user``, ``priority``.

        Returns:
            A :class:`~llmasos.Completion` (``text``, ``finish_reason``, ``usage``), or with
            ``stream=True`` a :class:`Stream` of chunks.

        Raises:
            NotFound: an unknown model. BadRequest: an option out of range (``param`` names
            it), a prompt too long. TypeError: an option name this package does not know.

        Example::

            r = client.generate_text("Write a haiku about the sea.", max_tokens=40, seed=3)
            print(r.text, r.finish_reason)
            for chunk in client.generate_text("Count to five:", raw=True, stream=True):
                print(chunk.text, end="")
        """
        if not isinstance(prompt, str):
            raise TypeError(f"generate_text: prompt is {type(prompt).__name__}, not a str")
        body = self._generation_body(model, options)
        if raw:
            if system is not None:
                raise ValueError("generate_text: system cannot be used with raw=True (no template is applied)")
            body["prompt"] = prompt
            return self._complete("/v1/completions", "POST /v1/completions", body, False, stream)
        messages: List[Dict[str, Any]] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": prompt})
        body["messages"] = messages
        return self._complete("/v1/chat/completions", "POST /v1/chat/completions", body, True, stream)

    @overload
    def chat(self, messages: Messages, model: Optional[str] = ..., *, stream: Literal[False] = ...,
             **options: Any) -> Completion: ...

    @overload
    def chat(self, messages: Messages, model: Optional[str] = ..., *, stream: Literal[True],
             **options: Any) -> Stream[Chunk]: ...

    def chat(self, messages: Messages, model: Optional[str] = None, *, stream: bool = False,
             **options: Any) -> Union[Completion, Stream[Chunk]]:
        """The assistant's next message in a conversation, through the model's chat template.

        Args:
            messages: ``[{"role": "system" | "user" | "assistant", "content": "..."}, ...]``.
            model, stream, **options: as for :meth:`generate_text`.

        Example::

            history = [{"role": "system", "content": "Answer in one word."},
                       {"role": "user", "content": "Capital of Italy?"}]
            reply = client.chat(history, temperature=0)
            history.append({"role": "assistant", "content": reply.text})
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError("chat: messages must be a list of {'role': ..., 'content': ...} dicts")
        body = self._generation_body(model, options)
        body["messages"] = [dict(m) for m in messages]
        return self._complete("/v1/chat/completions", "POST /v1/chat/completions", body, True, stream)

    def embed(self, texts: Union[str, Sequence[str]], model: Optional[str] = None) -> List[List[float]]:
        """Embeddings: one vector per text, in order (a single string gives a list of one).
        Each is the model's pooled final hidden state, L2-normalised.

        Example::

            a, b = client.embed(["a cat", "a kitten"])
            similarity = sum(x * y for x, y in zip(a, b))   # cosine: the vectors have norm 1
        """
        inputs = [texts] if isinstance(texts, str) else list(texts)
        for i, t in enumerate(inputs):
            if not isinstance(t, str):
                raise TypeError(f"embed: texts[{i}] is {type(t).__name__}, not a str")
        route = "POST /v1/embeddings"
        out: List[List[float]] = []
        for start in range(0, len(inputs), _EMBED_BATCH):
            batch = inputs[start:start + _EMBED_BATCH]
            result = self._post_json("/v1/embeddings", route, {"model": model or self.model, "input": batch,
                                                               "encoding_format": "base64"})
            data = result.get("data") if isinstance(result, dict) else None
            if not isinstance(data, list) or len(data) != len(batch):
                raise _bad_shape(route, f"{len(batch)} embeddings", result)
            vectors: List[Optional[List[float]]] = [None] * len(batch)
            for item in data:
                index = item.get("index") if isinstance(item, dict) else None
                if not isinstance(index, int) or not 0 <= index < len(batch) or vectors[index] is not None:
                    raise _bad_shape(route, "one embedding per input index", result)
                vectors[index] = _decode_embedding(item.get("embedding"))
            out.extend(v for v in vectors if v is not None)
        return out

    # --- Models --------------------------------------------------------------------------------

    def list_models(self) -> List[ModelInfo]:
        """The installed models: one entry per tag (``name:tag``) and per ``name@version``.

        >>> [m.name for m in client.list_models()]  # doctest: +SKIP
        ['smollm2-135m-instruct:q4_1', 'smollm2-135m-instruct@1.0.0']
        """
        result = self._get_json("/api/tags", "GET /api/tags")
        models = result.get("models") if isinstance(result, dict) else None
        if not isinstance(models, list):
            raise _bad_shape("GET /api/tags", "models", result)
        return [ModelInfo.from_json(m) for m in models if isinstance(m, dict)]

    @overload
    def pull(self, url_or_name: str, *, url: Optional[str] = ..., digest: Optional[str] = ...,
             stream: Literal[False] = ...) -> PullProgress: ...

    @overload
    def pull(self, url_or_name: str, *, url: Optional[str] = ..., digest: Optional[str] = ...,
             stream: Literal[True]) -> Stream[PullProgress]: ...

    def pull(self, url_or_name: str, *, url: Optional[str] = None, digest: Optional[str] = None,
             stream: bool = False) -> Union[PullProgress, Stream[PullProgress]]:
        """Downloads a GGUF model into the daemon's registry (Ollama's ``/api/pull``).

        Give the http(s) URL of the file (the model is named after it), or a name with the
        URL in ``url``. ``digest`` (``sha256:HEX``) is checked before the model becomes
        visible. Without ``stream`` this waits, however long the download takes, and returns
        the last progress line (``status == "success"``); with ``stream=True`` it returns the
        progress lines as they come, and a failure raises :class:`~llmasos.StreamError`.

        Example::

            for p in client.pull("tiny", url="https://example.com/tiny.gguf", stream=True):
                print(p.status, p.completed, p.total)
        """
        body: Dict[str, Any] = {"model": url_or_name}
        if url is not None:
            body["url"] = url
        if digest is not None:
            body["digest"] = digest
        route = "POST /api/pull"
        if stream:
            body["stream"] = True
            return self._stream("/api/pull", route, body,
                                lambda r: (PullProgress.from_json(line) for line in _ndjson_lines(r)))
        body["stream"] = False
        result = self._post_json("/api/pull", route, body, timeout=httpx.Timeout(None, connect=30.0))
        if not isinstance(result, dict) or result.get("status") != "success":
            raise _bad_shape(route, "status success", result)
        return PullProgress.from_json(result)

    def load_model(self, name: Optional[str] = None, *, keep_alive: Union[int, float, str, None] = None) -> Model:
        """Loads a model in the daemon now (not on its first request) and returns it as a
        :class:`Model`. ``keep_alive``: how long it stays loaded after its last request
        (seconds, or ``"5m"``; negative: forever); default the daemon's.

        Raises NotFound for an unknown model.

        Example::

            model = client.load_model("smollm2-135m-instruct:q4_1", keep_alive="10m")
            print(model.predict("Hello!"))
        """
        name = name or self.model
        body: Dict[str, Any] = {"model": name, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        result = self._post_json("/api/generate", "POST /api/generate", body)
        if not isinstance(result, dict) or not result.get("done"):
            raise _bad_shape("POST /api/generate", "done", result)
        return Model(self, name)

    def version(self) -> str:
        """The daemon's version."""
        result = self._get_json("/api/version", "GET /api/version")
        if not isinstance(result, dict) or not isinstance(result.get("version"), str):
            raise _bad_shape("GET /api/version", "version", result)
        return str(result["version"])

    # --- Processes (/os/processes) --------------------------------------------------------------

    def processes(self, *, model: Optional[str] = None, state: Optional[str] = None,
                  tenant: Optional[str] = None) -> List[ProcessInfo]:
        """The daemon's live processes (generations and embeddings) across its loaded models,
        optionally only those of ``model`` (``name`` or ``name@version``), in ``state``
        (``queued``, ``running``, ``preempted``) or of ``tenant``.

        Raises NotImplementedByServer when the daemon has no ``/os/processes``.

        Example::

            for p in client.processes(state="running"):
                print(p.id, p.model, p.generated_tokens, p.priority)
        """
        params = {k: v for k, v in (("model", model), ("state", state), ("tenant", tenant)) if v is not None}
        result = self._get_json("/os/processes", "GET /os/processes", params=params or None)
        rows = result.get("processes") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise _bad_shape("GET /os/processes", "processes", result)
        return [ProcessInfo.from_json(r) for r in rows if isinstance(r, dict)]

    def process(self, process_id: str) -> ProcessInfo:
        """One live process by its id (``INSTANCE-PID``); NotFound once it has ended."""
        route = "GET /os/processes/{id}"
        result = self._get_json(f"/os/processes/{quote(str(process_id), safe='')}", route)
        if not isinstance(result, dict):
            raise _bad_shape(route, "a process", result)
        return ProcessInfo.from_json(result)

    def kill(self, process_id: str) -> None:
        """Kills a live process: its client's stream ends with an error saying so, and its KV
        memory is freed before the engine's next step. NotFound if it is not live.

        Example::

            for p in client.processes(tenant="batch"):
                client.kill(p.id)
        """
        route = "DELETE /os/processes/{id}"
        result = _decode_json(self._send("DELETE", f"/os/processes/{quote(str(process_id), safe='')}", route), route)
        if not isinstance(result, dict) or result.get("killed") is not True:
            raise _bad_shape(route, "killed: true", result)

    def renice(self, process_id: str, priority: int) -> ProcessInfo:
        """Sets a live process's priority (-1000..1000, higher runs first under the daemon's
        ``priority`` policy), from the engine's next step; returns the process with it.

        Example::

            client.renice("1-42", 500)
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"renice: priority must be an int, not {type(priority).__name__}")
        route = "PATCH /os/processes/{id}"
        result = self._post_json(f"/os/processes/{quote(str(process_id), safe='')}", route,
                                 {"priority": priority}, method="PATCH")
        if not isinstance(result, dict):
            raise _bad_shape(route, "a process", result)
        return ProcessInfo.from_json(result)

    # --- The scheduler (/os/scheduler) ----------------------------------------------------------

    def scheduler(self) -> List[Dict[str, Any]]:
        """Each loaded model instance's scheduling policy and parameters (``GET /os/scheduler``):
        dicts with ``instance``, ``model``, ``version``, ``policy`` and the parameters ``fair``
        (``weights``, ``default_weight``), ``rr``, ``sjf``, ``priority`` and ``preemption``, as
        docs/api.md describes.

        Example::

            for inst in client.scheduler():
                print(inst["model"], inst["policy"], inst["fair"]["weights"])
        """
        result = self._get_json("/os/scheduler", "GET /os/scheduler")
        rows = result.get("instances") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise _bad_shape("GET /os/scheduler", "instances", result)
        return [r for r in rows if isinstance(r, dict)]

    def set_scheduler(self, *, policy: Optional[str] = None, instance: Optional[int] = None,
                      **parameters: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """Changes the scheduling policy and/or its parameters (``PUT /os/scheduler``) of every
        loaded instance, or of ``instance``; what is not given stays. ``parameters`` are the
        groups ``fair``, ``rr``, ``sjf``, ``priority`` and ``preemption``, each a dict of its
        fields (``fair={"weights": {...}}`` replaces the whole table of weights). Returns the
        changed instances' new settings. BadRequest (``param`` naming the field) for an unknown
        field or a value out of range; NotFound for an instance that is not loaded.

        Example::

            client.set_scheduler(policy="fair", fair={"weights": {"acme": 1, "beta": 3}})
            client.set_scheduler(preemption={"mode": "recompute"})
        """
        body: Dict[str, Any] = dict(parameters)
        if policy is not None:
            body["policy"] = policy
        if instance is not None:
            body["instance"] = instance
        result = self._post_json("/os/scheduler", "PUT /os/scheduler", body, method="PUT")
        rows = result.get("instances") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise _bad_shape("PUT /os/scheduler", "instances", result)
        return [r for r in rows if isinstance(r, dict)]

    # --- Training tasks (/os/jobs) ---------------------------------------------------------------

    def submit_task(self, task: Task) -> str:
        """Submits a training task or a batch of prompts as a job of the daemon
        (``POST /os/jobs``); returns its id.

        The job runs on the daemon at a low priority: a training task yields to inference
        between optimiser steps, a :class:`BatchTask` keeps a few low-priority prompts in flight.
        BadRequest (with ``param`` naming the field) for a spec the daemon refuses.

        Example::

            task_id = client.submit_task(TrainingTask(model_name="smollm2-135m-instruct:q4_1",
                                                      dataset_path="/data/facts.jsonl", epochs=3))
            status = client.wait(task_id)
            print(status.state, status.adapter)
        """
        if not isinstance(task, (TrainingTask, BatchTask)):
            raise TypeError(f"submit_task: expected a TrainingTask or a BatchTask, got {type(task).__name__}")
        route = "POST /os/jobs"
        result = self._post_json("/os/jobs", route, task.to_json())
        task_id = result.get("id") if isinstance(result, dict) else None
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
            raise _bad_shape(route, "id", result)
        return str(task_id)

    def get_task_status(self, task_id: str) -> TaskStatus:
        """A task's state, progress and (once done) its adapter or error (``GET /os/jobs/{id}``)."""
        route = "GET /os/jobs/{id}"
        result = self._get_json(f"/os/jobs/{quote(str(task_id), safe='')}", route)
        if not isinstance(result, dict) or not isinstance(result.get("state"), str):
            raise _bad_shape(route, "state", result)
        return TaskStatus.from_json(result)

    def tasks(self) -> List[TaskStatus]:
        """Every task the daemon knows (``GET /os/jobs``)."""
        route = "GET /os/jobs"
        result = self._get_json("/os/jobs", route)
        rows = result.get("jobs") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise _bad_shape(route, "jobs", result)
        return [TaskStatus.from_json(r) for r in rows if isinstance(r, dict)]

    def wait(self, task_id: str, *, poll_interval: float = 1.0, timeout: Optional[float] = None) -> TaskStatus:
        """Polls a task until it has succeeded, failed or been cancelled, and returns that
        status (a failed task is returned, not raised: look at ``state`` and ``error``).
        Raises TimeoutError after ``timeout`` seconds."""
        if poll_interval <= 0:
            raise ValueError("wait: poll_interval must be positive")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.get_task_status(task_id)
            if status.done:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {status.state} after {timeout} s")
            time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))

    def cancel_task(self, task_id: str) -> TaskStatus:
        """Cancels a queued, running or paused task (``DELETE /os/jobs/{id}``) and returns its
        status after that."""
        route = "DELETE /os/jobs/{id}"
        path = f"/os/jobs/{quote(str(task_id), safe='')}"
        result = _decode_json(self._send("DELETE", path, route), route)
        if isinstance(result, dict) and isinstance(result.get("state"), str):
            return TaskStatus.from_json(result)
        return self.get_task_status(task_id)
