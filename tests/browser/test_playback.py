"""Real playback in headless Chromium: content packaged by Shaka Packager with keys from
keyplex, played by the reference players that keyplex serves at /players/, with licences and
keys from keyplex's ClearKey licence server and HLS key delivery:

(a) DASH CENC, Shaka Player, ClearKey licence;
(b) DASH CBCS, Shaka Player, ClearKey licence;
(c) HLS AES-128 (MPEG-TS), hls.js, key delivery.

Each plays past 2 s with a token that covers the content, and keyplex's answer names the
right key id and holds the right key. With a wrong, expired or not-covering token the
player reports a licence error, keyplex delivers no key, and playback never reaches 2 s.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import keyplex_proc  # tests/keyplex_proc.py (conftest puts tests/ on sys.path)
from conftest import LICENCE_SECRET, TENANT, b64url, explain, mint_token

ROOT = Path(__file__).resolve().parents[2]
TARGET = 2.0
DASHIF_CLEARKEY = '<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0"/>'


def keyplex_key(client, content_id: str) -> dict:
    """keyplex's key for the content's ALL slot (hex and UUID forms)."""
    keys = json.loads(client("cpix", "--content-id", content_id, "--drm", "clearkey"))
    (key,) = keys["content_key_list"]
    keyplex_proc.saw_key(bytes.fromhex(key["key_hex"]))
    return key


def run_packager(tools, args: list[str]) -> None:
    result = subprocess.run([str(tools["packager"]), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def content(tools, clip, client, keyplex, cdn):
    """The three packagings, written into the CDN's root; their keys from keyplex."""
    root, packaged = cdn["root"], {}
    for name, scheme in (("movie-cenc", "cenc"), ("movie-cbcs", "cbcs")):
        # The raw-key arguments keyplex prints for Shaka Packager: its kid, key and
        # ClearKey (W3C common) pssh box.
        args = client("packager-args", "--content-id", name, "--drm", "clearkey",
                      "--scheme", scheme).split()
        out = root / name
        run_packager(tools, [
            f"in={clip},stream=video,init_segment={out}/v/init.mp4,segment_template={out}/v/$Number$.m4s",
            f"in={clip},stream=audio,init_segment={out}/a/init.mp4,segment_template={out}/a/$Number$.m4s",
            *args, "--clear_lead", "0", "--segment_duration", "1",
            # VOD: without it the packager writes a dynamic (live) MPD whose live edge runs
            # past the clip's end seconds after packaging.
            "--generate_static_live_mpd",
            "--mpd_output", str(out / "manifest.mpd"),
        ])
        packaged[scheme] = {"content_id": name, "key": keyplex_key(client, name),
                            "manifest": f"{cdn['base']}/{name}/manifest.mpd"}
        # dash.js takes the W3C common pssh that Shaka Packager signals as "keyids" init
        # data, which Chromium refuses; with the DASH-IF ClearKey element in its place (what
        # keyplex's DASH signaling writes) it asks for the MPD's default_KID.
        mpd = (out / "manifest.mpd").read_text()
        assert 'type="static"' in mpd, mpd[:600]
        common = re.compile(r'<ContentProtection schemeIdUri="urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b">.*?</ContentProtection>', re.S)
        assert common.search(mpd), mpd
        (out / "manifest-dashif.mpd").write_text(common.sub(DASHIF_CLEARKEY, mpd))
        packaged[scheme]["manifest_dashif"] = f"{cdn['base']}/{name}/manifest-dashif.mpd"

    name = "movie-aes"
    key = keyplex_key(client, name)
    out = root / name
    # The key URI keyplex's HLS signaling writes (the tenant's default hls_key_url).
    key_uri = f"{keyplex['base']}/{TENANT}/hls/v1/keys/{key['key_id']}"
    run_packager(tools, [
        f"in={clip},stream=video,segment_template={out}/v/$Number$.ts,playlist_name=v.m3u8",
        f"in={clip},stream=audio,segment_template={out}/a/$Number$.ts,playlist_name=a.m3u8,hls_group_id=audio",
        "--enable_raw_key_encryption", "--keys", f"label=:key_id={key['key_id_hex']}:key={key['key_hex']}",
        "--protection_scheme", "aes128", "--iv", key["iv_hex"], "--hls_key_uri", key_uri,
        "--clear_lead", "0", "--segment_duration", "1",
        "--hls_master_playlist_output", str(out / "master.m3u8"),
    ])
    playlist = (out / "v.m3u8").read_text()
    assert f'METHOD=AES-128,URI="{key_uri}"' in playlist, playlist
    packaged["aes128"] = {"content_id": name, "key": key, "key_uri": key_uri,
                          "manifest": f"{cdn['base']}/{name}/master.m3u8"}
    return packaged


def licence_url(keyplex) -> str:
    return f"{keyplex['base']}/{TENANT}/clearkey/v1/licenses"


def assert_played(result: dict) -> None:
    assert result["outcome"] == "played", explain(result)
    report = result["report"]
    assert report["currentTime"] >= TARGET, explain(result)
    assert report["decodedFrames"] and report["decodedFrames"] > 0, explain(result)
    pixels = result["videoPixels"]
    # testsrc: colour bars, a gradient and a counter; a decoder fed undecryptable data
    # shows black or garbage-grey.
    assert pixels["brightFraction"] > 0.3 and pixels["colours"] >= 16, pixels


