"""Files behind a URI (``s3://``, ``file://``, any Hadoop file system) through Hadoop's FileSystem API in the driver's
JVM (``spark._jvm``): listing the inputs, reading them as byte streams (header row, sha256), writing small files and
moving outputs. On SageMaker's Spark image ``s3://`` is EMRFS, with the job role's credentials; the same calls on a
``file://`` URI use Hadoop's local file system, which is how the tests exercise this code without a network.

A local path (no scheme) never comes here: the engine keeps using ``pathlib`` for it, as before.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processing.errors import EmptyInputError, InputError
from processing.spark.session import session

URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CHUNK = 1 << 22  # bytes per read through py4j


def is_uri(value: object) -> bool:
    """True for a URI string (``s3://...``, ``file://...``); False for a local path."""
    return isinstance(value, str) and bool(URI_RE.match(value))


def _session() -> Any:
    return session()


def _fs(uri: str, spark: Any = None) -> tuple[Any, Any]:
    """(FileSystem, Path) of ``uri`` in the driver's JVM."""
    spark = spark or _session()
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    fs.setWriteChecksum(False)  # the local file system would add .crc files beside every file written
    return fs, path


def join(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined with single slashes."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


class _Stream(io.RawIOBase):
    """A Hadoop input stream as a Python raw binary stream (read-only, sequential)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.readNBytes(min(len(buffer), CHUNK))  # byte[] -> bytes (py4j copies it by value)
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


@dataclass(frozen=True)
class HadoopFile:
    """One input file behind a URI, with what the engine asks of a ``Path``: ``name``, ``open("rb")``,
    ``stat().st_size`` and ``str()`` (the URI, which Spark's readers take)."""

    uri: str
    size: int

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def open(self, mode: str = "rb") -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"{self.uri}: only mode 'rb' is supported")
        from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]  # pyspark's bridge: no types

        fs, path = _fs(self.uri)
        try:
            return io.BufferedReader(_Stream(fs.open(path)), CHUNK)
        except Py4JJavaError as exc:  # a java.io exception
            raise OSError(f"cannot open {self.uri}: {_java_message(exc)}") from None

    def stat(self) -> _Stat:
        return _Stat(self.size)

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class _Stat:
    st_size: int


def _java_message(exc: BaseException) -> str:
    java = getattr(exc, "java_exception", None)
    return str(java.toString()) if java is not None else str(exc)


def _files(fs: Any, path: Any) -> Iterator[tuple[str, int]]:
    found = fs.listFiles(path, True)
    while found.hasNext():
        status = found.next()
        yield str(status.getPath().toString()), int(status.getLen())


def list_inputs(uri: str) -> list[HadoopFile]:
    """The input files behind ``uri``: the file itself, or every file below it whose path below ``uri`` has no part
    starting with ``.`` (as the local listing), sorted by URI.

    Raises:
        InputError: nothing exists at ``uri``.
        EmptyInputError: a folder without files.
    """
    from py4j.protocol import Py4JJavaError

    fs, path = _fs(uri)
    try:
        status = fs.getFileStatus(path)
    except Py4JJavaError as exc:  # java.io.FileNotFoundException
        raise InputError(f"input path does not exist: {uri} ({_java_message(exc).splitlines()[0]})") from None
    if status.isFile():
        return [HadoopFile(str(status.getPath().toString()), int(status.getLen()))]
    root = str(status.getPath().toString()).rstrip("/") + "/"
    files = sorted((HadoopFile(u, n) for u, n in _files(fs, path)
                    if not any(part.startswith(".") for part in u[len(root):].split("/"))), key=lambda f: f.uri)
    if not files:
        raise EmptyInputError(f"no input files under {uri}")
    return files


#: Decoding or decompression errors: the content is not valid (gzip'd) UTF-8, as ``rawfile.file_digest`` judges it.
_CONTENT_ERRORS = ("java.nio.charset.CharacterCodingException", "java.nio.charset.MalformedInputException",
                   "java.nio.charset.UnmappableCharacterException", "java.util.zip.ZipException")
#: A gzip stream cut short: ``rawfile.file_digest`` (zlib) does not call that invalid UTF-8; neither do we.
_TRUNCATED = "java.io.EOFException"


def digest(uri: str, *, check_utf8: bool = False, compressed: bool = False) -> tuple[str, bool]:
    """sha256 of the file at ``uri`` and whether its (gunzipped) text is valid UTF-8, in one pass computed in the JVM
    (``rawfile.file_digest``'s result for a local file; bytes through py4j would cost ~100x: 12 MB/s measured).

    The stream is read once: a ``DigestInputStream`` under the (gzip and) UTF-8 decoding reader (Java's decoder
    reports malformed input: overlong forms, surrogates, truncated sequences, as Python's strict decoder does); after
    a decoding error the rest is drained through the digest alone.
    """
    from py4j.protocol import Py4JJavaError

    spark = _session()
    jvm = spark._jvm
    fs, path = _fs(uri, spark)
    md = jvm.java.security.MessageDigest.getInstance("SHA-256")
    raw = jvm.java.security.DigestInputStream(fs.open(path), md)
    ok = check_utf8
    try:
        if check_utf8:
            decoder = jvm.java.nio.charset.StandardCharsets.UTF_8.newDecoder()
            try:
                source = jvm.java.util.zip.GZIPInputStream(raw, CHUNK) if compressed else raw
                jvm.java.io.InputStreamReader(source, decoder).transferTo(jvm.java.io.Writer.nullWriter())
            except Py4JJavaError as exc:
                name = str(exc.java_exception.getClass().getName())
                if name not in _CONTENT_ERRORS and not (compressed and name == _TRUNCATED):
                    raise OSError(f"cannot read {uri}: {_java_message(exc)}") from None
                ok = name == _TRUNCATED
        raw.transferTo(jvm.java.io.OutputStream.nullOutputStream())
    finally:
        raw.close()
    return bytes(md.digest()).hex(), ok


def write_bytes(uri: str, data: bytes) -> None:
    """Create or replace the file at ``uri``."""
    fs, path = _fs(uri)
    out = fs.create(path, True)
    try:
        for start in range(0, len(data), CHUNK):
            out.write(bytearray(data[start:start + CHUNK]))
    finally:
        out.close()


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def download(uri: str, target: Path) -> Path:
    """Copy the file at ``uri`` to the local ``target`` (e.g. a baseline profile)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with HadoopFile(uri, 0).open() as src, target.open("wb") as dst:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            dst.write(chunk)
    return target


def upload_tree(local: Path, uri: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy every file below the local folder ``local`` to the same relative path below ``uri`` (top-level folders
    named in ``skip`` left out). Returns the URIs written."""
    written = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = path.relative_to(local)
        if relative.parts[0] in skip:
            continue
        target = join(uri, relative.as_posix())
        fs, dst = _fs(target)
        spark = _session()
        fs.copyFromLocalFile(False, True, spark._jvm.org.apache.hadoop.fs.Path(path.resolve().as_uri()), dst)
        written.append(target)
    return written


def move_children(src: str, dst: str) -> list[str]:
    """Move every file below the folder ``src`` to the same relative path below ``dst`` (a rename: on S3 a copy then
    a delete, done by EMRFS). Nothing at ``src``: nothing moved. Returns the new URIs."""
    fs, path = _fs(src)
    if not fs.exists(path):
        return []
    root = str(fs.getFileStatus(path).getPath().toString()).rstrip("/") + "/"
    moved = []
    for uri, _ in list(_files(fs, path)):
        target = join(dst, uri[len(root):])
        rename(uri, target)
        moved.append(target)
    return moved


def rename(src: str, dst: str) -> None:
    """Move the file ``src`` to ``dst``, replacing it.

    Raises:
        OSError: the file system refused.
    """
    fs, source = _fs(src)
    _, target = _fs(dst)
    if fs.exists(target):
        fs.delete(target, False)
    parent = target.getParent()
    if parent is not None and str(fs.getScheme()) == "file":  # a local rename needs the folder; S3 has none
        fs.mkdirs(parent)  # (EMRFS would write a "<folder>_$folder$" marker object for it)
    if not fs.rename(source, target):
        raise OSError(f"could not move {src} to {dst}")


def delete(uri: str) -> None:
    """Delete ``uri`` and everything below it (nothing there: nothing done)."""
    fs, path = _fs(uri)
    fs.delete(path, True)


def list_files(uri: str) -> list[str]:
    """URIs of every file below the folder ``uri`` (sorted; nothing there: empty)."""
    fs, path = _fs(uri)
    if not fs.exists(path):
        return []
    return sorted(u for u, _ in _files(fs, path))
