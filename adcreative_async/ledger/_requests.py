"""RenderRequest: one start call, described before it is sent, so that it both hashes and submits.

The run ledger keys every item by what its start call sends: the content of its images (SHA-256,
streamed in constant memory), its other parameters in a canonical form, the feature and the method. A
request object is the one place both come from, so the key is right by construction: whatever the
request would send is in its key, and nothing else is sent. (A ``submit`` callable hides its parameters;
a separate ``key=`` callable could disagree with it.)

Hashing a file again on every resume would cost a full read of every input: the ledger remembers each
file's hash with its host, path, size, modification time and inode, and a file that kept all of them is
not read again (a file modified within :data:`RACY_SECONDS` of being hashed is not remembered; nor is a file
smaller than :data:`REMEMBER_HASHES_FROM`, hashed again on each run: that costs less than remembering it).
The files of a chunk of inputs are hashed in a worker thread, or in the event loop when they are all
small (:data:`HASH_INLINE_BYTES`). A file
may still change after it was hashed: :class:`ContentGuard` hashes each image again as the start call
sends it and stops the call when the bytes differ, so the key is always that of what was sent.
"""

from __future__ import annotations

import enum
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._errors import InputChangedError, InvalidRequestError
from .._fields import FieldKind
from ..resources._registry import RENDER_FEATURES
from ._base import SourceHash

if TYPE_CHECKING:
    from .._client import AdCreativeClient
    from .._jobs import RenderJob
    from ._base import RunLedger

__all__ = [
    "KEY_VERSION",
    "START_METHODS",
    "ContentGuard",
    "RenderRequest",
    "derived_user_id",
    "request_digests",
    "request_keys",
]

#: Bumped when the key's recipe changes (keys of older ledgers would no longer match).
KEY_VERSION = 1
#: The start calls a request can describe: (feature, method).
START_METHODS = frozenset(
    {
        ("background_remover", "remove"),
        ("creatives", "generate"),
        ("upscaler", "upscale"),
        ("face_enhancer", "enhance"),
        ("stock_images", "generate"),
        ("product_photoshoot", "generate"),
    }
)
#: Parameters that change how a call is made, not what is rendered: never part of the key.
NOT_IN_KEY = frozenset({"on_upload_progress", "extra_headers", "timeout"})
#: A file modified this close to being hashed may still be written: its hash is not remembered.
RACY_SECONDS = 2.0
#: Files smaller than this (bytes) are hashed again on every run, never remembered nor looked up in the
#: ledger: reading and hashing 64 KiB (~40 us) costs about what writing a row and reading it back on the
#: next run do, and the bulk path saves those (two statements per chunk, a row and its index per input).
REMEMBER_HASHES_FROM = 64 << 10
#: The files of a chunk of inputs are hashed in the event loop, not handed to a worker thread, when
#: together they hold at most this many bytes (a few hundred small images: well under a millisecond or
#: two); else in a thread, whose reads would otherwise hold up the loop. (The thread's every read and
#: open gives up the GIL to the busy loop and waits to get it back: the hand-off costs more CPU than
#: small files' hashing.)
HASH_INLINE_BYTES = 1 << 20
_CHUNK = 1 << 20
_NAMESPACE = uuid.UUID("5c1f6d1e-93a4-4a8e-9d43-0c54a8d2b6f1")  # the SDK's own: derived user ids
_NAMESPACE_BYTES = _NAMESPACE.bytes
_VARIANT = "89ab"  # a UUID's variant digit: 10 in its two high bits, its two low bits kept
_sha1 = hashlib.sha1
_HOST = socket.gethostname()


#: Per feature, its start call's image parameters, in the docs' order.
_IMAGES: dict[str, tuple[str, ...]] = {
    name: tuple(f.param for f in feature.start_fields if f.kind is FieldKind.IMAGE)
    for name, feature in RENDER_FEATURES.items()
}


def _image_params(feature: str) -> tuple[str, ...]:
    return _IMAGES[feature]


