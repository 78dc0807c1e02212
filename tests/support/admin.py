"""Payload's admin as an editor uses it, in a real browser (tests/support/browser.py): the forms,
buttons and upload field a person clicks, never the API behind them."""

from __future__ import annotations

import re
import struct
import zlib

from playwright.sync_api import Page

SAVED = 30_000  # ms: a save answers in about a second on an idle machine


def png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (Payload runs images through sharp, which rejects anything else)."""
    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def create_first_user(page: Page, base: str, email: str, password: str) -> None:
    """/admin on an empty database sends a person to the first user's form."""
    page.goto(f"{base}/admin")
    page.wait_for_url(re.compile(r"/admin/create-first-user$"), timeout=SAVED)
    page.fill("#field-email", email)
    page.fill("#field-password", password)
    page.fill("#field-confirm-password", password)
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"{base}/admin", timeout=SAVED)


def log_out(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/logout")
    page.wait_for_url(re.compile(r"/admin/login"), timeout=SAVED)


def log_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/admin/login")
    page.fill("#field-email", email)
    page.fill("#field-password", password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(f"{base}/admin", timeout=SAVED)


def upload_image(page: Page, base: str, name: str, content: bytes, alt: str) -> str:
    """Media -> Create new: the admin's upload field, then Save; the new document's URL."""
    page.goto(f"{base}/admin/collections/media/create")
    page.set_input_files(
        "input[type=file]", files=[{"name": name, "mimeType": "image/png", "buffer": content}]
    )
    page.fill("#field-alt", alt)
    page.click("#action-save")
    page.wait_for_url(re.compile(r"/admin/collections/media/\d+$"), timeout=SAVED)
    return page.url


def create_page(page: Page, base: str, title: str, slug: str, body: str) -> str:
    """Pages -> Create new: title, slug, a paragraph typed into the rich-text editor, Save."""
    page.goto(f"{base}/admin/collections/pages/create")
    page.fill("#field-title", title)
    page.fill("#field-slug", slug)
    page.locator("[contenteditable=true]").first.click()
    page.keyboard.type(body)
    page.click("#action-save")
    page.wait_for_url(re.compile(r"/admin/collections/pages/\d+$"), timeout=SAVED)
    return page.url
