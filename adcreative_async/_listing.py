"""Progress listings read as a stream: the poll scheduler's view of a ``CheckUserProgress`` or
``CheckApplicationAllProgresses`` answer, decoded piece by piece as its bytes arrive, keeping only what
the scheduler needs.

A listing may hold every process its user (or application) ever ran: a million of them, some 420 MB
of JSON. :class:`ListingReader` is fed the body in chunks (the transport's streamed-body hook,
:meth:`~adcreative_async._transport.Transport.request`'s ``sink``) and keeps, of the elements it has
read, their number, the per-user counts it was asked for, and the full element (its JSON, decoded into a
:class:`~adcreative_async._models.Progress` only when asked) of the processes it was asked to keep; every
element's ids go to an optional callback (the client's reconcile records) and are then dropped. What it
holds at any time is a piece of the body and its decoded ids (a piece is about :data:`PIECE_BYTES`, up
to twice that, or one element if an element is larger), besides the kept elements: independent of the
listing's size. A chunk fed at once is read :data:`PIECE_BYTES` at a time.

How a piece is found, without a byte-by-byte loop in Python: the reader buffers chunks; once
:data:`PIECE_BYTES` are buffered it looks, from the end, for a ``}`` followed by ``,`` and ``{`` (JSON
whitespace allowed between them) and takes the buffer up to that ``}`` as a piece only if
``"[" + piece + "]"`` decodes as an array of listing elements. A ``}`` inside a string or at a nested level
can never make a valid array there (the string or the nesting would be left open), so a piece always
ends at an element boundary of the listing, by construction; the other candidates cost a failed trial
decode each, at most :data:`CUT_TRIALS` per attempt, and after an attempt that found no piece the next
one waits until the buffer has doubled (so the trials cost a bounded multiple of one pass over the
body, whatever its elements hold). Both shapes are read: a plain array, and Newtonsoft's
``{"$id": "1", "$values": [...]}`` (whose ``"$values"`` key is accepted only where the object's start,
closed right after it, decodes with it at its top level). The last piece must hold the array's end
(and the wrapper's): a body cut short is never taken for a complete listing. Malformed data raises
:class:`msgspec.DecodeError`, as decoding the whole body would (the transport turns it into
:class:`~adcreative_async.UnexpectedResponseError`); an element's own fields are validated when it is
decoded in full (a malformed element nobody awaits never fails a poll, as before).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Iterable

import msgspec

from ._models import PROGRESS_DECODER, ListedProcess, Progress

__all__ = ["CUT_TRIALS", "PIECE_BYTES", "ListingReader", "ProgressListing", "lowered"]

#: A listing's body is decoded in pieces of about this many bytes (about 150 processes of the
#: emulator's Background Remover listing): larger pieces cost fewer decoder calls, smaller ones hold
#: less at once (measured: 16 KiB to 256 KiB within a few percent of each other in CPU per element).
PIECE_BYTES = 64 * 1024
#: Candidate ends of a piece tried (each a trial decode) before the reader waits for more bytes.
CUT_TRIALS = 4

_WHITESPACE = b" \t\r\n"
_NEXT_ELEMENT = re.compile(rb"[ \t\r\n]*,[ \t\r\n]*\{")
_VALUES_KEY = re.compile(rb'"\$values"[ \t\r\n]*:[ \t\r\n]*\[')
_EXCERPT = 200


class _ListedValues(msgspec.Struct, frozen=True):
    values: list[ListedProcess] = msgspec.field(name="$values", default_factory=list)


class _RawValues(msgspec.Struct, frozen=True):
    values: list[msgspec.Raw] = msgspec.field(name="$values", default_factory=list)


_LISTED: msgspec.json.Decoder[list[ListedProcess]] = msgspec.json.Decoder(list[ListedProcess], strict=False)
_LISTED_VALUES: msgspec.json.Decoder[_ListedValues] = msgspec.json.Decoder(_ListedValues, strict=False)
_LISTED_ANY: msgspec.json.Decoder[list[ListedProcess] | _ListedValues] = msgspec.json.Decoder(
    list[ListedProcess] | _ListedValues, strict=False
)
_RAW: msgspec.json.Decoder[list[msgspec.Raw]] = msgspec.json.Decoder(list[msgspec.Raw])
_RAW_VALUES: msgspec.json.Decoder[_RawValues] = msgspec.json.Decoder(_RawValues)
_RAW_ANY: msgspec.json.Decoder[list[msgspec.Raw] | _RawValues] = msgspec.json.Decoder(
    list[msgspec.Raw] | _RawValues
)

_START, _HEADER, _ELEMENTS, _DONE = range(4)


def _raw_list(doc: bytes) -> list[msgspec.Raw]:
    return _RAW.decode(doc)


def _raw_values(doc: bytes) -> list[msgspec.Raw]:
    return _RAW_VALUES.decode(doc).values


def _raw_any(doc: bytes) -> list[msgspec.Raw]:
    decoded = _RAW_ANY.decode(doc)
    return decoded.values if isinstance(decoded, _RawValues) else decoded


class ProgressListing:
    """What a poll keeps of a listing: how many elements it held, the per-user counts asked for, and
    the elements asked for (their ids, and their full :class:`Progress` decoded on demand).

    Attributes:
        count: the elements of the whole listing (``len(listing)``).
        ids: the ids of the kept elements, in listing order (index ``i`` is :meth:`progress` ``(i)``).
        users: elements per user (lower-cased id), for the users the reader was asked to count.
    """

    __slots__ = ("_items", "_raw", "count", "ids", "users")

    def __init__(
        self,
        count: int,
        ids: list[ListedProcess],
        raw: list[bytes],
        users: dict[str, int] | None = None,
    ) -> None:
        self.count = count
        self.ids = ids
        self.users: dict[str, int] = {} if users is None else users
        self._raw = raw
        self._items: list[Progress] | None = None

    @classmethod
    def of(cls, items: list[Progress]) -> ProgressListing:
        """A listing of progress objects already decoded (a filtered answer): every one kept."""
        ids = [
            ListedProcess(image_render_process_id=p.image_render_process_id, user_id=p.user_id) for p in items
        ]
        users: dict[str, int] = {}
        for p in items:
            users[p.user_id.lower()] = users.get(p.user_id.lower(), 0) + 1
        listing = cls(len(items), ids, [], users)
        listing._items = items
        return listing

    def __len__(self) -> int:
        return self.count

    def progress(self, index: int) -> Progress:
        """The full progress object of kept element ``index`` (decoded now).

        Raises:
            msgspec.DecodeError: the element is malformed.
        """
        if self._items is not None:
            return self._items[index]
        return PROGRESS_DECODER.decode(self._raw[index])

    def raw(self, index: int) -> bytes | None:
        """The JSON of kept element ``index`` as the listing held it; None for a listing of decoded
        objects (:meth:`of`)."""
        return None if self._items is not None else self._raw[index]


class ListingReader:
    """Decodes a progress listing fed in chunks (see the module doc).

    Args:
        wanted: lower-cased process ids whose elements are kept (consulted as each piece is read: a
            live mapping such as a poller's followed processes works).
        users: user ids whose elements are counted (:attr:`ProgressListing.users`).
        on_ids: called with the process ids of each piece read (as the server spells them).
        piece_bytes: the size of a piece (:data:`PIECE_BYTES`; tests make it small).

    Feed it with :meth:`feed`, ``feed(b"")`` at the end of the body; then :meth:`listing`.
    """

    __slots__ = (
        "_buf",
        "_count",
        "_ids",
        "_next_try",
        "_on_ids",
        "_piece",
        "_raw",
        "_scan",
        "_state",
        "_users",
        "_wanted",
        "_wrapped",
    )

    def __init__(
        self,
        wanted: Container[str] = (),
        *,
        users: Iterable[str] = (),
        on_ids: Callable[[list[str]], object] | None = None,
        piece_bytes: int = PIECE_BYTES,
    ) -> None:
        self._piece = piece_bytes
        self._wanted = wanted
        counted = {user.lower(): 0 for user in users}
        self._users: dict[str, int] | None = counted or None
        self._on_ids = on_ids
        self._buf = bytearray()
        self._state = _START
        self._wrapped = False
        self._scan = 0  # where to look for the wrapper's "$values" next
        self._next_try = piece_bytes  # look for a piece's end once the buffer holds this much
        self._count = 0
        self._ids: list[ListedProcess] = []
        self._raw: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the body; ``b""`` at its end.

        Raises:
            msgspec.DecodeError: the body is not a progress listing (malformed, or cut short at its end).
        """
        if self._state == _DONE:
            raise RuntimeError("the listing's body was already read to its end")
        if not chunk:
            self._finish()
            return
        buf, piece = self._buf, self._piece
        with memoryview(chunk) as view:
            for start in range(0, len(chunk), piece):  # a large chunk is read a piece at a time
                buf += view[start : start + piece]
                if self._state != _ELEMENTS:
                    self._begin()
                if self._state == _ELEMENTS and len(buf) >= self._next_try:
                    self._cut()

    def listing(self) -> ProgressListing:
        """The listing read (after ``feed(b"")``)."""
        if self._state != _DONE:
            raise RuntimeError("the listing's body was not read to its end")
        return ProgressListing(self._count, self._ids, self._raw, self._users)

    # ------------------------------------------------------------------------------------- internals

    def _begin(self) -> None:
        """Find the array of elements: the body's first ``[``, or the wrapper's ``"$values": [``."""
        buf = self._buf
        if self._state == _START:
            start = len(buf) - len(buf.lstrip(_WHITESPACE))
            if start == len(buf):
                buf.clear()
                return
            first = buf[start]
            if first == ord("["):
                del buf[: start + 1]
                self._state = _ELEMENTS
                return
            if first != ord("{"):
                got = bytes(buf[start : start + 1])
                raise msgspec.DecodeError(f"JSON is malformed: expected an array or an object, got {got!r}")
            del buf[:start]
            self._state = _HEADER
            self._wrapped = True
        while True:
            found = _VALUES_KEY.search(buf, self._scan)
            if found is None:
                partial = buf.rfind(b'"$values"', self._scan)
                self._scan = partial if partial >= 0 else max(self._scan, len(buf) - len(b'"$values"'))
                return
            try:
                _RAW_VALUES.decode(bytes(buf[: found.end()]) + b"]}")
            except msgspec.DecodeError:  # not the wrapper's own key (inside a string or a nested object)
                self._scan = found.start() + 1
                continue
            del buf[: found.end()]
            self._state = _ELEMENTS
            return

    def _cut(self) -> None:
        """Decode the longest piece found near the end of the buffer (see the module doc)."""
        buf = self._buf
        high = len(buf)
        trials = 0
        while True:  # each '}' from the end (usually the second or third is a piece's end)
            end = buf.rfind(b"}", 0, high)
            if end < 0:
                break
            high = end
            following = _NEXT_ELEMENT.match(buf, end + 1)
            if following is None:
                continue
            with memoryview(buf) as view, view[: end + 1] as elements:
                piece = b"".join((b"[", elements, b"]"))  # the one copy of the piece
            try:
                listed = _LISTED.decode(piece)
            except msgspec.ValidationError:
                raise  # an element of the listing is not one (whatever the cut): malformed
            except msgspec.DecodeError:
                trials += 1
                if trials >= CUT_TRIALS:
                    break
                continue  # a '}' inside a string or a nested object: an earlier one
            self._take(listed, piece, _raw_list)
            del buf[: following.end() - 1]  # the next piece starts at the next element's '{'
            self._next_try = self._piece
            return
        self._next_try = 2 * len(buf)  # nothing found: try again once the buffer has doubled

    def _finish(self) -> None:
        """The body's end: its last piece holds the array's end (and the wrapper's)."""
        buf = bytes(self._buf)
        self._buf = bytearray()
        if self._state == _ELEMENTS:
            if self._wrapped:
                doc = b'{"$values":[' + buf
                self._take(_LISTED_VALUES.decode(doc).values, doc, _raw_values)
            else:
                doc = b"[" + buf
                self._take(_LISTED.decode(doc), doc, _raw_list)
        else:  # no array found: the whole body decoded as before (an object without "$values", or an error)
            decoded = _LISTED_ANY.decode(buf)
            self._take(decoded.values if isinstance(decoded, _ListedValues) else decoded, buf, _raw_any)
        self._state = _DONE

    def _take(
        self,
        listed: list[ListedProcess],
        doc: bytes,
        raw_of: Callable[[bytes], list[msgspec.Raw]],
    ) -> None:
        """Count a decoded piece, report its ids, keep its wanted elements (their JSON copied out).

        Every element of every listing passes here, nearly all of them followed by nobody (a listing
        holds every process its user ever ran): the ids are lower-cased only where they are not already
        (:func:`lowered`), and a piece is looked at id by id only when it holds a wanted one.
        """
        self._count += len(listed)
        ids = [p.image_render_process_id for p in listed]
        if self._on_ids is not None:
            self._on_ids(ids)
        users = self._users
        if users is not None:
            for p in listed:
                user = p.user_id.lower()
                if user in users:
                    users[user] += 1
        wanted = self._wanted
        if not wanted:
            return
        pids = lowered(ids)
        if isinstance(wanted, (set, frozenset)):
            if wanted.isdisjoint(pids):
                return
        elif isinstance(wanted, dict) and wanted.keys().isdisjoint(pids):
            return
        hits = [i for i, pid in enumerate(pids) if pid in wanted]
        if not hits:
            return
        raws = raw_of(doc)  # the piece again, element by element (only where something is kept)
        for i in hits:
            self._ids.append(listed[i])
            self._raw.append(bytes(raws[i]))


def lowered(ids: list[str]) -> list[str]:
    """``[i.lower() for i in ids]``; ``ids`` itself when every id is lower-case already (GUIDs as the API
    and the emulator spell them), told by one join and one ``lower`` (C loops), not a call per id."""
    joined = "\n".join(ids)
    if joined.isascii() and joined.lower() == joined:
        return ids
    return [i.lower() for i in ids]


def read_listing(
    body: bytes,
    wanted: Container[str] = (),
    *,
    users: Collection[str] = (),
    chunk: int = PIECE_BYTES,
    piece_bytes: int = PIECE_BYTES,
) -> ProgressListing:
    """A whole body read as the transport feeds it (``chunk`` bytes at a time): for tests and
    benchmarks.

    Raises:
        msgspec.DecodeError: the body is not a progress listing.
    """
    reader = ListingReader(wanted, users=users, piece_bytes=piece_bytes)
    view = memoryview(body)
    for start in range(0, len(body), chunk):
        reader.feed(bytes(view[start : start + chunk]))
    reader.feed(b"")
    return reader.listing()