@dataclass(frozen=True)
class RenderRequest:
    """A start call, described: ``client.<feature>.<method>(**params)``, not yet sent.

    Images must be paths or bytes (their content is hashed; a stream could not be read twice). The user
    id is not given here: with a run ledger, each item's start call gets a user id of its own, derived
    from its key (see ``README``, "Resumable runs and many workers").

    Args:
        feature: ``"background_remover"``, ``"creatives"``, ``"upscaler"``, ``"face_enhancer"``,
            ``"stock_images"`` or ``"product_photoshoot"``.
        method: the start method (``"remove"``, ``"generate"``, ``"upscale"``, ``"enhance"``).
        params: its keyword arguments, except ``user_id``.
        label: how the item is named in outcomes, ``runs show`` and output file names (default: the
            first image's path).

    Raises:
        InvalidRequestError: an unknown feature or method, a ``user_id``, or an image that is not a
            path or bytes.

    Example::

        requests = [RenderRequest.remove_background(p) for p in Path("photos").glob("*.jpg")]
        outcomes = await client.process_many(requests, dest="cutouts/", ledger="cutouts/run.sqlite")
    """

    feature: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if (self.feature, self.method) not in START_METHODS:
            known = ", ".join(f"{f}.{m}" for f, m in sorted(START_METHODS))
            raise InvalidRequestError.for_field(
                "request", f"{self.feature}.{self.method} is not a start call (known: {known})"
            )
        if "user_id" in self.params:
            raise InvalidRequestError.for_field(
                "user_id",
                "is not part of a RenderRequest: with a run ledger each item gets a user id derived "
                "from its key",
            )
        first = None  # the first image given by its path: the default label
        for name in _IMAGES[self.feature]:  # (one pass: a request is made per input)
            value = self.params.get(name)
            if value is None or isinstance(value, (bytes, bytearray, memoryview)):
                continue
            if not isinstance(value, (str, os.PathLike)):
                raise InvalidRequestError.for_field(
                    name, "must be a path or bytes in a RenderRequest (its content is hashed for the key)"
                )
            if first is None:
                first = value
        if not self.label and first is not None:
            object.__setattr__(self, "label", os.fspath(first))

    @classmethod
    def remove_background(cls, image: str | os.PathLike[str] | bytes, **params: Any) -> RenderRequest:
        """``client.background_remover.remove(image, **params)``."""
        label = params.pop("label", "")
        return cls("background_remover", "remove", {"image": image, **params}, label=label)

    @classmethod
    def generate_creatives(cls, **params: Any) -> RenderRequest:
        """``client.creatives.generate(**params)``."""
        label = params.pop("label", "")
        return cls("creatives", "generate", params, label=label)

    @property
    def stem(self) -> str:
        """The label's file name without its suffix (``photos/cat.jpg`` -> ``cat``)."""
        return Path(self.label).stem if self.label else ""

    async def submit(self, client: AdCreativeClient, *, user_id: str | None = None) -> RenderJob:
        """Send the start call (``user_id``: the item's derived user, or the client's default)."""
        resource = client.resource(self.feature)
        method = getattr(resource, self.method)
        job: RenderJob = await method(**self.params, user_id=user_id)
        return job

    def _canonical(self, hashes: Mapping[str, str]) -> bytes:
        images = _image_params(self.feature)
        values: dict[str, Any] = {}
        for name, value in self.params.items():
            if name in NOT_IN_KEY or value is None:
                continue
            if name in images:
                values[name] = {"sha256": hashes[name]}
            else:
                values[name] = _plain(value)
        body = {"v": KEY_VERSION, "feature": self.feature, "method": self.method, "params": values}
        return msgspec.json.encode(body, order="sorted")


def _plain(value: Any) -> Any:
    """A parameter in a canonical JSON-ready form (enums by value, GUIDs lowercase, tuples as lists)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (os.PathLike, bytes, bytearray, memoryview)):
        raise InvalidRequestError(
            f"a RenderRequest's non-image parameter cannot be a file or bytes: {type(value).__name__}",
            field="params",
        )
    return msgspec.to_builtins(value)


class ContentGuard:
    """A send guard for an item's start call (see :func:`adcreative_async._files.send_guard`): each image
    part is hashed as it goes out and, at its end, a digest other than the one in the item's key stops
    the call before its request is complete (:class:`~adcreative_async.InputChangedError`): the key is
    always the hash of the bytes actually sent, never of a file's earlier content.

    Args:
        hashes: the key's image hashes, by parameter (:func:`request_digests`).
        label: the item, as messages name it.
    """

    def __init__(self, hashes: Mapping[str, str], label: str) -> None:
        self._hashes = hashes
        self._label = label
        self._digests: dict[str, Any] = {}

    def begin(self, param: str) -> None:
        """A pass over the part ``param`` starts: its hash starts again."""
        if param in self._hashes:
            self._digests[param] = hashlib.sha256()

    def chunk(self, param: str, data: bytes) -> None:
        """Hash the next bytes of ``param``."""
        digest = self._digests.get(param)
        if digest is not None:
            digest.update(data)

    def end(self, param: str) -> None:
        """Refuse the call when ``param``'s bytes were not those of the key.

        Raises:
            InputChangedError: they were not.
        """
        digest = self._digests.pop(param, None)
        if digest is not None and digest.hexdigest() != self._hashes[param]:
            raise InputChangedError(
                f"{self._label or param}: {param} changed during the run (its bytes differ from those "
                "hashed for its key): not sent; rerun to render its new content",
                param=param,
            )


def derived_user_id(namespace: str, key: str, attempt: int) -> str:
    """The user id of an item's start call: a UUID5 of the run's namespace, the key and the attempt, so
    that the user's processes are that item's alone (see README, "Resumable runs and many workers")."""
    # str(uuid.uuid5(_NAMESPACE, name)), without the UUID object (a third of the time; two per item):
    # SHA-1 of the namespace and the name, its first 16 bytes with the version (5) and variant (RFC 4122)
    h = _sha1(_NAMESPACE_BYTES + f"{namespace}:{key}:{attempt}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _absolute(value: str | os.PathLike[str]) -> str:
    """The absolute form of a path (the cache's key), without resolving links."""
    return os.path.abspath(os.fspath(value))


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))  # (a file object: 4 more syscalls)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _stats(paths: Sequence[str]) -> dict[str, os.stat_result | OSError]:
    """Each path's ``stat`` (or why it has none)."""
    found: dict[str, os.stat_result | OSError] = {}
    for path in paths:
        try:
            found[path] = os.stat(path)
        except OSError as exc:
            found[path] = exc
    return found


