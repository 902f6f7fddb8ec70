"""The subset of RFC 8941 Structured Field Values that RFC 9421 and RFC 9530 headers use.

`Signature-Input`, `Signature` (RFC 9421 §4.1, §4.2) and `Content-Digest` (RFC 9530 §2) are
Dictionaries (RFC 8941 §3.2) of Inner Lists or Items, with Integer, String, Token, Byte Sequence and
Boolean bare items. Decimals are not used by any of them and are refused. Parsing follows the
algorithms of RFC 8941 §4.2 with one deliberate strictness: a repeated dictionary key is an error
instead of "last one wins" (§4.2.2), so that no proxy or second parser can be made to read a
different signature than we verified. Serialization (§4.1) is used to rebuild `@signature-params`.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass, field
from typing import Union

from camhub_protocol.errors import SignatureError


class Token(str):
    """An sf-token (RFC 8941 §3.3.4), kept apart from sf-string."""


BareItem = Union[int, str, Token, bytes, bool]  # noqa: UP007 - a runtime alias


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: dict[str, BareItem] = field(default_factory=dict)


@dataclass(frozen=True)
class InnerList:
    items: list[Item]
    params: dict[str, BareItem] = field(default_factory=dict)


Member = Union[Item, InnerList]  # noqa: UP007

_B64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_UNESCAPE = re.compile(r'\\(["\\])')
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
#: Header values we parse are small; refuse anything absurd before scanning it.
MAX_FIELD_LENGTH = 8192


def _fail(detail: str) -> SignatureError:
    return SignatureError("signature_malformed", detail)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i : self.i + 1]

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    # RFC 8941 §4.2.3.3
    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if not m:
            raise _fail(f"key must start with a lowercase letter or '*' at {self.i}")
        self.i = m.end()
        return m.group()

    # RFC 8941 §4.2.3.2
    def params(self) -> dict[str, BareItem]:
        out: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.i += 1
            self.skip_sp()
            name = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            if name in out:
                raise _fail(f"parameter {name!r} repeated")
            out[name] = value
        return out

    # RFC 8941 §4.2.3.1
    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == "-" or (c.isdigit() and c.isascii()):
            return self.integer()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c and (c in string.ascii_letters or c == "*"):
            return self.token()
        raise _fail(f"unexpected character {c!r} at {self.i}")

    # RFC 8941 §4.2.4 (integers only; a '.' means a Decimal, which these headers never use)
    def integer(self) -> int:
        start = self.i
        if self.peek() == "-":
            self.i += 1
        digits_start = self.i
        while self.peek() and self.peek() in string.digits:
            self.i += 1
        digits = self.s[digits_start : self.i]
        if not digits:
            raise _fail(f"integer without digits at {start}")
        if len(digits) > 15:
            raise _fail("integer longer than 15 digits")
        if self.peek() == ".":
            raise _fail("decimals are not accepted in these fields")
        return int(self.s[start : self.i])

    # RFC 8941 §4.2.5: printable ASCII, with only \" and \\ as escapes
    def string(self) -> str:
        m = _STRING.match(self.s, self.i)
        if not m:
            raise _fail(f"bad or unterminated string at {self.i}")
        self.i = m.end()
        return _UNESCAPE.sub(r"\1", m.group(1))

    # RFC 8941 §4.2.6
    def token(self) -> Token:
        m = _TOKEN.match(self.s, self.i)
        if not m:  # pragma: no cover - bare_item only calls this on a valid first character
            raise _fail(f"bad token at {self.i}")
        self.i = m.end()
        return Token(m.group())

    # RFC 8941 §4.2.7 (strict: standard alphabet, padded, canonical)
    def byte_sequence(self) -> bytes:
        self.i += 1
        end = self.s.find(":", self.i)
        if end < 0:
            raise _fail("unterminated byte sequence")
        text = self.s[self.i : end]
        self.i = end + 1
        if any(ch not in _B64_CHARS for ch in text):
            raise _fail("byte sequence is not base64")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail("byte sequence is not valid base64") from exc
        if base64.b64encode(raw).decode("ascii") != text:
            raise _fail("byte sequence is not canonical base64")
        return raw

    # RFC 8941 §4.2.8
    def boolean(self) -> bool:
        self.i += 1
        c = self.peek()
        if c not in ("0", "1") or not c:
            raise _fail("bad boolean")
        self.i += 1
        return c == "1"

    # RFC 8941 §4.2.1.1
    def item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        value = self.bare_item()
        return Item(value, self.params())

    # RFC 8941 §4.2.1.2
    def inner_list(self) -> InnerList:
        self.i += 1
        items: list[Item] = []
        while True:
            self.skip_sp()
            if self.peek() == ")":
                self.i += 1
                return InnerList(items, self.params())
            value = self.bare_item()
            items.append(Item(value, self.params()))
            if self.peek() not in (" ", ")") or not self.peek():
                raise _fail("inner list items must be separated by spaces")

    # RFC 8941 §4.2.2
    def dictionary(self) -> dict[str, Member]:
        out: dict[str, Member] = {}
        while self.i < len(self.s):
            name = self.key()
            member: Member
            if self.peek() == "=":
                self.i += 1
                member = self.item_or_inner_list()
            else:
                member = Item(True, self.params())
            if name in out:
                raise _fail(f"dictionary key {name!r} repeated")
            out[name] = member
            self.skip_ows()
            if self.i >= len(self.s):
                return out
            if self.peek() != ",":
                raise _fail(f"expected ',' at {self.i}")
            self.i += 1
            self.skip_ows()
            if self.i >= len(self.s):
                raise _fail("trailing comma")
        return out


def parse_dictionary(text: str) -> dict[str, Member]:
    """Parse an RFC 8941 Dictionary (§4.2 with §4.2.2), refusing repeated keys."""
    if not isinstance(text, str):
        raise _fail("field value must be text")
    if len(text) > MAX_FIELD_LENGTH:
        raise _fail("field value too long")
    if not text.isascii():
        raise _fail("field value must be ASCII")
    parser = _Parser(text.strip(" "))
    if not parser.s:
        raise _fail("empty field value")
    return parser.dictionary()


def serialize_bare_item(value: BareItem) -> str:
    """RFC 8941 §4.1.3.1."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > 999_999_999_999_999:
            raise ValueError("integer out of range")
        return str(value)
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        if not _PRINTABLE.fullmatch(value):
            raise ValueError("string has characters RFC 8941 cannot carry")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise TypeError(f"not a bare item: {type(value).__name__}")


def serialize_params(params: dict[str, BareItem]) -> str:
    """RFC 8941 §4.1.1.2: a true Boolean parameter is written as the bare key."""
    out = []
    for name, value in params.items():
        out.append(f";{name}" if value is True else f";{name}={serialize_bare_item(value)}")
    return "".join(out)


def serialize_item(item: Item) -> str:
    return serialize_bare_item(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    """RFC 8941 §4.1.1.1."""
    return "(" + " ".join(serialize_item(i) for i in inner.items) + ")" + serialize_params(inner.params)
