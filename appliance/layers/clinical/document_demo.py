"""The demo's documents on the record (`healthos up --demo`), and the small valid files they are made of: at each
demo facility, a referral letter from a private clinic and a signed consent form (one-page PDFs) and a wound
photograph (a PNG) on the charts of the first three living adults by MRN, so the chart's Documents tab has
something to open. Filed through the service a clinician's upload uses (`documents.upload`), by the clinical demo's
principal; skipped where it has filed one already.

No binary is checked in and no imaging library is needed: the PDF is written object by object with its
cross-reference table (ISO 32000-1 section 7.5), the PNG as its signature, IHDR, one zlib-compressed IDAT and IEND
chunks, each with its CRC-32 (PNG specification section 5). Tests use the same two makers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
import zlib

import sqlalchemy as sa

from appliance.layers.clinical import documents
from appliance.layers.clinical.demo import demo_principal
from appliance.substrate import record
from appliance.substrate.db import Database

# What each of the first three charts gets: (category, title, days before today the document is dated, its file).
PLAN = (
    ("referral_letter", "Referral letter from Mercy Private Clinic", 3,
     lambda: tiny_pdf(["Mercy Private Clinic", "Referral: exertional chest pain for three weeks.",
                       "ECG at the clinic: no acute changes. Please assess and advise.", "Dr A. Demo"])),
    ("consent_form", "Consent to surgery, signed", 1,
     lambda: tiny_pdf(["Consent to surgery", "I consent to the operation explained to me.", "Signed (demo)"])),
    ("clinical_photograph", "Wound photograph, left leg, day 2", 0, lambda: tiny_png(64, 48, (176, 84, 74))),
)
_LIVING_ADULTS = sa.text(
    "SELECT id FROM patient WHERE birth_date <= :adult AND NOT EXISTS (SELECT 1 FROM entry d WHERE "
    "d.patient_id = patient.id AND d.kind = 'death') ORDER BY mrn LIMIT :n")


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


def generate_document_demo(db: Database, slugs: list[str], as_of: dt.date | None = None) -> int:
    """The demo's documents at each facility of `slugs`; how many were filed."""
    filed = 0
    today = as_of or dt.date.today()
    for slug in slugs:
        # The demo's clinician files every category, as a clinician may (clinical.* in ACC-002).
        author = dataclasses.replace(demo_principal(slug), permissions=frozenset({documents.ANY_CATEGORY}))
        with db.tenant(slug) as conn:
            if conn.execute(sa.select(record.entry.c.id).where(record.entry.c.kind == documents.KIND,
                                                              record.entry.c.author_id == author.account_id)
                            .limit(1)).first():
                continue
            charts = conn.execute(_LIVING_ADULTS, {"adult": today.replace(year=today.year - 18, day=min(today.day, 28)),
                                                   "n": len(PLAN)}).scalars().all()
            for chart, (category, title, days, made) in zip(charts, PLAN, strict=False):
                documents.upload(conn, author, chart, category=category, title=title,
                                 document_date=today - dt.timedelta(days=days), content=made(), today=today)
                filed += 1
    return filed
