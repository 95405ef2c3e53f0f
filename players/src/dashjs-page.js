// dash.js: DASH with ClearKey (or Widevine/PlayReady where the browser has the CDM). The
// token goes with licence requests only (`httpRequestHeaders`, or `?token=` in the
// licence URL).
'use strict';

(function () {
  const { setup, log, error, withToken, clearKeyKids } = window.keyplexPlayers;
  const events = dashjs.MediaPlayer.events;
  const protection = (dashjs.Protection && dashjs.Protection.events) || {};

  // dash.js's protection error codes are 100–199 (MEDIA_KEYERR…, licence request failures).
  const isLicenceCode = (code) => Number(code) >= 100 && Number(code) < 200;

  async function load(video, values) {
    const player = dashjs.MediaPlayer().create();
    player.updateSettings({
      streaming: {
        // dash.js syncs its clock with a public time server unless the MPD names one
        // (UTCTiming); the page's own server answers instead, so that nothing leaves for
        // the internet. keyplex's /healthz carries a Date header.
        utcSynchronization: {
          defaultTimingSource: {
            scheme: 'urn:mpeg:dash:utc:http-head:2014',
            value: new URL('../healthz', location.href).href,
          },
        },
      },
    });
    player.initialize(video, null, true);
    if (values.licence) {
      const keySystem = values.keysystem || 'org.w3.clearkey';
      const auth = withToken(values.licence, values.token, values.tokenmode);
      player.setProtectionData({
        [keySystem]: { serverURL: auth.url, httpRequestHeaders: auth.headers },
      });
    }
    player.on(events.ERROR, (e) => {
      const err = e.error || {};
      error('dash.js', err.code || 'error', err.message || JSON.stringify(err).slice(0, 300), isLicenceCode(err.code));
    });
    player.on(events.PLAYBACK_ERROR, (e) => {
      const err = e.error || {};
      error('dash.js', err.code || 'playback', err.message || 'playback error', false);
    });
    const on = (name, handler) => {
      if (protection[name]) player.on(protection[name], handler);
    };
    on('KEY_SYSTEM_SELECTED', (e) => {
      const ks = e.data && e.data.keySystem;
      log('eme', `dash.js: key system selected ${ks ? ks.systemString || '' : ''}`);
    });
    on('KEY_SESSION_CREATED', () => log('eme', 'dash.js: key session created'));
    on('LICENSE_REQUEST_SENDING', (e) => log('licence', `licence request to ${e.url || values.licence}`));
    on('LICENSE_REQUEST_COMPLETE', (e) => {
      if (e.error) {
        log('licence', `licence request failed: ${e.error.message || e.error}`);
        return;
      }
      const message = e.data && e.data.message;
      const kids = message ? clearKeyKids(message) : null;
      log('licence', `licence answer received${kids ? ' for kids ' + kids.join(', ') : ''}`);
    });
    on('KEY_ADDED', () => log('eme', 'dash.js: key added'));
    on('KEY_ERROR', (e) => {
      const err = e.error || {};
      error('dash.js', err.code || 'key', err.message || 'key error', true);
    });
    on('KEY_STATUSES_CHANGED', () => log('eme', 'dash.js: key statuses changed'));
    player.attachSource(values.manifest);
    return () => player.destroy();
  }

  const version = dashjs.Version || (dashjs.MediaPlayer().create().getVersion ? dashjs.MediaPlayer().create().getVersion() : '');
  setup({ library: `dash.js ${version}`, load });
})();
