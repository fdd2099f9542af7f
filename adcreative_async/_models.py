"""Typed, immutable models of the API's JSON, and the enums the server may extend.

The progress object (reference §4.6) is shared by every image feature: it is what a start or edit call
returns, what ``CheckUserProgress`` lists, and what a progress notification carries. Responses are
decoded with msgspec decoders built once; keys starting with ``$`` (Newtonsoft's ``$id``, ``$values``,
``$ref``) are metadata, never data; lists arrive either as plain arrays or as ``{"$id", "$values"}``
wrappers; unknown fields are ignored; numbers the SDK does not know are kept, never a crash.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

__all__ = [
    "AD_CREATIVE_RENDER_KINDS",
    "AD_CREATIVE_RENDER_TYPES",
    "DOCUMENTED_RENDER_KINDS",
    "TERMINAL_STATES",
    "DownloadFormat",
    "ImageStyle",
    "Progress",
    "RenderKind",
    "RenderState",
    "RenderType",
]

_E = TypeVar("_E", bound="_OpenIntEnum")


class _OpenIntEnum(enum.IntEnum):
    """An IntEnum that accepts values it has no name for, as pseudo-members named ``UNNAMED_<n>``.

    The server may add values at any time; ``RenderKind(40000)`` must not raise. Pseudo-members compare
    equal to their integer like every member.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNNAMED_{value}" if value >= 0 else f"UNNAMED_MINUS_{-value}"
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)

    @classmethod
    def of(cls: type[_E], value: int) -> _E:
        """The member for ``value``, named or not."""
        return cls(value)

    @property
    def is_named(self) -> bool:
        """Whether the SDK knows a name for this value (documented, or inferred where noted)."""
        return not self.name.startswith("UNNAMED_")

    def __str__(self) -> str:
        return self.name


class RenderKind(_OpenIntEnum):
    """Output size(s) of a render (reference §3.1, documented values and names).

    Single sizes are powers of two and ``SOCIAL``, ``DISPLAY`` and ``ALL`` are their sums, but this is
    **not** a free bit set: a feature accepts only the values it lists (AdCreativesByKind:
    :data:`AD_CREATIVE_RENDER_KINDS`). Docs names: Unset, Post, Story, Landscape, Vertical, PinSize,
    Social, MediumBanner, LeaderBoard, WideSkyScraper, HalfPage, LargeLeaderboard, FullHD, Portrait,
    Widescreen, VideoPortrait, VideoLandscape, Display, All.
    """

    UNSET = 0
    POST = 1  #: 1080×1080
    STORY = 2  #: 1080×1920
    LANDSCAPE = 4  #: 1200×628
    VERTICAL = 8  #: 1080×1350
    PIN_SIZE = 16  #: 1000×1500
    SOCIAL = 31  #: all social sizes (1+2+4+8+16)
    MEDIUM_BANNER = 32  #: 300×250
    LEADER_BOARD = 64  #: 728×90
    WIDE_SKY_SCRAPER = 128  #: 160×600
    HALF_PAGE = 256  #: 300×600
    LARGE_LEADERBOARD = 512  #: 970×90
    DISPLAY = 992  #: all display sizes (32+64+128+256+512)
    ALL = 1023  #: "all sizes" per the docs, yet only SOCIAL | DISPLAY (reference §14.14)
    FULL_HD = 1024  #: 1920×1080
    PORTRAIT = 2048  #: 768×1024
    WIDESCREEN = 4096  #: 1024×768
    VIDEO_PORTRAIT = 8192  #: 768×1280
    VIDEO_LANDSCAPE = 16384  #: 1280×768


class RenderType(_OpenIntEnum):
    """Kind of render (reference §3.2).

    Only ``Unset = 0``, ``Html = 1`` and ``Svg = 2`` have documented values; the docs name more types
    (AiProduct, AiImageUpscaling, …) without numbers, so those are not guessed here. Other values are
    kept as ``UNNAMED_<n>`` pseudo-members (AdCreativesByKind accepts :data:`AD_CREATIVE_RENDER_TYPES`;
    Background Remover progress objects carry 8).
    """

    UNSET = 0
    HTML = 1  #: deprecated per the docs
    SVG = 2


