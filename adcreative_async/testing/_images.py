"""Image bytes for the emulator: small, real, decodable PNG and baseline JPEG files, and type sniffing.

Downloads answer with a solid-colour image built here from the standard library only (zlib and struct),
optionally padded to any byte size and streamed in constant memory (:func:`padded_png`);
uploads are recognised from their first bytes (PNG, JPEG, WEBP, GIF), never from a file name or a
declared content type.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Iterator

IMAGE_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "pdf": "application/pdf"}
"""The media type sent with a download, by image format."""

HEAD_BYTES = 64
"""How many leading bytes of an upload are kept for sniffing (and shown in process snapshots)."""


def sniff_image(head: bytes) -> str | None:
    """The image type of a file from its first bytes: ``"png"``, ``"jpeg"``, ``"webp"``, ``"gif"`` or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def color_for(key: str) -> tuple[int, int, int]:
    """A stable RGB colour derived from a string (a task id gives each download its own colour)."""
    digest = hashlib.sha256(key.encode()).digest()
    return digest[0], digest[1], digest[2]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=256)
def png_bytes(width: int, height: int, color: tuple[int, int, int] = (32, 96, 192)) -> bytes:
    """A ``width`` x ``height`` 8-bit RGB PNG filled with ``color``."""
    _check_size(width, height)
    row = b"\x00" + bytes(color) * width  # filter type 0 (None) before every scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(row * height, 6)),
            _png_chunk(b"IEND", b""),
        )
    )


#: The keyword of the tEXt chunk in which the emulator stamps the SHA-256 of a result's input (testing
#: only: ``Emulator(stamp_inputs=True)``), so that a test can check that a file comes from its own input.
INPUT_STAMP_KEYWORD = b"adcreative-emulator-input-sha256"


def stamp_png(png: bytes, text: str) -> bytes:
    """``png`` with a tEXt chunk ``INPUT_STAMP_KEYWORD: text`` before its IEND chunk."""
    end = png.rindex(b"IEND") - 4
    return png[:end] + _png_chunk(b"tEXt", INPUT_STAMP_KEYWORD + b"\x00" + text.encode("latin-1")) + png[end:]


def input_stamp(png: bytes) -> str | None:
    """The input digest stamped in a PNG by ``stamp_png``, or None."""
    marker = b"tEXt" + INPUT_STAMP_KEYWORD + b"\x00"
    at = png.find(marker)
    if at < 0:
        return None
    length = int.from_bytes(png[at - 4 : at], "big")
    return png[at + 4 + len(INPUT_STAMP_KEYWORD) + 1 : at + 4 + length].decode("latin-1")


# --------------------------------------------------------------------------------- very large images

PADDING_CHUNK = b"paDd"
"""The chunk type that pads a large PNG: ancillary (decoders skip it), private, safe to copy."""

_MAX_CHUNK_DATA = (1 << 31) - 1  # the PNG limit of one chunk's data length
_ZEROS = bytes(1 << 18)  # shared by every padded download: the padding is zero bytes, never allocated
_CRC_POLY = 0xEDB88320  # CRC-32 (ISO-HDLC, reflected), as PNG and zlib use


