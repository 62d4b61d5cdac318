"""Small media for tests: a real 1x1 PNG."""

from __future__ import annotations

import base64

PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4"
    "DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
PNG = base64.b64decode(PNG_BASE64)
