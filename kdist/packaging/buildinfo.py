r"""Go's embedded build information, read from a binary's bytes; pure Python, no `go` needed.

Every Go binary carries a blob that starts with `\xff Go buildinf:` at a 16-byte aligned
address in its data (ELF `.go.buildinfo`, Mach-O `__go_buildinfo`, PE: the first writable
data section). Its 32-byte header holds a pointer size and flags; then either (Go 1.18 and
later, flag bit 2) the Go version and the module information inline, each prefixed by its
length as a varint, or (before 1.18) two pointers to Go string headers `(data, len)`,
in the byte order the flags' bit 1 names. The module information is the text
`runtime/debug.BuildInfo.String()` prints, framed by 16 sentinel bytes at each end.
This mirrors Go's `debug/buildinfo`; `go version -m` is the oracle in the tests.
"""

from __future__ import annotations

import ast
import mmap
from dataclasses import dataclass
from pathlib import Path

from kdist.packaging import objfile

MAGIC = b"\xff Go buildinf:"
ALIGN = 16
HEADER = 32
_FLAG_BIG_ENDIAN = 0x1
_FLAG_INLINE = 0x2
_MAX_STRING = 1 << 24  # module lists of the biggest Go programs are well under 1 MB


@dataclass(frozen=True)
class Module:
    """One Go module a binary was built from."""

    path: str
    version: str
    sum: str = ""
    replace: Module | None = None


@dataclass(frozen=True)
class BuildInfo:
    """What a Go binary says about how it was built."""

    go_version: str
    path: str = ""  # the main package
    main: Module | None = None
    deps: tuple[Module, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # build flags: -ldflags, GOOS, CGO_ENABLED, ...
    modinfo: str = ""  # the raw text, as `go version -m` prints it (without the tabs)

    def setting(self, key: str) -> str | None:
        """The value of one build setting, or None."""
        return next((v for k, v in self.settings if k == key), None)


def read_file(path: Path) -> BuildInfo | None:
    """The build information of the binary at `path`; None when it is not a Go binary."""
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return None
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as image:
            raw = read_raw(image)
    return None if raw is None else parse(*raw)


def read_raw(image: objfile.Image) -> tuple[str, str] | None:
    """(Go version, module text without its sentinels) of an image; None if it has none."""
    try:
        obj = objfile.parse(image)
    except objfile.Malformed:
        return None
    if obj is None or obj.data is None or obj.data.size == 0:
        return None
    found = _search(image, obj)
    if found is None:
        return None
    at, end = found
    header = bytes(image[at : at + HEADER])
    if header[15] & _FLAG_INLINE:
        version, at = _varint_string(image, at + HEADER, end)
        modinfo, _ = _varint_string(image, at, end)
    else:
        version = _pointer_string(image, obj, header, 16)
        modinfo = _pointer_string(image, obj, header, 16 + header[14])
    if not version:
        return None
    return version, _unframe(modinfo)


def _search(image: objfile.Image, obj: objfile.ObjFile) -> tuple[int, int] | None:
    """File offset of the aligned magic in the data region, and the end of its segment."""
    assert obj.data is not None
    start = -(-obj.data.addr // ALIGN) * ALIGN  # the magic is aligned in memory, not the file
    where = obj.locate(start)
    if where is None:
        return None
    offset, end = where
    window = bytes(image[offset : min(end, offset + obj.data.addr + obj.data.size - start)])
    hit = window.find(MAGIC)
    while hit >= 0 and hit % ALIGN:
        hit = window.find(MAGIC, hit + 1)
    if hit < 0 or len(window) - hit < HEADER:
        return None
    return offset + hit, end


def _varint_string(image: objfile.Image, at: int, end: int) -> tuple[str, int]:
    length, shift = 0, 0
    while at < end and shift < 64:
        byte = image[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if length > _MAX_STRING or at + length > end:
        return "", at
    return bytes(image[at : at + length]).decode("utf-8", "replace"), at + length


def _pointer_string(image: objfile.Image, obj: objfile.ObjFile, header: bytes, field: int) -> str:
    size = header[14]
    if size not in (4, 8):
        return ""
    big = bool(header[15] & _FLAG_BIG_ENDIAN)

    def word(raw: bytes) -> int:
        return int.from_bytes(raw[:size], "big" if big else "little")

    string_header = _read_at(image, obj, word(header[field : field + size]), 2 * size)
    if len(string_header) < 2 * size:
        return ""
    length = word(string_header[size:])
    if length > _MAX_STRING:
        return ""
    data = _read_at(image, obj, word(string_header), length)
    return data.decode("utf-8", "replace") if len(data) == length else ""


def _read_at(image: objfile.Image, obj: objfile.ObjFile, addr: int, size: int) -> bytes:
    where = obj.locate(addr)
    if where is None:
        return b""
    offset, end = where
    return bytes(image[offset : min(end, offset + size)])


def _unframe(modinfo: str) -> str:
    # cmd/go wraps the text in 16-byte sentinels (modload.infoStart / infoEnd).
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        return modinfo[16:-16]
    return ""


def parse(go_version: str, modinfo: str) -> BuildInfo:
    """The BuildInfo of a Go version and module text (runtime/debug.ParseBuildInfo's rules)."""
    path, main, deps, settings = "", None, [], []
    last: Module | None = None
    for line in modinfo.split("\n"):
        word, _, rest = line.partition("\t")
        cols = rest.split("\t")
        if word == "path":
            path = rest
        elif word in ("mod", "dep") and len(cols) in (2, 3):
            last = Module(cols[0], cols[1], cols[2] if len(cols) == 3 else "")
            if word == "mod":
                main = last
            else:
                deps.append(last)
        elif word == "=>" and len(cols) == 3 and last is not None:
            replaced = Module(last.path, last.version, last.sum, Module(cols[0], cols[1], cols[2]))
            main, deps = _swap(main, deps, last, replaced)
            last = None
        elif word == "build" and "=" in rest:
            settings.append(_setting(rest))
    return BuildInfo(go_version, path, main, tuple(deps), tuple(settings), modinfo)


def _swap(
    main: Module | None, deps: list[Module], old: Module, new: Module
) -> tuple[Module | None, list[Module]]:
    if main is old:
        return new, deps
    return main, [new if d is old else d for d in deps]


def _setting(text: str) -> tuple[str, str]:
    """`key=value` of a build line; either side may be a Go-quoted string."""
    if text[0] in "\"`":
        end = _quoted_end(text)
        key, value = _unquote(text[:end]), text[end + 1 :]
    else:
        key, _, value = text.partition("=")
    return key, _unquote(value) if value[:1] in ("\"", "`") else value


def _quoted_end(text: str) -> int:
    quote, at = text[0], 1
    while at < len(text) and text[at] != quote:
        at += 2 if text[at] == "\\" and quote == '"' else 1
    return at + 1


def _unquote(text: str) -> str:
    if text[:1] == "`":
        return text.strip("`")
    try:
        value = ast.literal_eval(text)  # Go's escapes are a subset of Python's; literals only
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text