def assert_clearkey_licence(result: dict, key: dict, token: str) -> None:
    """keyplex answered the licence request for exactly this kid, with this key."""
    licences = [r for r in result["licenceRequests"] if "/clearkey/v1/licenses" in r["url"]]
    assert licences, "no licence request reached keyplex\n" + explain(result)
    kid = b64url(bytes.fromhex(key["key_id_hex"]))
    for req in licences:
        assert req["method"] == "POST" and req["status"] == 200, explain(result)
        assert req["authorization"] == f"Bearer {token}"
        assert json.loads(req["requestBody"])["kids"] == [kid]
        answer = json.loads(req["responseBody"])
        assert [(k["kid"], k["k"], k["kty"]) for k in answer["keys"]] == \
            [(kid, b64url(bytes.fromhex(key["key_hex"])), "oct")]


def assert_licence_refused(result: dict, key: dict, statuses: set[int]) -> None:
    assert result["outcome"] == "licence-error", explain(result)
    assert (result["report"].get("currentTime") or 0) < TARGET, explain(result)
    # Not one frame decoded (the player may still nudge the playhead over a stall).
    assert result["report"].get("decodedFrames") == 0, explain(result)
    refused = [r for r in result["licenceRequests"] if r["status"] in statuses]
    assert refused, "keyplex did not refuse the licence/key request\n" + explain(result)
    raw_key = bytes.fromhex(key["key_hex"])
    for req in result["licenceRequests"]:
        assert req["status"] != 200, explain(result)
        assert raw_key not in req["responseBody"] and b64url(raw_key).encode() not in req["responseBody"]


# (a) DASH CENC, Shaka Player, keyplex's ClearKey licence ----------------------------------

def test_dash_cenc_plays_in_shaka_with_the_keyplex_clearkey_licence(play, content, keyplex, tmp_path):
    movie = content["cenc"]
    token = mint_token([movie["content_id"]])
    screenshot = os.environ.get("KEYPLEX_PLAYER_SCREENSHOT") or tmp_path / "shaka.png"
    result = play("shaka.html", manifest=movie["manifest"], licence=licence_url(keyplex), token=token,
                  screenshot=screenshot)
    assert_played(result)
    assert_clearkey_licence(result, movie["key"], token)
    assert Path(screenshot).stat().st_size > 10_000


def test_dash_cenc_with_a_token_signed_by_another_key_fails_with_a_licence_error(play, content, keyplex):
    movie = content["cenc"]
    forged = mint_token([movie["content_id"]], secret="not-" + LICENCE_SECRET)
    result = play("shaka.html", manifest=movie["manifest"], licence=licence_url(keyplex), token=forged)
    assert_licence_refused(result, movie["key"], {401})
    assert any(e["source"] == "shaka" and e["code"] == "6007" for e in result["report"]["errors"]), \
        explain(result)


def test_dash_cenc_plays_in_dashjs_with_the_keyplex_clearkey_licence(play, content, keyplex):
    movie = content["cenc"]
    token = mint_token([movie["content_id"]])
    result = play("dashjs.html", manifest=movie["manifest_dashif"], licence=licence_url(keyplex), token=token)
    assert_played(result)
    assert_clearkey_licence(result, movie["key"], token)


# (b) DASH CBCS, Shaka Player, keyplex's ClearKey licence ----------------------------------

def test_dash_cbcs_plays_in_shaka_with_the_keyplex_clearkey_licence(play, content, keyplex):
    movie = content["cbcs"]
    token = mint_token([movie["content_id"]])
    result = play("shaka.html", manifest=movie["manifest"], licence=licence_url(keyplex), token=token)
    assert_played(result)
    assert_clearkey_licence(result, movie["key"], token)


def test_dash_cbcs_with_an_expired_token_fails_with_a_licence_error(play, content, keyplex):
    movie = content["cbcs"]
    expired = mint_token([movie["content_id"]], expires_in=-600)
    result = play("shaka.html", manifest=movie["manifest"], licence=licence_url(keyplex), token=expired)
    assert_licence_refused(result, movie["key"], {401})


# (c) HLS AES-128, hls.js, keyplex's key delivery --------------------------------------------

def test_hls_aes128_plays_in_hlsjs_with_keyplex_key_delivery(play, content):
    movie = content["aes128"]
    token = mint_token([movie["content_id"]])
    result = play("hlsjs.html", manifest=movie["manifest"], token=token)
    assert_played(result)
    keys = [r for r in result["licenceRequests"] if "/hls/v1/keys/" in r["url"]]
    assert keys, "no key request reached keyplex\n" + explain(result)
    for req in keys:
        assert req["url"] == movie["key_uri"] and req["status"] == 200, explain(result)
        assert req["authorization"] == f"Bearer {token}"
        assert req["responseBody"] == bytes.fromhex(movie["key"]["key_hex"])


@pytest.mark.parametrize("why", ["expired", "another-content"])
def test_hls_aes128_without_a_valid_entitlement_fails_with_a_key_error(play, content, why):
    movie = content["aes128"]
    if why == "expired":
        token, statuses = mint_token([movie["content_id"]], expires_in=-600), {401}
    else:
        token, statuses = mint_token(["some-other-movie"]), {403}
    result = play("hlsjs.html", manifest=movie["manifest"], token=token)
    assert_licence_refused(result, movie["key"], statuses)
    assert any(e["code"] == "keyLoadError" for e in result["report"]["errors"]), explain(result)


def test_the_token_can_travel_as_a_query_parameter(play, content):
    """For setups where players cannot set headers: `?token=` on the key URL."""
    movie = content["aes128"]
    token = mint_token([movie["content_id"]])
    result = play("hlsjs.html", manifest=movie["manifest"], token=token, tokenmode="query")
    assert_played(result)
    keys = [r for r in result["licenceRequests"] if "/hls/v1/keys/" in r["url"]]
    assert keys, explain(result)
    for req in keys:
        assert req["url"] == f"{movie['key_uri']}?token={token}" and req["status"] == 200, explain(result)
        assert req["authorization"] is None
