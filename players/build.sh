#!/usr/bin/env bash
# Builds keyplex's reference players into players/dist (served at /players/ by keyplex;
# `[server] players_dir` points elsewhere): the pages of players/src plus the three player
# libraries, installed from npm at the versions pinned in package-lock.json. Nothing is
# fetched when a page runs.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null; then
  echo "players/build.sh needs node and npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
# --ignore-scripts: the libraries ship built files; no install script has anything to do.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

out=dist
rm -rf "$out.tmp"
mkdir -p "$out.tmp/lib"
cp src/*.html src/*.js src/*.css "$out.tmp/"
cp node_modules/shaka-player/dist/shaka-player.compiled.js "$out.tmp/lib/"
cp node_modules/dashjs/dist/modern/umd/dash.all.min.js "$out.tmp/lib/"
cp node_modules/hls.js/dist/hls.min.js "$out.tmp/lib/"
# The libraries' licences travel with them.
cp node_modules/shaka-player/LICENSE "$out.tmp/lib/shaka-player.LICENSE"
cp node_modules/dashjs/LICENSE.md "$out.tmp/lib/dashjs.LICENSE.md"
cp node_modules/hls.js/LICENSE "$out.tmp/lib/hls.js.LICENSE"
node -e '
  const v = (p) => require("./node_modules/" + p + "/package.json").version;
  console.log(JSON.stringify({ "shaka-player": v("shaka-player"), dashjs: v("dashjs"), "hls.js": v("hls.js") }, null, 2));
' > "$out.tmp/lib/versions.json"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "reference players built in players/$out ($(tr -d '\n ' < "$out/lib/versions.json"))"