class RenderState(_OpenIntEnum):
    """State of a render process (``requestRenderState``) or of one of its tasks (``tasks`` values).

    Documented: ``5`` means finished successfully (the Product Photoshoot completion rule). **Inferred**:
    the names of 0..4, from third-party write-ups listing "not started, started, scheduled, cancelled,
    failed, succeeded" in that order (reference §3.3, §13). The seeds show only 1 (just started) and 5.
    Values outside 0..5 are kept and are not terminal.
    """

    NOT_STARTED = 0  # inferred name
    STARTED = 1  # inferred name; the seeds show 1 for freshly started tasks
    SCHEDULED = 2  # inferred name
    CANCELLED = 3  # inferred name
    FAILED = 4  # inferred name
    SUCCEEDED = 5  # documented: renderState 5 = done

    @property
    def is_terminal(self) -> bool:
        """Whether a task in this state will not change again (succeeded, failed or cancelled)."""
        return int(self) in TERMINAL_STATES


class ImageStyle(_OpenIntEnum):
    """Style of a Stock Image generation (``imageStyle``, reference §3.5).

    Only ``3 = Photorealistic`` has a documented number (the Stock Image page's default). The docs name
    other styles (e.g. ``CustomWithText``) without numbers, so they are not guessed here: pass their
    integer once you know it (``ImageStyle(7)`` is kept as ``UNNAMED_7``).
    """

    PHOTOREALISTIC = 3  #: documented default of Stock Image Generation


class DownloadFormat(_OpenIntEnum):
    """File format of a download (``format``; documented for Product Photoshoot, reference §11.5)."""

    PNG = 0
    JPEG = 1
    PDF = 2  #: PDF 1.6


#: Task states after which a task does not change again (unless an edit re-opens it). Inferred (see
#: RenderState); unknown states are never terminal.
TERMINAL_STATES: frozenset[int] = frozenset({3, 4, 5})

#: ``renderKind`` values AdCreativesByKind accepts (seed 001).
AD_CREATIVE_RENDER_KINDS: frozenset[int] = frozenset(
    {0, 1, 2, 4, 8, 16, 31, 32, 64, 128, 256, 512, 992, 1023}
)
#: Every ``renderKind`` value the Enums page documents (reference §3.1). Which of them a feature other
#: than AdCreativesByKind accepts is not documented.
DOCUMENTED_RENDER_KINDS: frozenset[int] = frozenset(int(kind) for kind in RenderKind)
#: ``renderType`` values AdCreativesByKind accepts (seed 001).
AD_CREATIVE_RENDER_TYPES: frozenset[int] = frozenset({0, 1, 2, 4, 8, 16, 19, 32, 64, 100, 127, 128})


if TYPE_CHECKING:
    TaskStates = dict[str, RenderState]
else:
    # On the wire a tasks map also holds Newtonsoft's "$id": "<n>", a string: decoded as a str, it never
    # becomes a RenderState pseudo-member (msgspec would call RenderState._missing_ for every id number:
    # eight times slower, and the enum would keep each one). ``settle_task_states`` then drops the "$"
    # keys, so that at run time every value is a RenderState, as type checkers are told.
    TaskStates = dict[str, RenderState | str]


