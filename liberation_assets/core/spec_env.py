"""``${VAR}`` references in the spec, and database URLs that carry them without ever showing a secret.

The spec keeps secrets as references, resolved only when a connection is made; these helpers resolve them,
refuse literal passwords, and render an address that is safe to print (a user's one clear line of error).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from sqlalchemy.engine import URL, make_url

from liberation_assets.core.errors import SpecError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token", "auth_token", "api_key", "apikey"}
)
"""URL query parameters that carry a secret: they must come from ``${VAR}`` and are never printed."""


@dataclass(frozen=True)
class _Reference:
    """One ``${NAME}`` or ``${NAME:-default}`` in a text; the default may itself hold references."""

    start: int
    end: int
    name: str
    default: str | None


def _references(text: str) -> list[_Reference]:
    """The top-level references of a text, in order; nested ones stay inside their default."""
    found: list[_Reference] = []
    position = 0
    while (start := text.find("${", position)) != -1:
        match = _NAME.match(text, start + 2)
        if match is None:
            position = start + 2
            continue
        cursor = match.end()
        if text.startswith("}", cursor):
            found.append(_Reference(start, cursor + 1, match.group(), None))
            position = cursor + 1
            continue
        if not text.startswith(":-", cursor):
            position = start + 2
            continue
        depth, scan = 1, cursor + 2
        while scan < len(text) and depth:
            if text.startswith("${", scan):
                depth, scan = depth + 1, scan + 2
                continue
            if text[scan] == "}":
                depth -= 1
            scan += 1
        if depth:
            raise SpecError(f"unterminated ${{{match.group()}:-...}} reference in {text!r}")
        found.append(_Reference(start, scan, match.group(), text[cursor + 2 : scan - 1]))
        position = scan
    return found


def _substitute(text: str, value_of: Callable[[_Reference], str]) -> str:
    pieces, position = [], 0
    for reference in _references(text):
        pieces.append(text[position : reference.start])
        pieces.append(value_of(reference))
        position = reference.end
    pieces.append(text[position:])
    return "".join(pieces)


def resolve_env(
    text: str, *, environ: Mapping[str, str] | None = None, escape: Callable[[int, str], str] | None = None
) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` (defaults may nest); a missing variable is an error.

    ``escape(index, value)`` transforms the value of the index-th top-level reference (URL escaping).
    """
    env = os.environ if environ is None else environ
    references = _references(text)
    position = {ref.start: index for index, ref in enumerate(references)}

    def value_of(reference: _Reference) -> str:
        if reference.name in env:
            value = env[reference.name]
        elif reference.default is not None:
            value = resolve_env(reference.default, environ=env)
        else:
            raise SpecError(
                f"environment variable {reference.name} is not set (referenced as ${{{reference.name}}} in the spec)"
            )
        return escape(position[reference.start], value) if escape else value

    return _substitute(text, value_of)


def placeholder_url(text: str) -> str:
    """The text with each reference replaced by its default, or by 0: enough to check its shape."""
    return _substitute(text, lambda ref: placeholder_url(ref.default) if ref.default is not None else "0")


_TOKEN = "\ue000"


def _url_parts(template: str) -> tuple[str, list[str]]:
    """The URL with each top-level reference masked as a token, and the URL part each reference sits in."""
    references = _references(template)
    masked = _substitute(template, lambda ref: f"{_TOKEN}{references.index(ref)}{_TOKEN}")
    scheme_end = masked.find("://")
    authority_start = scheme_end + 3 if scheme_end != -1 else 0
    authority_end = next((i for i in range(authority_start, len(masked)) if masked[i] in "/?#"), len(masked))
    at = masked.rfind("@", authority_start, authority_end)
    query_start = masked.find("?", authority_end)
    parts = []
    for index in range(len(references)):
        offset = masked.index(f"{_TOKEN}{index}{_TOKEN}")
        if authority_start <= offset < at:
            parts.append("userinfo")
        elif query_start != -1 and offset > query_start:
            parts.append("query")
        elif authority_start <= offset < authority_end:
            parts.append("host")
        else:
            parts.append("path")
    return masked, parts


def _is_one_reference(masked: str) -> bool:
    return re.fullmatch(f"{_TOKEN}\\d+{_TOKEN}", masked) is not None


def literal_url_secret(template: str) -> str | None:
    """Where a URL template holds a literal secret (the password or a secret query parameter), else None."""
    masked, _ = _url_parts(template)
    scheme_end = masked.find("://")
    authority_start = scheme_end + 3 if scheme_end != -1 else 0
    authority_end = next((i for i in range(authority_start, len(masked)) if masked[i] in "/?#"), len(masked))
    at = masked.rfind("@", authority_start, authority_end)
    if at != -1:
        userinfo = masked[authority_start:at]
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            if password and not _is_one_reference(password):
                return "the password"
    query_start = masked.find("?", authority_end)
    if query_start != -1:
        for key, value in parse_qsl(masked[query_start + 1 :].split("#")[0], keep_blank_values=True):
            if key.lower() in SECRET_QUERY_KEYS and value and not _is_one_reference(value):
                return f"the query parameter {key}"
    return None


def resolve_url(template: str, *, environ: Mapping[str, str] | None = None) -> URL:
    """A URL template with its references resolved, each value URL-escaped for the part it sits in."""
    _, parts = _url_parts(template)

    def escape(index: int, value: str) -> str:
        return quote(value, safe="[]:" if parts[index] == "host" else "")

    return make_url(resolve_env(template, environ=environ, escape=escape))


def render_safe_url(url: URL) -> str:
    """A URL as text with its password and secret query parameters replaced by ***."""
    if any(key.lower() in SECRET_QUERY_KEYS for key in url.query):
        url = url.set(
            query={key: ("***" if key.lower() in SECRET_QUERY_KEYS else value) for key, value in url.query.items()}
        )
    return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def safe_url_of(template: str) -> str:
    """The resolved, password-free address of a URL template.

    When a variable is unset the URL cannot be resolved: then each reference that can be is
    resolved, the others are shown as written, and the secret ones as ***.
    """
    try:
        return render_safe_url(resolve_url(template))
    except Exception:  # noqa: BLE001 - an unset variable or an unparsable result: show what is known
        pass
    masked, parts = _url_parts(template)
    references = _references(template)
    secret = set()
    for index, part in enumerate(parts):
        token = f"{_TOKEN}{index}{_TOKEN}"
        before = masked[: masked.index(token)]
        if part == "userinfo" and ":" in before[before.find("://") + 3 :]:
            secret.add(index)
        elif part == "query" and re.split(r"[?&]", before)[-1].rstrip("=").lower() in SECRET_QUERY_KEYS:
            secret.add(index)

    def shown(reference: _Reference) -> str:
        index = references.index(reference)
        if index in secret:
            return "***"
        try:
            return resolve_env(template[reference.start : reference.end])
        except SpecError:
            return template[reference.start : reference.end]

    return _substitute(template, shown)