def _unchanged(st: os.stat_result, cached: SourceHash | None) -> bool:
    """Whether a remembered hash is the file's (same size, modification time and inode)."""
    return cached is not None and (cached.size, cached.mtime_ns, cached.inode) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )


def _to_read(stats: Mapping[str, os.stat_result | OSError], known: Mapping[str, SourceHash]) -> int:
    """The bytes to read to hash the files whose hash is not remembered."""
    return sum(
        st.st_size
        for path, st in stats.items()
        if not isinstance(st, OSError) and not _unchanged(st, known.get(path))
    )


def _hash_paths(
    paths: Sequence[str],
    known: Mapping[str, SourceHash],
    stats: Mapping[str, os.stat_result | OSError] | None = None,
) -> tuple[dict[str, str | OSError], list[SourceHash]]:
    """Each file's hash (or why it cannot be read), and the hashes to remember (``stats``: the files'
    ``stat``, if taken already)."""
    hashes: dict[str, str | OSError] = {}
    fresh: list[SourceHash] = []
    now = time.time()
    for path in paths:
        try:
            st = stats.get(path) if stats is not None else None
            if st is None:
                st = os.stat(path)
            elif isinstance(st, OSError):
                raise st
            cached = known.get(path)
            if cached is not None and _unchanged(st, cached):
                hashes[path] = cached.sha256
                continue
            digest = _hash_file(path)
        except OSError as exc:
            hashes[path] = exc
            continue
        hashes[path] = digest
        if st.st_size >= REMEMBER_HASHES_FROM and now - st.st_mtime_ns / 1e9 > RACY_SECONDS:
            fresh.append(SourceHash(_HOST, path, st.st_size, st.st_mtime_ns, st.st_ino, digest))
    return hashes, fresh


async def request_keys(
    requests: Sequence[RenderRequest], ledger: RunLedger | None
) -> list[str | InvalidRequestError]:
    """The idempotency key of each request (or why it has none: an image that cannot be read).

    Files are hashed in a worker thread (in the event loop if they are small: :data:`HASH_INLINE_BYTES`),
    those the ledger remembers unchanged are not read again.
    """
    return [
        result if isinstance(result, InvalidRequestError) else result[0]
        for result in await request_digests(requests, ledger)
    ]


async def request_digests(
    requests: Sequence[RenderRequest], ledger: RunLedger | None
) -> list[tuple[str, dict[str, str]] | InvalidRequestError]:
    """As :func:`request_keys`, with each request's image hashes (parameter -> SHA-256 hex) beside its
    key: what its start call must send (see :class:`ContentGuard`)."""
    paths: dict[str, None] = {}
    absolute: dict[tuple[int, str], str] = {}  # (request position, parameter) -> absolute path
    for position, request in enumerate(requests):
        for name in _image_params(request.feature):
            value = request.params.get(name)
            if isinstance(value, (str, os.PathLike)):
                path = absolute[position, name] = _absolute(value)
                paths[path] = None
    # their sizes first (in the loop: a stat is cheap): the small files are neither looked up nor
    # remembered (REMEMBER_HASHES_FROM), and small enough together they are hashed here
    stats = _stats(list(paths))
    looked_up = [
        p for p, st in stats.items() if not isinstance(st, OSError) and st.st_size >= REMEMBER_HASHES_FROM
    ]
    known = await ledger.source_hashes(_HOST, looked_up) if ledger is not None and looked_up else {}
    if _to_read(stats, known) <= HASH_INLINE_BYTES:
        file_hashes, fresh = _hash_paths(list(paths), known, stats)
    else:
        file_hashes, fresh = await anyio.to_thread.run_sync(_hash_paths, list(paths), known, stats)
    if ledger is not None and fresh:
        await ledger.remember_sources(fresh)
    keys: list[tuple[str, dict[str, str]] | InvalidRequestError] = []
    for position, request in enumerate(requests):
        hashes: dict[str, str] = {}
        problem: InvalidRequestError | None = None
        for name in _image_params(request.feature):
            value = request.params.get(name)
            if value is None:
                continue
            if isinstance(value, (bytes, bytearray, memoryview)):
                hashes[name] = hashlib.sha256(value).hexdigest()
                continue
            result = file_hashes[absolute[position, name]]
            if isinstance(result, OSError):
                problem = InvalidRequestError.for_field(
                    name, f"cannot read {os.fspath(value)!r}: {result.strerror or result}"
                )
                break
            hashes[name] = result
        if problem is None:
            try:
                keys.append((hashlib.sha256(request._canonical(hashes)).hexdigest(), hashes))
            except (InvalidRequestError, TypeError) as exc:
                keys.append(
                    exc
                    if isinstance(exc, InvalidRequestError)
                    else InvalidRequestError(str(exc), field="params")
                )
        else:
            keys.append(problem)
    return keys
