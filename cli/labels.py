"""Device labels: product name, device id, the claim code as text and as a QR code.

A label is a 62 x 29 mm image at 300 dpi (a common thermal label size), saved as one PNG per device,
or laid out 3 x 9 on A4 pages of one PDF sheet (`LabelSheet`), written page by page so that
10 000 labels never sit in memory at once.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

DPI = 300
LABEL_SIZE = (732, 343)  # 62 x 29 mm at 300 dpi
MARGIN = 18
A4 = (2480, 3508)  # 210 x 297 mm at 300 dpi
SHEET_COLUMNS = 3
SHEET_ROWS = 9
_GAP = 24

_FONTS = {
    "bold": ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"),
    "regular": ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"),
    "mono": ("DejaVuSansMono-Bold.ttf", "LiberationMono-Bold.ttf", "DejaVuSansMono.ttf"),
}


@cache
def font(kind: str, size: int) -> Any:
    for name in _FONTS[kind]:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)  # Pillow's bundled font: always there


def claim_url(code: str, base_url: str | None) -> str:
    """What the QR code encodes: the claim page with the code in the fragment, or the bare code.

    The fragment never reaches a server log; the claim page is expected to read `#claim=<code>` and pre-fill it.
    """
    if not base_url:
        return code
    return f"{base_url.rstrip('/')}/#claim={code}"


def qr_image(data: str, size: int) -> Image.Image:
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=2, box_size=1)
    qr.add_data(data)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    modules = len(matrix)
    small = Image.new("L", (modules, modules), 255)
    small.putdata([0 if cell else 255 for row in matrix for cell in row])
    scale = max(1, size // modules)  # whole pixels per module keep the code crisp
    return small.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)


def _fit(draw: ImageDraw.ImageDraw, text: str, kind: str, size: int, width: int) -> Any:
    while size > 10:
        face = font(kind, size)
        if draw.textlength(text, font=face) <= width:
            return face
        size -= 2
    return font(kind, size)


def render_label(product: str, device_id: str, display_code: str, qr_data: str) -> Image.Image:
    """One label, grayscale: QR code on the left; product, "Claim code", the code and the id on the right."""
    image = Image.new("L", LABEL_SIZE, 255)
    draw = ImageDraw.Draw(image)
    qr_size = LABEL_SIZE[1] - 2 * MARGIN
    qr = qr_image(qr_data, qr_size)
    image.paste(qr, (MARGIN, MARGIN + (qr_size - qr.height) // 2))
    x = MARGIN * 2 + qr_size
    width = LABEL_SIZE[0] - x - MARGIN
    draw.text((x, MARGIN), product, fill=0, font=_fit(draw, product, "bold", 44, width))
    draw.text((x, 108), "Claim code", fill=0, font=font("regular", 26))
    draw.text((x, 142), display_code, fill=0, font=_fit(draw, display_code, "mono", 56, width))
    draw.text((x, 232), "Device", fill=0, font=font("regular", 22))
    draw.text((x, 262), device_id, fill=0, font=_fit(draw, device_id, "mono", 30, width))
    draw.rectangle((0, 0, LABEL_SIZE[0] - 1, LABEL_SIZE[1] - 1), outline=160, width=2)
    return image


def save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", dpi=(DPI, DPI), optimize=False)


class LabelSheet:
    """A multi-page A4 PDF of labels; pages are appended to the file as they fill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._page: Image.Image | None = None
        self._slot = 0
        self.pages = 0
        self.labels = 0

    def _origin(self, slot: int) -> tuple[int, int]:
        grid_w = SHEET_COLUMNS * LABEL_SIZE[0] + (SHEET_COLUMNS - 1) * _GAP
        grid_h = SHEET_ROWS * LABEL_SIZE[1] + (SHEET_ROWS - 1) * _GAP
        left = (A4[0] - grid_w) // 2
        top = (A4[1] - grid_h) // 2
        row, column = divmod(slot, SHEET_COLUMNS)
        return left + column * (LABEL_SIZE[0] + _GAP), top + row * (LABEL_SIZE[1] + _GAP)

    def add(self, label: Image.Image) -> None:
        if self._page is None:
            self._page = Image.new("L", A4, 255)
            self._slot = 0
        self._page.paste(label, self._origin(self._slot))
        self._slot += 1
        self.labels += 1
        if self._slot == SHEET_COLUMNS * SHEET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._page is None:
            return
        self._page.save(self.path, format="PDF", resolution=DPI, append=self.pages > 0)
        self.pages += 1
        self._page = None

    def close(self) -> None:
        self._flush()
