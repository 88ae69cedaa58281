"""A self-contained HTML file: every local image becomes a base64 `data:` URI, so that
report.html opens anywhere on its own (mailed, copied off the cluster, attached to a ticket).
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")', re.IGNORECASE)


def embed_images(html: str, base: str | Path) -> str:
    """Replace each `<img src="relative/path">` that names a file under `base` by a data
    URI of that file; remote (`http:`, `data:`) and missing images are left as they are."""
    base = Path(base)

    def inline(match: re.Match) -> str:
        src = match[2]
        path = base / src
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE) or not path.is_file():
            return match[0]
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{match[1]}data:{mime};base64,{data}{match[3]}"

    return IMG_SRC.sub(inline, html)
