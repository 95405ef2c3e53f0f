// What the three reference players share: the form (manifest URL, licence URL, token), the
// event log, the playback status line, and an EME tracer that shows every EME call and event
// whichever library makes it. Loaded before the player library, so the tracer sees the
// library's first EME call.
//
// `window.keyplexReport` holds everything the page shows, for automated checks (the
// browser tests read it): `events`, `errors` (each with `licence: true` when it is a
// licence or key delivery failure), `keyStatuses` and `state`.
'use strict';

(function () {
  const report = { state: 'idle', events: [], errors: [], keyStatuses: {}, library: '' };
  window.keyplexReport = report;
  const started = performance.now();

  function hex(source) {
    const bytes = ArrayBuffer.isView(source)
      ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
      : new Uint8Array(source);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function base64urlToHex(text) {
    const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return Array.from(raw, (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
  }

  function uuid(hexKid) {
    return hexKid.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
  }

  // One line of the event log. `kind`: info, eme, licence, media or error.
  function log(kind, text) {
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    report.events.push({ t: Number(seconds), kind, text });
    const list = document.getElementById('events');
    if (!list) return;
    const row = document.createElement('li');
    row.className = kind;
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = seconds + ' s';
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = kind;
    const message = document.createElement('span');
    message.textContent = text;
    row.append(time, tag, message);
    list.append(row);
    list.scrollTop = list.scrollHeight;
  }

  // A player error. `licence`: whether it is a licence or key delivery failure (entitlement
  // refused, licence server unreachable, a licence the CDM rejects).
  function error(source, code, message, licence) {
    report.errors.push({ source, code: String(code), message, licence: Boolean(licence) });
    report.state = 'error';
    log('error', `${source} ${code}${licence ? ' (licence)' : ''}: ${message}`);
    const banner = document.getElementById('error');
    if (banner) {
      banner.hidden = false;
      banner.textContent = `${licence ? 'Licence error' : 'Playback error'} — ${source} ${code}: ${message}`;
    }
  }

  // The short text of an HTTP error answer: problem+json `detail`/`title`, else the body.
  function answerText(bytes) {
    try {
      const text = new TextDecoder().decode(bytes).trim();
      try {
        const json = JSON.parse(text);
        return json.detail || json.title || json.message || json.errorMessage || text.slice(0, 200);
      } catch (_) {
        return text.slice(0, 200);
      }
    } catch (_) {
      return '';
    }
  }

  // The kids a W3C ClearKey licence request or answer names (never the keys).
  function clearKeyKids(bytes) {
    try {
      const json = JSON.parse(new TextDecoder().decode(bytes));
      const kids = json.kids || (json.keys || []).map((k) => k.kid);
      return kids.map((k) => uuid(base64urlToHex(k)));
    } catch (_) {
      return null;
    }
  }

  // URL and headers that carry the entitlement token: `Authorization: Bearer` (default) or
  // the `token` query parameter for setups where headers cannot be set.
  function withToken(url, token, mode) {
    if (!token) return { url, headers: {} };
    if (mode === 'query') {
      const u = new URL(url, location.href);
      u.searchParams.set('token', token);
      return { url: u.toString(), headers: {} };
    }
    return { url, headers: { Authorization: 'Bearer ' + token } };
  }

  // --- EME tracer --------------------------------------------------------------------
  function traceSession(session) {
    session.addEventListener('message', (e) => {
      const kids = clearKeyKids(e.message);
      log('eme', `session message (${e.messageType})${kids ? ': kids ' + kids.join(', ') : ''}`);
    });
    session.addEventListener('keystatuseschange', () => {
      const statuses = [];
      session.keyStatuses.forEach((status, kid) => {
        const id = uuid(hex(kid));
        report.keyStatuses[id] = status;
        statuses.push(`${id} ${status}`);
      });
      log('eme', 'key statuses: ' + (statuses.join(', ') || 'none'));
    });
    session.closed.then(() => log('eme', 'session closed'), () => {});
  }

  if (navigator.requestMediaKeySystemAccess) {
    const request = navigator.requestMediaKeySystemAccess.bind(navigator);
    navigator.requestMediaKeySystemAccess = function (keySystem, configs) {
      return request(keySystem, configs).then(
        (access) => {
          log('eme', `key system ${keySystem}: available`);
          return access;
        },
        (e) => {
          log('eme', `key system ${keySystem}: not available (${e.message || e.name})`);
          throw e;
        },
      );
    };
  }
  if (window.MediaKeys) {
    const createSession = MediaKeys.prototype.createSession;
    MediaKeys.prototype.createSession = function (type) {
      const session = createSession.call(this, type);
      log('eme', `session created (${type || 'temporary'})`);
      traceSession(session);
      return session;
    };
  }
  if (window.MediaKeySession) {
    const generateRequest = MediaKeySession.prototype.generateRequest;
    MediaKeySession.prototype.generateRequest = function (initDataType, initData) {
      log('eme', `generateRequest (${initDataType}, ${initData.byteLength} bytes)`);
      return generateRequest.call(this, initDataType, initData);
    };
    const update = MediaKeySession.prototype.update;
    MediaKeySession.prototype.update = function (response) {
      const kids = clearKeyKids(response);
      return update.call(this, response).then(
        () => log('eme', `licence accepted by the CDM${kids ? ': kids ' + kids.join(', ') : ''}`),
        (e) => {
          log('eme', `licence rejected by the CDM: ${e.message || e.name}`);
          throw e;
        },
      );
    };
  }

  // --- Video element and status line ---------------------------------------------------
  function watchVideo(video) {
    video.addEventListener('encrypted', (e) => log('eme', `encrypted (${e.initDataType})`));
    video.addEventListener('waitingforkey', () => log('eme', 'waiting for a key'));
    for (const name of ['loadedmetadata', 'canplay', 'playing', 'waiting', 'seeking', 'pause', 'ended', 'stalled']) {
      video.addEventListener(name, () => log('media', name));
    }
    video.addEventListener('playing', () => {
      report.state = 'playing';
    });
    video.addEventListener('error', () => {
      const e = video.error;
      if (e) error('video', e.code, e.message || 'media error', false);
    });
    const status = document.getElementById('status');
    setInterval(() => {
      const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      report.currentTime = video.currentTime;
      report.decodedFrames = quality ? quality.totalVideoFrames : null;
      report.video = {
        duration: video.duration, paused: video.paused, ended: video.ended, readyState: video.readyState,
        buffered: Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]),
      };
      if (status) {
        status.textContent = `state ${report.state} · time ${video.currentTime.toFixed(2)} s · ` +
          `ready ${video.readyState} · frames ${quality ? quality.totalVideoFrames : '?'} decoded, ` +
          `${quality ? quality.droppedVideoFrames : '?'} dropped`;
      }
    }, 250);
  }

  // --- The form ------------------------------------------------------------------------
  // Fields come from the page URL: its fragment (`#manifest=…&licence=…&token=…`, never
  // sent to a server, so the token stays out of access logs) or its query; `autoplay=1`
  // loads at once.
  function params() {
    const merged = new URLSearchParams(location.search);
    new URLSearchParams(location.hash.replace(/^#/, '')).forEach((v, k) => merged.set(k, v));
    return merged;
  }

  function setup(options) {
    const form = document.getElementById('source');
    const video = document.getElementById('video');
    watchVideo(video);
    const given = params();
    for (const input of form.elements) {
      if (input.name && given.has(input.name)) input.value = given.get(input.name);
    }
    report.library = options.library;
    document.getElementById('library').textContent = options.library;
    let stop = null;
    async function load() {
      const values = {};
      for (const input of form.elements) if (input.name) values[input.name] = input.value.trim();
      if (!values.manifest) {
        error('page', 'no-manifest', 'paste a manifest URL', false);
        return;
      }
      if (stop) await stop();
      document.getElementById('error').hidden = true;
      report.state = 'loading';
      report.errors.length = 0;
      log('info', `loading ${values.manifest}`);
      try {
        stop = await options.load(video, values);
      } catch (e) {
        if (report.state !== 'error') error(options.library, e.code || e.name || 'load', e.message || String(e), false);
      }
    }
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      load();
    });
    if (given.get('autoplay') === '1') load();
  }

  window.keyplexPlayers = { setup, log, error, withToken, clearKeyKids, answerText, uuid };
})();