def _crc_multiply(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order, as zlib's ``multmodp``)."""
    m = 1 << 31
    product = 0
    while True:
        if a & m:
            product ^= b
            if not a & (m - 1):
                return product
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


_X_POW_2N = [1 << 30]  # x^(2^n) modulo the polynomial, n = 0..31
for _ in range(31):
    _X_POW_2N.append(_crc_multiply(_X_POW_2N[-1], _X_POW_2N[-1]))


def crc32_of_zeros(count: int, crc: int = 0) -> int:
    """``zlib.crc32(bytes(count), crc)`` computed in O(log count), without the bytes.

    Appending a zero byte multiplies the CRC register by x^8; x^(8 * count) comes from repeated squares.
    """
    power = 1 << 31  # x^0
    n, k = count, 3
    while n:
        if n & 1:
            power = _crc_multiply(_X_POW_2N[k & 31], power)
        n >>= 1
        k += 1
    return ~_crc_multiply(power, ~crc & 0xFFFFFFFF) & 0xFFFFFFFF


Segment = bytes | int
"""A piece of a generated body: literal bytes, or that many zero bytes."""


def padded_png(size: int, width: int, height: int, color: tuple[int, int, int]) -> tuple[Segment, ...]:
    """A valid ``width`` x ``height`` PNG of exactly ``size`` bytes, as segments to stream.

    The image is :func:`png_bytes`; the rest is zero padding in ``paDd`` chunks (at most 2 GiB each)
    before ``IEND``, whose CRCs are computed without materialising the padding: whatever ``size``, the
    segments take a few hundred bytes of memory.

    Raises:
        ValueError: ``size`` is smaller than the image plus one empty chunk (12 bytes).
    """
    image = png_bytes(width, height, color)
    padding = size - len(image)
    if padding == 0:
        return (image,)
    if padding < 12:
        raise ValueError(
            f"a {width}x{height} PNG takes {len(image)} bytes: the size must be at least {len(image) + 12}"
        )
    segments: list[Segment] = [image[:-12]]
    type_crc = zlib.crc32(PADDING_CHUNK)
    while padding:
        data = min(padding - 12, _MAX_CHUNK_DATA)
        if 0 < padding - 12 - data < 12:
            data -= 12  # leave room for one more whole chunk
        segments += [
            struct.pack(">I", data) + PADDING_CHUNK,
            data,
            struct.pack(">I", crc32_of_zeros(data, type_crc)),
        ]
        padding -= 12 + data
    segments.append(image[-12:])  # IEND
    return tuple(segments)


def segments_size(segments: tuple[Segment, ...]) -> int:
    """The byte length of a segmented body."""
    return sum(s if isinstance(s, int) else len(s) for s in segments)


def iter_segments(segments: tuple[Segment, ...], start: int, stop: int) -> Iterator[bytes | memoryview]:
    """Bytes ``start`` to ``stop`` (exclusive) of a segmented body, in pieces of at most 256 KiB.

    Zero runs are views of one shared buffer: iterating allocates nothing in proportion to the size.
    """
    zeros = memoryview(_ZEROS)
    offset = 0
    for segment in segments:
        length = segment if isinstance(segment, int) else len(segment)
        lo, hi = max(start, offset), min(stop, offset + length)
        if lo < hi:
            if isinstance(segment, int):
                for pos in range(lo, hi, len(_ZEROS)):
                    yield zeros[: min(len(_ZEROS), hi - pos)]
            else:
                yield segment[lo - offset : hi - offset]
        offset += length
        if offset >= stop:
            return


# Standard luminance DC table of ITU T.81 Annex K (categories 0..11) serves every component; the AC
# table holds the single symbol EOB (code "0"), which is all a solid-colour image needs.
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
_AC_BITS = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_AC_VALUES = (0,)


def _huffman_codes(bits: tuple[int, ...], values: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Canonical JPEG Huffman codes: symbol -> (code, length)."""
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    index = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


class _BitWriter:
    """Accumulates entropy-coded bits, stuffing a zero byte after every 0xFF."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.nbits += length
        while self.nbits >= 8:
            self.nbits -= 8
            byte = (self.acc >> self.nbits) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.acc &= (1 << self.nbits) - 1

    def flush(self) -> bytes:
        if self.nbits:
            self.write((1 << (8 - self.nbits)) - 1, 8 - self.nbits)  # pad with 1-bits
        return bytes(self.out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


@functools.lru_cache(maxsize=256)
def jpeg_bytes(width: int, height: int, color: tuple[int, int, int] = (32, 96, 192)) -> bytes:
    """A ``width`` x ``height`` baseline (SOF0) JFIF JPEG filled with ``color`` (YCbCr 4:4:4)."""
    _check_size(width, height)
    r, g, b = color
    ycc = (
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
        0.5 * r - 0.418688 * g - 0.081312 * b + 128,
    )
    # A constant 8x8 block has only a DC coefficient: 8 * (sample - 128); the quantisation table is all 1s.
    dcs = [8 * (min(255, max(0, round(v))) - 128) for v in ycc]
    dc_codes = _huffman_codes(_DC_BITS, _DC_VALUES)
    eob_code, eob_length = _huffman_codes(_AC_BITS, _AC_VALUES)[0]
    writer = _BitWriter()
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    for index in range(blocks):
        for dc in dcs:
            diff = dc if index == 0 else 0  # DC is coded as the difference from the previous block
            category = abs(diff).bit_length()
            code, length = dc_codes[category]
            writer.write(code, length)
            if category:
                writer.write(diff if diff > 0 else diff - 1, category)
            writer.write(eob_code, eob_length)
    components = b"".join(bytes((cid, 0x11, 0)) for cid in (1, 2, 3))
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0)),
            _segment(0xDB, b"\x00" + b"\x01" * 64),
            _segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + components),
            _segment(
                0xC4,
                b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALUES) + b"\x10" + bytes(_AC_BITS) + bytes(_AC_VALUES),
            ),
            _segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00"),
            writer.flush(),
            b"\xff\xd9",
        )
    )


def sample_image(
    image_format: str = "png",
    size: tuple[int, int] = (64, 64),
    color: tuple[int, int, int] = (32, 96, 192),
) -> bytes:
    """A small valid image to upload in tests (``image_format`` is ``"png"`` or ``"jpeg"``).

    Example::

        form.add_field("uploadedImage", sample_image(), filename="photo.png", content_type="image/png")
    """
    if image_format == "png":
        return png_bytes(size[0], size[1], color)
    if image_format in ("jpeg", "jpg"):
        return jpeg_bytes(size[0], size[1], color)
    raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")


def _check_size(width: int, height: int) -> None:
    if not (0 < width <= 65535 and 0 < height <= 65535):
        raise ValueError(f"image size must be between 1 and 65535 pixels, not {width}x{height}")


# ------------------------------------------------------------------------------------------------- PDF


@functools.lru_cache(maxsize=64)
def pdf_bytes(width: int, height: int, color: tuple[int, int, int] = (32, 96, 192)) -> bytes:
    """A one-page PDF 1.6 of ``width`` x ``height`` points filled with ``color`` (a valid file: header,
    catalog, page tree, page, content stream, cross-reference table with exact offsets, trailer).

    Product Photoshoot's ``format=2`` (PDF 1.6) download is documented; its content is not: a page
    the size of the image, filled with its colour, stands in for it.
    """
    _check_size(width, height)
    red, green, blue = (f"{c / 255:.3f}" for c in color)
    content = f"{red} {green} {blue} rg 0 0 {width} {height} re f".encode("ascii")
    objects = (
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents 4 0 R "
        "/Resources << >> >>".encode("ascii"),
        b"<< /Length " + str(len(content)).encode("ascii") + b" >>\nstream\n" + content + b"\nendstream",
    )
    out = bytearray(b"%PDF-1.6\n%\xe2\xe3\xcf\xd3\n")  # the binary comment line marks a binary file
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += b"".join(f"{offset:010d} 00000 n \n".encode("ascii") for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode("ascii")
    return bytes(out)
