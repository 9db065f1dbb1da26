"""What CloudFront does in front of the page and its API calls, locally: the origin request headers of a
`/v1/*` call, and the static files S3 serves.

On AWS the page's `/v1/*` calls go viewer -> CloudFront -> HTTP API. CloudFront adds
`CloudFront-Viewer-Address` ("ip:port" of the viewer's connection) when the origin request policy
asks for it, and the custom origin header whose value only CloudFront and the functions know
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/adding-cloudfront-headers.html,
https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/add-origin-custom-headers.html).
A viewer cannot set either: CloudFront overwrites its own headers and the custom origin header. Locally
the gateway is the viewer's peer, so it does the same with the socket's address.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join
from werkzeug.utils import send_file
from werkzeug.wrappers import Response

from lambdas import constants as c

FORWARDED_FOR = "x-forwarded-for"
# Explicit types for what web/ holds (werkzeug adds "; charset=utf-8" to text types); anything else is
# guessed by mimetypes.
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".h": "text/plain",
}


def origin_request_headers(
    headers: Iterable[tuple[str, str]], peer: tuple[str, int], origin_verify: str
) -> list[tuple[str, str]]:
    """The viewer's headers as CloudFront forwards them: no client-sent CloudFront-* header, origin
    header or X-Forwarded-For survives; the viewer address and the origin secret are CloudFront's."""
    spoofable = {c.HEADER_ORIGIN_VERIFY, FORWARDED_FOR}
    out = [
        (name, value)
        for name, value in headers
        if name.lower() not in spoofable and not name.lower().startswith("cloudfront-")
    ]
    ip, port = peer
    out += [(c.HEADER_VIEWER_ADDRESS, f"{ip}:{port}"), (FORWARDED_FOR, ip)]
    if origin_verify:
        out.append((c.HEADER_ORIGIN_VERIFY, origin_verify))
    return out


def static_file(web_root: Path, path: str, environ: dict[str, Any]) -> Response:
    """The file under `web_root` for a decoded URL path (a directory means its index.html), with
    conditional GET and ranges as werkzeug does them; NotFound for anything else."""
    root = os.fspath(web_root.resolve())
    target = safe_join(root, path.lstrip("/")) if "\x00" not in path else None
    if target is None:
        raise NotFound()
    if os.path.isdir(target):
        target = os.path.join(target, "index.html")
    if not os.path.isfile(target):
        raise NotFound()
    suffix = os.path.splitext(target)[1].lower()
    response = send_file(target, environ, mimetype=CONTENT_TYPES.get(suffix), max_age=None)
    del response.headers["content-disposition"]  # S3 sends none for an inline file
    response.headers["x-content-type-options"] = "nosniff"
    return response
