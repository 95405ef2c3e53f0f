#!/usr/bin/env python3
"""Serves a folder of packaged content over HTTP with CORS, as a CDN would, so that the
reference players keyplex serves (another origin) can fetch manifests and segments:
    scripts/serve-content.py DIR [PORT]        (default port 8000, loopback only)"""

import functools
import http.server
import sys


class CorsFiles(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mpd": "application/dash+xml", ".m3u8": "application/vnd.apple.mpegurl",
        ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".ts": "video/mp2t",
    }

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    port = int(sys.argv[2]) if len(sys.argv) == 3 else 8000
    handler = functools.partial(CorsFiles, directory=sys.argv[1])
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving {sys.argv[1]} at http://127.0.0.1:{port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
