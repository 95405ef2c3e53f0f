// Shaka Player: DASH and HLS, any key system the browser has (ClearKey in every browser;
// Widevine/PlayReady where a CDM is present). The token goes with licence and key requests
// only, through a request filter.
'use strict';

(function () {
  const { setup, log, error, withToken, clearKeyKids, answerText } = window.keyplexPlayers;
  shaka.polyfill.installAll();
  const RequestType = shaka.net.NetworkingEngine.RequestType;
  const Category = shaka.util.Error.Category;
  const TOKEN_REQUESTS = new Set([RequestType.LICENSE, RequestType.KEY]);

  function codeName(code) {
    return Object.keys(shaka.util.Error.Code).find((name) => shaka.util.Error.Code[name] === code) || '';
  }

  // A licence error: anything in the DRM category, or a failed licence or key request.
  function isLicenceError(e) {
    if (e.category === Category.DRM) return true;
    return e.category === Category.NETWORK && Array.isArray(e.data) && TOKEN_REQUESTS.has(e.data[4]);
  }

  function describe(e) {
    const parts = [codeName(e.code)];
    if (e.category === Category.NETWORK && e.data && e.data[1]) {
      parts.push(`HTTP ${e.data[1]} from ${e.data[0]}`);
      if (e.data[2]) parts.push(String(e.data[2]).slice(0, 200));
    } else if (e.data && e.data.length) {
      const inner = e.data.find((d) => d && d.code && d.category);
      if (inner) parts.push(`caused by ${inner.code} ${codeName(inner.code)}${inner.data && inner.data[1] ? ' HTTP ' + inner.data[1] : ''}`);
      else parts.push(e.data.filter((d) => typeof d === 'string' || typeof d === 'number').join(' '));
    }
    return parts.filter(Boolean).join(' — ');
  }

  // "kid:key,kid:key" (hex) → Shaka's drm.clearKeys, for checking content without a
  // licence server.
  function inlineKeys(text) {
    const keys = {};
    for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
      const [kid, key] = pair.split(':').map((p) => p.trim().replace(/-/g, '').toLowerCase());
      if (!/^[0-9a-f]{32}$/.test(kid || '') || !/^[0-9a-f]{32}$/.test(key || '')) {
        throw new Error(`inline keys: "${pair}" is not kid:key in hex`);
      }
      keys[kid] = key;
    }
    return keys;
  }

  async function load(video, values) {
    const player = new shaka.Player();
    await player.attach(video);
    const config = { drm: { servers: {} } };
    if (values.licence) config.drm.servers[values.keysystem || 'org.w3.clearkey'] = values.licence;
    if (values.clearkeys) config.drm.clearKeys = inlineKeys(values.clearkeys);
    player.configure(config);

    const net = player.getNetworkingEngine();
    net.registerRequestFilter((type, request) => {
      if (!TOKEN_REQUESTS.has(type)) return;
      const kids = type === RequestType.LICENSE ? clearKeyKids(request.body || new ArrayBuffer(0)) : null;
      log('licence', `${type === RequestType.KEY ? 'key' : 'licence'} request to ${request.uris[0]}${kids ? ' for kids ' + kids.join(', ') : ''}`);
      const auth = withToken(request.uris[0], values.token, values.tokenmode);
      request.uris = [auth.url, ...request.uris.slice(1)];
      Object.assign(request.headers, auth.headers);
    });
    net.registerResponseFilter((type, response) => {
      if (!TOKEN_REQUESTS.has(type)) return;
      if (type === RequestType.KEY) {
        log('licence', `key answer: HTTP ${response.status}, ${response.data.byteLength} bytes`);
        return;
      }
      const kids = clearKeyKids(response.data);
      log('licence', `licence answer: HTTP ${response.status}${kids ? ', keys for kids ' + kids.join(', ') : ''}`);
    });
    player.addEventListener('error', (event) => {
      const e = event.detail;
      error('shaka', e.code, describe(e), isLicenceError(e));
    });
    player.addEventListener('drmsessionupdate', () => log('eme', 'shaka: DRM session updated'));
    player.addEventListener('keystatuschanged', () => log('eme', 'shaka: key status changed'));

    try {
      await player.load(values.manifest);
      log('info', `manifest loaded (${player.getLoadMode ? 'load mode ' + player.getLoadMode() : 'ok'}); key system: ${player.keySystem() || 'none (clear or AES-128)'}`);
      await video.play().catch((e) => log('info', `autoplay refused: ${e.message} — press play`));
    } catch (e) {
      error('shaka', e.code, describe(e), isLicenceError(e));
    }
    return () => player.destroy();
  }

  setup({ library: `Shaka Player ${shaka.Player.version}`, load });
})();
