"""`requests` as scripts see it: Scriptling's API, answered by the runtime.

A worker has no sockets (its seccomp filter refuses every socket call), so a script's request
is a JSON-RPC request to the runtime over the worker's pipe, like `emit`; the runtime checks it
against `http_allow`, makes it with httpx and answers with the response (`scriptlib/http.py`).
This side only turns what the script passed into plain data (every value copied to exact
builtin types, `plain.py`), counts the run's requests, and turns the answer into a `Response`.

    requests.get(url, params=None, **kwargs)     requests.post(url, data=None, json=None, **kwargs)
    requests.put / patch(url, data=None, **kwargs)     requests.delete / head(url, **kwargs)
    requests.request(method, url, **kwargs)
    kwargs: params, data, json, headers, auth=(user, password), timeout=5, allow_redirects=True

A refused request (a host `http_allow` does not list) raises `requests.RequestDenied`, naming
the host and the setting; others raise `ConnectionError`, `Timeout`, `TooManyRedirects` or
`ResponseTooLarge`, all `RequestException`s (and `raise_for_status()` an `HTTPError`).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from ..._json import JSONObject
from .event_module import EventBinding, RuntimeRefused
from .plain import check_text, exact_float, exact_str, plain_json

__all__ = ["HTTP_METHODS", "Response", "build_requests_module"]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 5.0  # seconds, as Scriptling's


class RequestException(OSError):
    """The base of every error `requests` raises (as in Python's requests)."""


class ConnectionError(RequestException):
    """The server could not be reached."""


class Timeout(RequestException):
    """The request ran past its timeout (or the script's time limit)."""


class TooManyRedirects(RequestException):
    pass


class RequestDenied(RequestException):
    """The runtime refused the request: its host or address is not in `http_allow`."""


class ResponseTooLarge(RequestException):
    """The response's body was larger than `scripts.http_max_bytes`."""


class HTTPError(RequestException):
    """`raise_for_status()` on a 4xx or 5xx answer; `.response` is the answer."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


_ERRORS: dict[str, type[RequestException]] = {
    "denied": RequestDenied,
    "timeout": Timeout,
    "connection": ConnectionError,
    "redirects": TooManyRedirects,
    "too_large": ResponseTooLarge,
}


class Headers(dict[str, str]):
    """Response headers: names in lower case, looked up in any case."""

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, exact_str(name, "a header name").lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, str.__str__(name).lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, exact_str(name, "a header name").lower(), default)


class Response:
    """An HTTP answer: `status_code`, `ok`, `reason`, `url`, `headers`, `content`, `text`,
    `json()`, `raise_for_status()`; `response["status_code"]` works too (Scriptling)."""

    __slots__ = ("content", "headers", "reason", "status_code", "url")

    def __init__(
        self, status_code: int, reason: str, url: str, headers: Headers, content: bytes
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.url = url
        self.headers = headers
        self.content = content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def encoding(self) -> str:
        """The charset the Content-Type names, else utf-8."""
        _, _, params = self.headers.get("content-type", "").partition(";")
        for part in params.split(";"):
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return str(value.strip().strip('"'))
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, "replace")
        except (LookupError, ValueError, TypeError):  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            kind = "Client" if self.status_code < 500 else "Server"
            raise HTTPError(
                f"{self.status_code} {kind} Error: {self.reason} for url: {self.url}", self
            )

    def __getitem__(self, name: str) -> Any:
        name = exact_str(name, "a response field")
        if name not in ("status_code", "text", "headers", "url", "content", "reason", "ok"):
            raise KeyError(name)
        return getattr(self, name)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


def _text_pairs(value: object, what: str) -> list[tuple[str, str]]:
    """A dict (or list of pairs) of strings, copied; numbers become strings (query params)."""
    if value is None:
        return []
    copied = plain_json(value, what)
    items = [[k, v] for k, v in copied.items()] if isinstance(copied, dict) else copied
    if not isinstance(items, list):
        raise TypeError(f"{what} must be a dict")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2):
            raise TypeError(f"{what} must be a dict of names and values")
        name, raw = item
        for one in raw if isinstance(raw, list) else [raw]:
            if isinstance(one, bool) or not isinstance(one, str | int | float):
                raise TypeError(f"{what}: the value of {name!r} must be a string or a number")
            pairs.append((str(name), str(one)))
    return pairs


def _header_pairs(headers: object) -> list[list[str]]:
    out: list[list[str]] = []
    for name, value in _text_pairs(headers, "headers"):
        if not name or any(c in name + value for c in "\r\n\x00"):
            raise ValueError(f"the header {name!r} holds a line break or is empty")
        out.append([name, value])
    return out


def _body(data: object, json_value: object) -> tuple[bytes | None, str]:
    """The body to send and its default Content-Type ("" for none)."""
    if json_value is not None:
        if data is not None:
            raise TypeError("pass data= or json=, not both")
        encoded = json.dumps(plain_json(json_value, "json="), separators=(",", ":"))
        return encoded.encode("utf-8"), "application/json"
    if data is None:
        return None, ""
    if isinstance(data, bytes | bytearray):
        # Through the buffer, not bytes(data): a subclass's __bytes__ is the script's code.
        return data if type(data) is bytes else memoryview(data).tobytes(), ""
    if isinstance(data, str):
        return check_text(exact_str(data, "data="), "data=").encode("utf-8"), ""
    if isinstance(data, dict | list):
        form = urllib.parse.urlencode(_text_pairs(data, "data="))
        return form.encode("ascii"), "application/x-www-form-urlencoded"
    raise TypeError("data= must be a string, bytes, or a dict of form fields")


def _flag(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{what} must be True or False")
    return value


def _auth_header(auth: object) -> list[str]:
    pair = plain_json(auth, "auth=") if isinstance(auth, tuple | list) else None
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        raise TypeError("auth= must be a (user, password) pair of strings")
    token = base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode("ascii")
    return ["Authorization", f"Basic {token}"]


_KNOWN = frozenset({"params", "data", "json", "headers", "auth", "timeout", "allow_redirects"})
_NOT_OFFERED = {
    "verify": "TLS certificates are always verified",
    "proxies": "requests go out from the runtime, without proxies",
    "cookies": "send a Cookie header instead",
    "files": "send the body as data= instead",
    "cert": "client certificates are not offered",
    "stream": "the whole body is read (up to scripts.http_max_bytes)",
}


def build_requests_module(ctx: EventBinding) -> ModuleType:
    """`requests`, asking the runtime through `ctx` (the run's binding)."""
    urllib.parse.urlencode({"a": "b c"})  # its lazy parts, before the worker's walls go up

    def request(method: str, url: str, **kwargs: Any) -> Response:
        verb = exact_str(method, "the HTTP method").upper()
        if verb not in HTTP_METHODS:
            raise ValueError(f"the HTTP method {verb!r} is not one of {', '.join(HTTP_METHODS)}")
        for name in kwargs:
            if name in _NOT_OFFERED:
                raise TypeError(f"requests: {name}= is not supported ({_NOT_OFFERED[name]})")
            if name not in _KNOWN:
                raise TypeError(f"requests.{verb.lower()}() got an unexpected argument {name!r}")
        target = check_text(exact_str(url, "the URL"), "the URL")
        query = urllib.parse.urlencode(_text_pairs(kwargs.get("params"), "params="))
        if query:
            target = target.split("#", 1)[0]
            target += ("&" if "?" in target else "?") + query
        headers = _header_pairs(kwargs.get("headers"))
        if kwargs.get("auth") is not None:
            headers.append(_auth_header(kwargs["auth"]))
        body, content_type = _body(kwargs.get("data"), kwargs.get("json"))
        if content_type and not any(h[0].lower() == "content-type" for h in headers):
            headers.append(["Content-Type", content_type])
        limit = ctx.budget.limits.http_max_bytes
        if body is not None and len(body) > limit:
            raise ResponseTooLarge(
                f"the request body has {len(body)} bytes, more than scripts.http_max_bytes "
                f"({limit})"
            )
        timeout = exact_float(kwargs.get("timeout", DEFAULT_TIMEOUT), "timeout=")
        if not timeout > 0:
            raise ValueError("timeout= must be a number of seconds above 0")
        params: JSONObject = {
            "method": verb,
            "url": target,
            "headers": headers,
            "timeout": timeout,
            "redirects": _flag(kwargs.get("allow_redirects", True), "allow_redirects="),
        }
        if body is not None:
            params["body_b64"] = base64.b64encode(body).decode("ascii")
        ctx.budget.take_request()
        try:
            answer = ctx.ask("http", params, "")
        except RuntimeRefused as refused:
            data = refused.data if isinstance(refused.data, dict) else {}
            raise _ERRORS.get(str(data.get("kind")), RequestException)(str(refused)) from None
        return _response(answer)

    def verb(name: str, *, body: bool) -> Callable[..., Response]:
        def send(url: str, **kwargs: Any) -> Response:
            return request(name, url, **kwargs)

        def send_body(url: str, data: Any = None, **kwargs: Any) -> Response:
            return request(name, url, data=data, **kwargs)

        chosen = send_body if body else send
        chosen.__name__ = name.lower()
        return chosen

    def get(url: str, params: Any = None, **kwargs: Any) -> Response:
        return request("GET", url, params=params, **kwargs)

    module = ModuleType("requests")
    exceptions = ModuleType("requests.exceptions")
    errors: Mapping[str, type[Exception]] = {
        "RequestException": RequestException,
        "ConnectionError": ConnectionError,
        "Timeout": Timeout,
        "TooManyRedirects": TooManyRedirects,
        "RequestDenied": RequestDenied,
        "ResponseTooLarge": ResponseTooLarge,
        "HTTPError": HTTPError,
    }
    for attr, value in {
        "request": request,
        "get": get,
        "head": verb("HEAD", body=False),
        "delete": verb("DELETE", body=False),
        "options": verb("OPTIONS", body=False),
        "post": verb("POST", body=True),
        "put": verb("PUT", body=True),
        "patch": verb("PATCH", body=True),
        "Response": Response,
        "exceptions": exceptions,
        **errors,
    }.items():
        setattr(module, attr, value)
    for attr, value in errors.items():
        setattr(exceptions, attr, value)
    return module


def _response(answer: Any) -> Response:
    """The runtime's answer as a Response (the runtime made it: it is plain JSON)."""
    if not isinstance(answer, dict):
        raise RequestException("the runtime's answer to the request could not be read")
    headers = Headers()
    for pair in answer.get("headers") or ():
        name, value = str(pair[0]).lower(), str(pair[1])
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "text" in answer:
        content = str(answer["text"]).encode("utf-8")
    else:
        content = base64.b64decode(str(answer.get("body_b64") or ""))
    return Response(
        int(answer.get("status") or 0),
        str(answer.get("reason") or ""),
        str(answer.get("url") or ""),
        headers,
        content,
    )
