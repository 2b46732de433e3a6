"""Small valid files made by code, for the demo's documents on the record and for tests: a one-page PDF carrying a
few lines of text, and a PNG of one colour. No binary is checked in and no imaging library is needed: the PDF is
written object by object with its cross-reference table (ISO 32000-1 section 7.5), the PNG as its signature, IHDR,
one zlib-compressed IDAT and IEND chunks, each with its CRC-32 (PNG specification section 5)."""

from __future__ import annotations

import struct
import zlib


def tiny_pdf(lines: list[str]) -> bytes:
    """A one-page A4 PDF with `lines` in Helvetica, top to bottom (ASCII; parentheses and backslashes escaped)."""
    def escaped(text: str) -> str:
        return text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = "".join(f"({escaped(line)}) Tj T* " for line in lines)
    stream = f"BT /F1 12 Tf 14 TL 56 780 Td {shown}ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A `width` x `height` 8-bit RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0 (none) before each scanline
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(row * height, 9)) + _chunk(b"IEND", b""))