def settle_task_states(tasks: dict[str, Any]) -> None:
    """Make a decoded ``tasks`` map what :class:`Progress` promises, in place (this runs for every
    decoded progress object): its ``$`` keys ("$id", "$values", ...: Newtonsoft's reference handling,
    never task ids) deleted, and a state sent as a numeric string (``"5"``) made a RenderState.

    Raises:
        ValueError: a state that is not a number (msgspec reports it as a ValidationError).
    """
    tasks.pop("$id", None)  # the one a .NET server adds to every map: then one pass for the common case
    for key, state in tasks.items():
        if type(state) is str or key.startswith("$"):
            break
    else:
        return
    for key in [key for key in tasks if key.startswith("$")]:
        del tasks[key]
    for key, state in tasks.items():
        if isinstance(state, str):
            try:
                tasks[key] = RenderState(int(state))
            except ValueError:
                raise ValueError(f"task {key}: state {state!r} is not a number") from None


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of camelCase response models: immutable, unknown fields ignored."""


class Progress(_Wire, frozen=True, kw_only=True, rename="camel", gc=False):
    """The progress of one render process (reference §4.6), as the server reported it at one moment.

    Attributes:
        image_render_process_id: the process id (every feature's responses call it this, even where the
            feature's query parameter has another name).
        message_type: e.g. ``"ImageGenerationProgress"``, ``"ImageBackgroundRemovingProgress"``.
        request_render_state: the process's state (see :class:`RenderState`).
        application_id, user_id: who started it.
        total_task_count, completed_task_count: task counts (authoritative even when ``tasks`` is partial).
        progress: 0..100; an int in the seeds, tolerated as a float.
        tasks: task id -> task state, a :class:`RenderState` (an int enum: ``== 5`` still works; states
            the SDK has no name for are kept as ``RenderState.UNNAMED_<n>``, never refused). Task ids
            are strings (the seeds show GUIDs and also ``"taskId1"``). The map can be partial (the
            seeds show 2 of 5 tasks).
        render_kind, render_type: echoed by features that have them, else None.
        is_successful, error_message: the process-level outcome.
    """

    image_render_process_id: str
    message_type: str = ""
    request_render_state: int = 0
    application_id: str = ""
    user_id: str = ""
    total_task_count: int = 0
    completed_task_count: int = 0
    progress: int | float = 0
    tasks: TaskStates = {}
    render_kind: int | None = None
    render_type: int | None = None
    is_successful: bool = True
    error_message: str | None = ""

    def __post_init__(self) -> None:
        settle_task_states(self.tasks)

    @property
    def process_id(self) -> str:
        """Alias of :attr:`image_render_process_id`."""
        return self.image_render_process_id

    @property
    def state(self) -> RenderState:
        """:attr:`request_render_state` as a :class:`RenderState` (unknown values kept)."""
        return RenderState(self.request_render_state)

    def task_state(self, task_id: str) -> RenderState | None:
        """The state of one task, or None if this snapshot does not list it."""
        return self.tasks.get(task_id)

    @property
    def succeeded_task_ids(self) -> list[str]:
        """Ids of the listed tasks in state SUCCEEDED (5), ready to download."""
        return [t for t, s in self.tasks.items() if s == RenderState.SUCCEEDED]

    @property
    def failed_task_ids(self) -> list[str]:
        """Ids of the listed tasks in state FAILED or CANCELLED (inferred states 4 and 3)."""
        return [t for t, s in self.tasks.items() if s in (RenderState.FAILED, RenderState.CANCELLED)]

    @property
    def is_complete(self) -> bool:
        """Done by the documented rule: progress 100, every task counted complete, every listed task
        in a terminal state."""
        return (
            self.progress >= 100
            and self.completed_task_count >= self.total_task_count
            and all(s in TERMINAL_STATES for s in self.tasks.values())
        )


class _ValuesWrapper(msgspec.Struct, frozen=True):
    """Newtonsoft's list wrapper ``{"$id": "1", "$values": [...]}``."""

    values: list[Progress] = msgspec.field(name="$values", default_factory=list)


class _TokenWire(_Wire, frozen=True, kw_only=True, rename="camel"):
    """GenerateJwtToken / RefreshJwtToken response (reference §1.3). Private: holds secrets."""

    access_token: str
    access_token_expiration: str | None = None
    refresh_token: str | None = None
    refresh_token_expiration: str | None = None
    application_id: str | None = None

    def __repr__(self) -> str:
        return "_TokenWire(<redacted>)"


# strict=False: Newtonsoft's "$id": "2" inside maps of ints, and numbers sent as strings, still decode.
PROGRESS_DECODER: msgspec.json.Decoder[Progress] = msgspec.json.Decoder(Progress, strict=False)
_PROGRESS_LIST_DECODER: msgspec.json.Decoder[list[Progress] | _ValuesWrapper] = msgspec.json.Decoder(
    list[Progress] | _ValuesWrapper, strict=False
)
TOKEN_DECODER: msgspec.json.Decoder[_TokenWire] = msgspec.json.Decoder(_TokenWire, strict=False)


class ListedProcess(_Wire, frozen=True, kw_only=True, rename="camel", gc=False):
    """The ids of one element of a progress listing: all a poll reads of a process nobody awaits."""

    image_render_process_id: str = ""
    user_id: str = ""


def decode_progress_list(body: bytes) -> list[Progress]:
    """A list of progress objects from a plain array or a ``$values`` wrapper.

    Raises:
        msgspec.DecodeError: (or its subclass ValidationError) on malformed data; the transport turns
            it into :class:`~adcreative_async.UnexpectedResponseError`.
    """
    decoded = _PROGRESS_LIST_DECODER.decode(body)
    return decoded.values if isinstance(decoded, _ValuesWrapper) else decoded


_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime from the API's ISO-8601 timestamps.

    Accepts .NET's 7 fractional digits (truncated to microseconds) and reads a timestamp without a
    timezone as UTC.

    Raises:
        ValueError: when ``text`` is not such a timestamp.
    """
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, _z, sign, off_h, off_m = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(offset if sign == "+" else -offset)
    value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    return value.astimezone(timezone.utc)
