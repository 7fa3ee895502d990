#!/usr/bin/env python3
"""Container health check for the gateway image (Docker's HEALTHCHECK; curl is not in the image).

``memotion-healthcheck [PATH | URL]`` exits 0 when the gateway on this container answers 200 on PATH
(default ``/readyz``: models and OCR loaded), or URL answers 200 (the RayJob's probes use it for
Ray's own health endpoints), else 1 with the reason on stderr. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def health_url(path: str = "/readyz") -> str:
    host = os.environ.get("MEMOTION_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = os.environ.get("MEMOTION_PORT", "8000")
    return f"http://{host}:{port}{path}"


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else "/readyz"
    url = target if target.startswith(("http://", "https://")) else health_url(target)
    timeout_s = float(os.environ.get("MEMOTION_HEALTHCHECK_TIMEOUT_S", "4"))
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        print(f"unhealthy: {url}: {err}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
