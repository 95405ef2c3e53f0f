// hls.js: HLS with AES-128 (the key from the playlist's EXT-X-KEY URI, e.g. keyplex's
// /{tenant}/hls/v1/keys/{kid}) or, for fMP4 with KEYFORMAT "org.w3.clearkey", ClearKey
// EME with a licence URL. The token goes with key and licence requests only.
'use strict';

(function () {
  const { setup, log, error, withToken, clearKeyKids } = window.keyplexPlayers;
  const E = Hls.ErrorDetails;
  const LICENCE_ERRORS = new Set(
    [E.KEY_LOAD_ERROR, E.KEY_LOAD_TIMEOUT, E.KEY_SYSTEM_LICENSE_REQUEST_FAILED, E.KEY_SYSTEM_NO_KEYS,
      E.KEY_SYSTEM_NO_ACCESS, E.KEY_SYSTEM_NO_SESSION, E.KEY_SYSTEM_NO_CONFIGURED_LICENSE,
      E.KEY_SYSTEM_SESSION_UPDATE_FAILED, E.KEY_SYSTEM_STATUS_INTERNAL_ERROR, E.FRAG_DECRYPT_ERROR]
      .filter(Boolean),
  );

  async function load(video, values) {
    const config = {
      // Key requests (hls.js gives them a `keyInfo` context) carry the token; playlists
      // and segments do not.
      xhrSetup(xhr, url, context) {
        if (!context || !context.keyInfo) return;
        const auth = withToken(url, values.token, values.tokenmode);
        log('licence', `key request to ${url}`);
        xhr.open('GET', auth.url, true);
        for (const [name, value] of Object.entries(auth.headers)) xhr.setRequestHeader(name, value);
      },
    };
    if (values.licence) {
      config.emeEnabled = true;
      config.drmSystems = { 'org.w3.clearkey': { licenseUrl: values.licence } };
      config.licenseXhrSetup = (xhr, url, keyContext, challenge) => {
        const auth = withToken(url, values.token, values.tokenmode);
        const kids = clearKeyKids(challenge);
        log('licence', `licence request to ${url}${kids ? ' for kids ' + kids.join(', ') : ''}`);
        xhr.open('POST', auth.url, true);
        for (const [name, value] of Object.entries(auth.headers)) xhr.setRequestHeader(name, value);
        return challenge;
      };
    }
    const hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (event, data) => {
      const status = data.response && data.response.code ? ` HTTP ${data.response.code}` : '';
      const url = data.url || (data.context && data.context.url) || (data.frag && data.frag.decryptdata && data.frag.decryptdata.uri) || '';
      const text = `${data.error ? data.error.message : data.details}${status}${url ? ' from ' + url : ''}`;
      if (data.fatal) {
        error('hls.js', data.details, text, LICENCE_ERRORS.has(data.details));
      } else {
        log('error', `hls.js ${data.details} (recovering): ${text}`);
      }
    });
    hls.on(Hls.Events.KEY_LOADED, (event, data) => {
      const uri = data.keyInfo && data.keyInfo.decryptdata ? data.keyInfo.decryptdata.uri : '';
      log('licence', `key loaded${uri ? ' from ' + uri : ''}`);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (event, data) => log('info', `manifest parsed: ${data.levels.length} level(s)`));
    hls.loadSource(values.manifest);
    hls.attachMedia(video);
    hls.once(Hls.Events.MEDIA_ATTACHED, () => {
      video.play().catch((e) => log('info', `autoplay refused: ${e.message} — press play`));
    });
    return () => hls.destroy();
  }

  setup({ library: `hls.js ${Hls.version}`, load });
})();
