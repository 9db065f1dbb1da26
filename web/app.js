// Latchkey claim page: a static ES module, no build step, no dependencies.
//
// Safety rule for this file: strings that come from the API, Cognito or config.json reach the DOM only
// through textContent, Node.append(string) or setAttribute — never innerHTML / insertAdjacentHTML.

const POLL_MS = 3000; // refresh cadence while the tab is visible
const REQUEST_TIMEOUT_MS = 15000;
const REFRESH_MARGIN_MS = 60000; // refresh the access token this long before it expires
const NOTICE_MS = 6000;
const SESSION_KEY = 'latchkey.session';
const CODE_LENGTH = 10;
const CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32
const NAME_MAX = 64;

const NETWORK_MESSAGE = "Can't reach the service — check your connection and try again.";
const TIMEOUT_MESSAGE = "The service didn't answer in time — try again.";
const EXPIRED_MESSAGE = 'Your session has expired — please sign in again.';

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  apiBase: '',
  cognitoEndpoint: '',
  session: null, // {accessToken, idToken, refreshToken, expiresAt, email}
  view: null, // 'signin' | 'devices' | 'details'
  detailsId: null,
  detailsDevice: null,
  pollTimer: null,
  pollGen: 0, // bumped to discard answers that belong to an older view / session
  cards: new Map(), // deviceId -> <li> (updated in place so focus survives polling)
  pendingSig: null,
  eventsSig: null,
  challenge: null, // {session, email} while NEW_PASSWORD_REQUIRED is open
  dialogAction: null,
  dialogBusy: false,
  noticeTimer: null,
  refreshing: null,
};

// ---------------------------------------------------------------- small helpers

/** Create an element. `attrs.text` sets textContent, `attrs.testid` data-testid, `on*` adds listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'testid') node.dataset.testid = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return node;
}

function show(node, visible = true) {
  node.hidden = !visible;
}

function setText(node, text) {
  const value = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function orDash(value) {
  return value === undefined || value === null || value === '' ? '—' : String(value);
}

function toMillis(value) {
  if (value === undefined || value === null || value === '') return NaN;
  if (typeof value === 'number') return value < 1e12 ? value * 1000 : value; // epoch seconds or ms
  if (/^\d+(\.\d+)?$/.test(String(value))) return toMillis(Number(value));
  return Date.parse(value);
}

/** "just now", "3 min ago", "2 h ago", "4 d ago", or a date. */
export function relativeTime(value, now = Date.now()) {
  const t = toMillis(value);
  if (Number.isNaN(t)) return 'never';
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 86400 * 14) return `${Math.floor(s / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

function timeUntil(value, now = Date.now()) {
  const t = toMillis(value);
  if (Number.isNaN(t)) return '';
  const s = (t - now) / 1000;
  if (s <= 0) return 'expired';
  if (s < 3600) return `expires in ${Math.max(1, Math.floor(s / 60))} min`;
  return `expires in ${Math.floor(s / 3600)} h`;
}

function absoluteTime(value) {
  const t = toMillis(value);
  return Number.isNaN(t) ? '' : new Date(t).toLocaleString();
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function displayName(device) {
  return (device && (device.name || device.id)) || 'this device';
}

export function notice(text, kind = 'info') {
  const box = $('notice');
  box.textContent = text;
  box.dataset.kind = kind;
  show(box);
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => show(box, false), NOTICE_MS);
}

async function fetchWithTimeout(url, options = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    return await fetch(url, { ...options, signal: controller.signal, credentials: 'omit', cache: 'no-store' });
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- claim code

/** Forgiving normalisation: case, spaces and hyphens ignored; Crockford I/L→1, O→0. */
export function normalizeCode(raw) {
  return String(raw)
    .toUpperCase()
    .replace(/[\s\-\u2010-\u2015_.]/g, '')
    .replace(/[IL]/g, '1')
    .replace(/O/g, '0');
}

export function formatCode(normalized) {
  return normalized.length > 5 ? `${normalized.slice(0, 5)}-${normalized.slice(5)}` : normalized;
}

/** A sentence explaining what is wrong with the code, or '' when it looks right. */
export function codeProblem(normalized) {
  if (!normalized) return "Enter the claim code printed on the device's label.";
  const bad = [...normalized].find((ch) => !CODE_ALPHABET.includes(ch));
  if (bad) return `Claim codes don't contain “${bad}” — check the label and try again.`;
  if (normalized.length !== CODE_LENGTH) {
    return `A claim code has ${CODE_LENGTH} letters and digits — you entered ${normalized.length}.`;
  }
  return '';
}

function reformatCodeInput(input) {
  const caret = input.selectionStart ?? input.value.length;
  const before = normalizeCode(input.value.slice(0, caret)).length; // significant chars left of the caret
  const formatted = formatCode(normalizeCode(input.value));
  if (input.value !== formatted) input.value = formatted;
  const pos = before > 5 ? before + 1 : before;
  if (document.activeElement === input) input.setSelectionRange(pos, pos);
}

function setupCodeInput(input) {
  // Deleting "across" the hyphen removes the character beyond it, so backspace never looks stuck.
  input.addEventListener('beforeinput', (event) => {
    const { selectionStart: start, selectionEnd: end, value } = input;
    if (start !== end) return;
    let remove = -1;
    if (event.inputType === 'deleteContentBackward' && value[start - 1] === '-') remove = start - 2;
    if (event.inputType === 'deleteContentForward' && value[start] === '-') remove = start + 1;
    if (remove < 0 || remove >= value.length) return;
    event.preventDefault();
    input.value = value.slice(0, remove) + value.slice(remove + 1);
    const pos = event.inputType === 'deleteContentBackward' ? remove : start;
    input.setSelectionRange(pos, pos);
    reformatCodeInput(input);
  });
  input.addEventListener('input', () => reformatCodeInput(input));
}

// ---------------------------------------------------------------- Cognito

class AuthError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

function cognitoMessage(type, raw) {
  const text = String(raw || '');
  switch (type) {
    case 'NotAuthorizedException':
      if (/attempts exceeded/i.test(text)) return 'Too many failed sign-ins — wait a few minutes and try again.';
      if (/refresh token/i.test(text)) return EXPIRED_MESSAGE;
      return 'Incorrect email or password.';
    case 'UserNotFoundException':
      return 'Incorrect email or password.';
    case 'UserNotConfirmedException':
      return "Your account isn't confirmed yet — follow the link in the email you received.";
    case 'PasswordResetRequiredException':
      return 'You need to reset your password before you can sign in.';
    case 'InvalidPasswordException':
      return text || "That password doesn't meet the password rules.";
    case 'TooManyRequestsException':
    case 'LimitExceededException':
      return 'Too many attempts — wait a minute and try again.';
    case 'InvalidParameterException':
      return text || 'Enter your email and password.';
    default:
      return text || 'Sign-in failed — try again.';
  }
}

async function cognito(target, payload) {
  let res;
  try {
    res = await fetchWithTimeout(state.cognitoEndpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': `AWSCognitoIdentityProviderService.${target}`,
      },
      body: JSON.stringify(payload),
    });
  } catch (err) {
    throw new AuthError('network', err && err.name === 'AbortError' ? TIMEOUT_MESSAGE : NETWORK_MESSAGE);
  }
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  if (!res.ok) {
    const rawType = body.__type || body.code || res.headers.get('x-amzn-errortype') || '';
    const type = String(rawType).split('#').pop().split(':')[0];
    throw new AuthError(type, cognitoMessage(type, body.message || body.Message));
  }
  return body;
}

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(part)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && s.accessToken ? s : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  state.session = session;
  try {
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    /* storage disabled: the session lives only in memory */
  }
}

function sessionFromResult(result, email, previous = null) {
  const claims = decodeJwt(result.IdToken || (previous && previous.idToken) || '');
  const access = decodeJwt(result.AccessToken || '');
  return {
    sub: claims.sub || access.sub || (previous && previous.sub) || '',
    accessToken: result.AccessToken,
    idToken: result.IdToken || (previous && previous.idToken) || null,
    refreshToken: result.RefreshToken || (previous && previous.refreshToken) || null,
    expiresAt: Date.now() + (Number(result.ExpiresIn) || 3600) * 1000,
    email: claims.email || email || (previous && previous.email) || '',
  };
}

async function signIn(email, password) {
  const r = await cognito('InitiateAuth', {
    AuthFlow: 'USER_PASSWORD_AUTH',
    ClientId: state.config.userPoolClientId,
    AuthParameters: { USERNAME: email, PASSWORD: password },
  });
  if (r.ChallengeName === 'NEW_PASSWORD_REQUIRED') {
    state.challenge = { session: r.Session, email };
    return 'new-password';
  }
  if (r.ChallengeName || !r.AuthenticationResult) {
    throw new AuthError('challenge', "This account needs a sign-in step this page doesn't support yet.");
  }
  saveSession(sessionFromResult(r.AuthenticationResult, email));
  return 'ok';
}

async function answerNewPassword(newPassword) {
  const { session, email } = state.challenge;
  const r = await cognito('RespondToAuthChallenge', {
    ChallengeName: 'NEW_PASSWORD_REQUIRED',
    ClientId: state.config.userPoolClientId,
    Session: session,
    ChallengeResponses: { USERNAME: email, NEW_PASSWORD: newPassword },
  });
  if (!r.AuthenticationResult) throw new AuthError('challenge', 'Setting the password failed — try signing in again.');
  state.challenge = null;
  saveSession(sessionFromResult(r.AuthenticationResult, email));
}

/** Resolves true when the access token was renewed, false when the session is over. */
function refreshSession() {
  const current = state.session;
  if (!current || !current.refreshToken) return Promise.resolve(false);
  if (!state.refreshing) {
    state.refreshing = (async () => {
      try {
        const r = await cognito('InitiateAuth', {
          AuthFlow: 'REFRESH_TOKEN_AUTH',
          ClientId: state.config.userPoolClientId,
          AuthParameters: { REFRESH_TOKEN: current.refreshToken },
        });
        if (!r.AuthenticationResult || !r.AuthenticationResult.AccessToken) return false;
        if (state.session !== current) return false; // signed out meanwhile
        saveSession(sessionFromResult(r.AuthenticationResult, current.email, current));
        return true;
      } catch (err) {
        // A network blip is not a reason to end the session: keep the old token and let the call decide.
        return err.type === 'network' ? null : false;
      } finally {
        state.refreshing = null;
      }
    })();
  }
  return state.refreshing;
}

function signOut(message) {
  const session = state.session;
  saveSession(null);
  state.challenge = null;
  if (session && session.refreshToken) {
    // Best effort: invalidate the refresh token server-side too. The page does not wait for it.
    cognito('RevokeToken', { Token: session.refreshToken, ClientId: state.config.userPoolClientId }).catch(() => {});
  }
  resetAppState();
  if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
  route();
  if (message) showSigninError(message);
}

// ---------------------------------------------------------------- owner API

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function parseRetryAfter(header, body) {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, (date - Date.now()) / 1000);
  }
  const fromBody = body && Number(body.retryAfter);
  return Number.isFinite(fromBody) && fromBody > 0 ? fromBody : null;
}

const DEFAULT_MESSAGES = {
  400: 'The request was not accepted — check what you entered.',
  401: EXPIRED_MESSAGE,
  403: "You aren't allowed to do that.",
  404: "That device isn't in your account.",
  409: 'That conflicts with the current state of the device — reload and try again.',
  429: 'Too many requests — wait a moment and try again.',
};

/** Call the owner API; resolves to the parsed JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, body) {
  if (!state.session) throw new ApiError(401, 'signed_out', EXPIRED_MESSAGE);
  if (state.session.expiresAt - Date.now() < REFRESH_MARGIN_MS) await refreshSession();

  const send = async () => {
    const headers = { Authorization: `Bearer ${state.session.accessToken}`, Accept: 'application/json' };
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      return await fetchWithTimeout(state.apiBase + path, init);
    } catch (err) {
      const timedOut = err && err.name === 'AbortError';
      throw new ApiError(0, timedOut ? 'timeout' : 'network', timedOut ? TIMEOUT_MESSAGE : NETWORK_MESSAGE);
    }
  };

  let res = await send();
  if (res.status === 401) {
    const renewed = await refreshSession();
    if (renewed && state.session) res = await send();
    if (res.status === 401) {
      if (renewed !== null) signOut(EXPIRED_MESSAGE);
      throw new ApiError(401, 'unauthorized', EXPIRED_MESSAGE);
    }
  }

  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const message =
      (data && typeof data.message === 'string' && data.message) ||
      DEFAULT_MESSAGES[res.status] ||
      `Something went wrong (HTTP ${res.status}) — try again.`;
    const code = (data && data.error) || `http_${res.status}`;
    throw new ApiError(res.status, code, message, parseRetryAfter(res.headers.get('Retry-After'), data));
  }
  return data;
}

const devicePath = (id) => `/v1/devices/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- views and routing

function showView(name) {
  state.view = name;
  for (const [view, id] of [
    ['boot', 'boot-view'],
    ['config-error', 'config-error-view'],
    ['signin', 'signin-view'],
    ['devices', 'devices-view'],
    ['details', 'details-view'],
  ]) {
    show($(id), view === name);
  }
  const signedIn = Boolean(state.session);
  show($('account'), signedIn);
  setText($('user-email'), signedIn ? state.session.email : '');
  const product = (state.config && state.config.productName) || 'Latchkey';
  const titles = { signin: 'Sign in', devices: 'My Devices', details: 'Device' };
  document.title = titles[name] ? `${titles[name]} — ${product}` : product;
}

function route() {
  if (!state.config) return;
  if (!state.session) {
    stopPolling();
    showView('signin');
    const challenge = Boolean(state.challenge);
    show($('signin-form'), !challenge);
    show($('newpw-form'), challenge);
    return;
  }
  const match = location.hash.match(/^#\/devices\/([^/?#]+)$/);
  if (match) {
    openDetails(decodeURIComponent(match[1]));
  } else {
    state.detailsId = null; // re-opening a device later starts from its loading state
    state.detailsDevice = null;
    showView('devices');
  }
  restartPolling();
}

function resetAppState() {
  stopPolling();
  state.cards.clear();
  $('device-list').replaceChildren();
  $('pending-list').replaceChildren();
  state.pendingSig = null;
  state.eventsSig = null;
  state.detailsId = null;
  state.detailsDevice = null;
  show($('devices-loading'));
  show($('devices-empty'), false);
  show($('devices-error'), false);
  show($('pending-loading'));
  show($('pending-empty'), false);
  show($('pending-error'), false);
  show($('pending-unavailable'), false);
  setText($('devices-updated'), '');
  $('claim-form').reset();
  show($('claim-error'), false);
  show($('claim-success'), false);
  if ($('confirm-dialog').open) $('confirm-dialog').close();
}

// ---------------------------------------------------------------- polling

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  state.pollGen += 1;
}

/** Fetch what the current view shows now, then every POLL_MS while the tab is visible. */
export function restartPolling() {
  stopPolling();
  if (!state.session || document.visibilityState !== 'visible') return;
  tick(state.pollGen);
}

async function tick(gen) {
  try {
    if (state.view === 'devices') await Promise.all([loadDevices(gen), loadPending(gen)]);
    else if (state.view === 'details') await loadDetails(gen);
  } catch (err) {
    console.error(err); // never let one bad answer stop the refresh loop
  } finally {
    if (gen === state.pollGen && state.session && document.visibilityState === 'visible') {
      state.pollTimer = setTimeout(() => tick(gen), POLL_MS);
    }
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') restartPolling();
  else stopPolling();
});

// ---------------------------------------------------------------- My Devices

const PRESENCE_LABELS = { online: 'Online', away: 'Away', offline: 'Offline' };

const STATE_NOTES = {
  unclaimed: 'Not claimed',
  claimed: 'Waiting for the device to check in',
  provisioned: 'Receiving its certificate',
  revoked: 'Revoked — the device can no longer connect',
  deleted: 'Deleted',
};

const STATE_LABELS = {
  unclaimed: 'Unclaimed',
  claimed: 'Claimed — waiting for the device',
  provisioned: 'Certificate delivered, waiting for the device to confirm',
  active: 'Active',
  revoked: 'Revoked',
};

function presenceOf(device) {
  const p = String((device && device.presence) || 'offline').toLowerCase();
  return PRESENCE_LABELS[p] ? p : 'offline';
}

function certText(cert) {
  if (!cert || !cert.status) return 'None yet';
  return String(cert.status).replace(/_/g, ' ');
}

function setBadge(node, presence) {
  node.className = `badge badge-${presence}`;
  node.dataset.presence = presence;
  setText(node, PRESENCE_LABELS[presence]);
}

function createCard(id) {
  const row = (label, testid) => {
    const dd = el('dd', { testid });
    return [el('dt', { text: label }), dd];
  };
  const card = el(
    'li',
    { class: 'card', testid: 'device-card', 'data-device-id': id },
    el(
      'div',
      { class: 'card-head' },
      el('h3', { class: 'card-title', testid: 'device-name' }),
      el('span', { class: 'badge', testid: 'device-presence' }),
    ),
    el('p', { class: 'state-note', testid: 'device-state', hidden: true }),
    el(
      'dl',
      { class: 'kv kv-compact' },
      row('Last seen', 'device-last-seen'),
      row('IP address', 'device-ip'),
      row('Board', 'device-board'),
      row('Certificate', 'device-cert'),
    ),
    el('a', { class: 'btn btn-block card-open', testid: 'device-open', href: `#/devices/${encodeURIComponent(id)}` }, 'Details'),
  );
  return card;
}

function updateCard(card, device) {
  const q = (testid) => card.querySelector(`[data-testid="${testid}"]`);
  const name = displayName(device);
  setText(q('device-name'), name);
  setBadge(q('device-presence'), presenceOf(device));
  const note = device.state && device.state !== 'active' ? STATE_NOTES[device.state] || device.state : '';
  setText(q('device-state'), note);
  show(q('device-state'), Boolean(note));
  card.dataset.state = device.state || '';
  const seen = q('device-last-seen');
  setText(seen, relativeTime(device.lastSeen));
  seen.title = absoluteTime(device.lastSeen);
  setText(q('device-ip'), orDash(device.ip));
  setText(q('device-board'), orDash(device.board));
  const cert = q('device-cert');
  setText(cert, certText(device.certificate));
  cert.dataset.status = (device.certificate && device.certificate.status) || '';
  q('device-open').setAttribute('aria-label', `Details for ${name}`);
}

function renderDevices(devices) {
  const list = $('device-list');
  show($('devices-loading'), false);
  show($('devices-error'), false);
  show($('devices-empty'), devices.length === 0);
  const seen = new Set();
  // The API's order (newest first): a device just claimed shows at the top.
  devices.filter((d) => d && d.id).forEach((device, index) => {
    const id = String(device.id);
    let card = state.cards.get(id);
    if (!card) {
      card = createCard(id);
      state.cards.set(id, card);
    }
    updateCard(card, device);
    if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    seen.add(id);
  });
  for (const [id, card] of state.cards) {
    if (!seen.has(id)) {
      card.remove();
      state.cards.delete(id);
    }
  }
  setText($('devices-updated'), `Updated ${new Date().toLocaleTimeString()}`);
  document.dispatchEvent(new CustomEvent('latchkey:devices-rendered', { detail: { devices, cards: state.cards } }));
}

async function loadDevices(gen) {
  try {
    const data = await api('GET', '/v1/devices');
    if (gen !== state.pollGen) return;
    const devices = Array.isArray(data) ? data : (data && Array.isArray(data.devices) ? data.devices : []);
    renderDevices(devices);
  } catch (err) {
    if (gen !== state.pollGen || !state.session) return;
    show($('devices-loading'), false);
    setText($('devices-error'), `Couldn't load your devices: ${err.message}`);
    show($('devices-error'));
  }
}

// ---------------------------------------------------------------- Pending

function renderPending(items) {
  show($('pending-loading'), false);
  show($('pending-error'), false);
  show($('pending-unavailable'), false);
  show($('pending-empty'), items.length === 0);
  const rows = items.map((p) => ({
    id: String(p.id || ''),
    name: p.name || p.id || 'Unnamed device',
    board: p.board || '',
    expires: timeUntil(p.expiresAt),
    state: p.state || 'pending',
  }));
  const sig = JSON.stringify(rows);
  if (sig === state.pendingSig) return; // unchanged: keep the DOM (and any focus) as it is
  state.pendingSig = sig;
  $('pending-list').replaceChildren(
    ...rows.map((p) =>
      el(
        'li',
        { class: 'pending-item', testid: 'pending-item', 'data-pending-id': p.id },
        el('span', { class: 'pending-name', testid: 'pending-name', text: p.name }),
        el('span', { class: 'chip', testid: 'pending-state', text: p.state }),
        p.board ? el('span', { class: 'muted small', testid: 'pending-board', text: p.board }) : null,
        p.expires ? el('span', { class: 'muted small', testid: 'pending-expires', text: p.expires }) : null,
        el('span', { class: 'pending-actions', 'data-pending-actions': p.id }), // for the Add-device flow
      ),
    ),
  );
  document.dispatchEvent(new CustomEvent('latchkey:pending-rendered', { detail: { items } }));
}

async function loadPending(gen) {
  try {
    const data = await api('GET', '/v1/pending');
    if (gen !== state.pollGen) return;
    const items = Array.isArray(data) ? data : (data && Array.isArray(data.pending) ? data.pending : []);
    renderPending(items);
  } catch (err) {
    if (gen !== state.pollGen || !state.session) return;
    show($('pending-loading'), false);
    if (err.status === 404 || err.status === 501) {
      // The registration-token feature is not part of this deployment: say so quietly, not as an error.
      show($('pending-error'), false);
      show($('pending-empty'), false);
      setText($('pending-unavailable'), err.message);
      show($('pending-unavailable'));
      return;
    }
    setText($('pending-error'), `Couldn't load pending devices: ${err.message}`);
    show($('pending-error'));
  }
}

// ---------------------------------------------------------------- Claim form

function claimErrorMessage(err) {
  switch (err.status) {
    case 0:
      return err.message;
    case 400:
      return err.message || "That doesn't look like a claim code — it has 10 letters and digits, like ABCDE-12345.";
    case 404:
      return 'No device has this code — check the label';
    case 409:
      return 'This device belongs to another account';
    case 429: {
      const minutes = Math.max(1, Math.ceil((err.retryAfter || 60) / 60));
      return `Too many attempts — try again in ${plural(minutes, 'minute')}`;
    }
    default:
      return err.message;
  }
}

async function submitClaim(event) {
  event.preventDefault();
  const codeInput = $('claim-code');
  const nameInput = $('claim-name');
  const errorBox = $('claim-error');
  const okBox = $('claim-success');
  show(errorBox, false);
  show(okBox, false);

  const code = normalizeCode(codeInput.value);
  codeInput.value = formatCode(code);
  const problem = codeProblem(code);
  if (problem) {
    setText(errorBox, problem);
    show(errorBox);
    codeInput.setAttribute('aria-invalid', 'true');
    codeInput.focus();
    return;
  }
  codeInput.removeAttribute('aria-invalid');
  const name = nameInput.value.trim();
  const payload = { claimCode: code };
  if (name) payload.name = name;

  const button = $('claim-submit');
  button.disabled = true;
  setText(button, 'Claiming…');
  try {
    const result = await api('POST', '/v1/claims', payload);
    const device = (result && (result.device || result)) || {};
    const label = device.name || name || formatCode(code);
    setText(okBox, `Claimed “${label}”. It comes online the next time it checks in.`);
    show(okBox);
    $('claim-form').reset();
    restartPolling();
  } catch (err) {
    if (err.status === 401) return; // signed out; the sign-in form says why
    setText(errorBox, claimErrorMessage(err));
    show(errorBox);
    if (err.status === 400 || err.status === 404) codeInput.setAttribute('aria-invalid', 'true');
  } finally {
    button.disabled = false;
    setText(button, 'Claim device');
  }
}

// ---------------------------------------------------------------- Device details

function openDetails(id) {
  if (state.detailsId !== id) {
    state.detailsId = id;
    state.detailsDevice = null;
    state.eventsSig = null;
    show($('details-loading'));
    show($('details-error'), false);
    show($('details-body'), false);
    $('events-body').replaceChildren();
  }
  showView('details');
}

function renderDetails(device) {
  state.detailsDevice = device;
  show($('details-loading'), false);
  show($('details-error'), false);
  show($('details-body'));
  const name = displayName(device);
  setText($('details-name'), name);
  document.title = `${name} — ${(state.config && state.config.productName) || 'Latchkey'}`;
  setBadge($('details-presence'), presenceOf(device));
  const note = device.state && device.state !== 'active' ? STATE_NOTES[device.state] || '' : '';
  setText($('details-state-note'), note);
  show($('details-state-note'), Boolean(note));
  $('details-view').dataset.state = device.state || '';

  setText($('details-state'), STATE_LABELS[device.state] || orDash(device.state));
  const seen = $('details-last-seen');
  setText(seen, device.lastSeen ? `${relativeTime(device.lastSeen)} (${absoluteTime(device.lastSeen)})` : 'never');
  setText($('details-ip'), orDash(device.ip));
  setText($('details-mac'), orDash(device.mac));
  setText($('details-board'), orDash(device.board));
  setText($('details-agent-version'), orDash(device.agentVersion));
  setText($('details-id'), orDash(device.id));
  setText($('details-claimed-at'), device.claimedAt ? absoluteTime(device.claimedAt) : '—');
  setText($('details-created-at'), device.createdAt ? absoluteTime(device.createdAt) : '—');

  const cert = device.certificate;
  const status = $('cert-status');
  setText(status, certText(cert));
  status.dataset.status = (cert && cert.status) || '';
  status.className = `chip chip-${String((cert && cert.status) || 'none').toLowerCase()}`;
  setText($('cert-id'), cert && cert.id ? cert.id : '—');

  const revoked = device.state === 'revoked' || (cert && String(cert.status).toUpperCase() === 'REVOKED');
  $('revoke-button').disabled = Boolean(revoked) || !cert;
  $('revoke-button').title = revoked ? 'Already revoked' : !cert ? 'The device has no certificate yet' : '';
  document.dispatchEvent(new CustomEvent('latchkey:details-rendered', { detail: { device } }));
}

function describeDetail(detail) {
  if (detail === undefined || detail === null || detail === '') return '';
  if (typeof detail !== 'object') return String(detail);
  return Object.entries(detail)
    .map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`)
    .join(', ');
}

/** "device.claimed" -> "Device claimed", "certificate.revoked" -> "Certificate revoked". */
export function describeAction(action) {
  const text = String(action || '').replace(/[._]+/g, ' ').trim();
  return text ? text[0].toUpperCase() + text.slice(1) : '—';
}

function describeActor(actor) {
  if (!actor) return '—';
  const session = state.session || {};
  if ((session.sub && actor === session.sub) || (session.email && actor === session.email)) return 'You';
  const known = { device: 'The device', manufacturer: 'Manufacturer', operator: 'Operator', system: 'Latchkey' };
  return known[actor] || String(actor);
}

function renderEvents(events) {
  show($('events-error'), false);
  const sorted = [...events].sort((a, b) => (toMillis(b.at) || 0) - (toMillis(a.at) || 0));
  const withSource = sorted.some((e) => e.sourceIp);
  const rows = sorted.map((e) => ({
    action: String(e.action || ''),
    cells: [
      absoluteTime(e.at) || orDash(e.at),
      describeAction(e.action),
      describeActor(e.actor),
      orDash(e.sourceIp),
      describeDetail(e.detail),
    ],
  }));
  const sig = JSON.stringify(rows);
  if (sig === state.eventsSig) return;
  state.eventsSig = sig;
  show($('events-empty'), rows.length === 0);
  const table = $('events-table');
  show(table, rows.length > 0);
  table.classList.toggle('hide-source', !withSource); // the "From" column only when there is something in it
  const labels = ['When', 'Action', 'By', 'From', 'Detail'];
  $('events-body').replaceChildren(
    ...rows.map(({ action, cells }) =>
      el(
        'tr',
        { testid: 'event-row', 'data-action': action },
        cells.map((text, i) => el('td', { 'data-label': labels[i], text, title: i === 1 ? action : null })),
      ),
    ),
  );
}

async function loadDetails(gen) {
  const id = state.detailsId;
  if (!id) return;
  const [dev, events] = await Promise.allSettled([api('GET', devicePath(id)), api('GET', `${devicePath(id)}/events`)]);
  if (gen !== state.pollGen || id !== state.detailsId || !state.session) return;
  show($('details-loading'), false);
  if (dev.status === 'rejected') {
    const err = dev.reason;
    if (err.status === 401) return;
    if (err.status === 404) {
      show($('details-body'), false);
      setText($('details-error'), "This device isn't in your account — it may have been deleted or released.");
    } else {
      setText($('details-error'), `Couldn't load this device: ${err.message}`);
    }
    show($('details-error'));
    return;
  }
  const device = (dev.value && (dev.value.device || dev.value)) || {};
  renderDetails(device);
  if (events.status === 'fulfilled') {
    const data = events.value;
    renderEvents(Array.isArray(data) ? data : (data && Array.isArray(data.events) ? data.events : []));
  } else if (events.reason.status !== 401) {
    setText($('events-error'), `Couldn't load the audit trail: ${events.reason.message}`);
    show($('events-error'));
  }
}

// ---------------------------------------------------------------- confirmation dialog

/**
 * Open the confirmation dialog. `action(value)` runs on Confirm while the dialog stays open; on success
 * the dialog closes, on failure the API's message is shown inside it.
 */
export function confirmAction({ title, message, confirmLabel = 'Confirm', danger = false, input = null, action }) {
  const dialog = $('confirm-dialog');
  setText($('confirm-title'), title);
  setText($('confirm-message'), message);
  show($('confirm-error'), false);
  const ok = $('confirm-ok');
  setText(ok, confirmLabel);
  ok.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
  ok.disabled = false;
  $('confirm-cancel').disabled = false;
  const field = $('confirm-field');
  show(field, Boolean(input));
  const box = $('confirm-input');
  if (input) {
    setText($('confirm-input-label'), input.label || 'Value');
    box.value = input.value || '';
    box.maxLength = input.maxLength || NAME_MAX;
  }
  state.dialogAction = { action, input, confirmLabel };
  dialog.showModal();
  if (input) {
    box.focus();
    box.select();
  } else {
    $('confirm-cancel').focus(); // destructive actions: the safe choice has the focus
  }
}

function closeDialog() {
  if (state.dialogBusy) return;
  state.dialogAction = null;
  $('confirm-dialog').close();
}

async function submitDialog(event) {
  event.preventDefault();
  if (state.dialogBusy || !state.dialogAction) return;
  const { action, input, confirmLabel } = state.dialogAction;
  const errorBox = $('confirm-error');
  show(errorBox, false);
  let value;
  if (input) {
    value = $('confirm-input').value.trim();
    if (!value) {
      setText(errorBox, input.emptyMessage || 'Enter a value.');
      show(errorBox);
      return;
    }
  }
  const ok = $('confirm-ok');
  state.dialogBusy = true;
  ok.disabled = true;
  $('confirm-cancel').disabled = true;
  setText(ok, 'Working…');
  try {
    await action(value);
    state.dialogBusy = false;
    closeDialog();
  } catch (err) {
    setText(errorBox, err.message || 'That did not work — try again.');
    show(errorBox);
  } finally {
    state.dialogBusy = false;
    ok.disabled = false;
    $('confirm-cancel').disabled = false;
    setText(ok, confirmLabel);
  }
}

function currentDevice() {
  return state.detailsDevice || { id: state.detailsId };
}

function renameDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Rename device',
    message: `Choose a new name for “${name}”.`,
    confirmLabel: 'Rename',
    input: { label: 'New name', value: device.name || '', maxLength: NAME_MAX, emptyMessage: 'Enter a name.' },
    action: async (newName) => {
      await api('PATCH', devicePath(device.id), { name: newName });
      notice(`Renamed “${name}” to “${newName}”.`, 'success');
      restartPolling();
    },
  });
}

function revokeDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Revoke certificate?',
    message: `Revoke the certificate of “${name}”? The device is disconnected at once and can't connect with this certificate again.`,
    confirmLabel: 'Revoke',
    danger: true,
    action: async () => {
      await api('POST', `${devicePath(device.id)}/revoke`);
      notice(`The certificate of “${name}” is revoked.`, 'success');
      restartPolling();
    },
  });
}

function releaseDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Release device?',
    message: `Release “${name}”? Its certificate is revoked, it forgets its credentials and leaves your account. Anyone with the code on its label can then claim it again.`,
    confirmLabel: 'Release',
    danger: true,
    action: async () => {
      await api('POST', `${devicePath(device.id)}/release`);
      notice(`“${name}” was released.`, 'success');
      location.hash = '#/';
    },
  });
}

function deleteDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Delete device?',
    message: `Delete “${name}”? Its certificate is revoked and it is removed for good — it can never connect again.`,
    confirmLabel: 'Delete',
    danger: true,
    action: async () => {
      await api('DELETE', devicePath(device.id));
      const card = state.cards.get(String(device.id));
      if (card) {
        card.remove();
        state.cards.delete(String(device.id));
      }
      notice(`“${name}” was deleted.`, 'success');
      location.hash = '#/';
    },
  });
}

// ---------------------------------------------------------------- sign-in form

function showSigninError(message) {
  const box = $('signin-error');
  setText(box, message);
  show(box, Boolean(message));
}

async function submitSignin(event) {
  event.preventDefault();
  const email = $('signin-email').value.trim();
  const password = $('signin-password').value;
  if (!email || !password) {
    showSigninError('Enter your email and password.');
    return;
  }
  showSigninError('');
  const button = $('signin-submit');
  button.disabled = true;
  setText(button, 'Signing in…');
  try {
    const outcome = await signIn(email, password);
    $('signin-password').value = '';
    route();
    if (outcome === 'new-password') $('newpw-password').focus();
  } catch (err) {
    showSigninError(err.message);
  } finally {
    button.disabled = false;
    setText(button, 'Sign in');
  }
}

async function submitNewPassword(event) {
  event.preventDefault();
  const box = $('newpw-error');
  show(box, false);
  const password = $('newpw-password').value;
  if (!password) {
    setText(box, 'Enter a new password.');
    show(box);
    return;
  }
  const button = $('newpw-submit');
  button.disabled = true;
  try {
    await answerNewPassword(password);
    $('newpw-password').value = '';
    route();
  } catch (err) {
    setText(box, err.message);
    show(box);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- start-up

function configError(text) {
  setText($('config-error-text'), text);
  showView('config-error');
}

function applyBranding(config) {
  const product = config.productName || 'Latchkey';
  setText($('brand-name'), product);
  const logo = $('brand-logo');
  if (config.logoUrl) {
    logo.addEventListener('error', () => logo.setAttribute('src', 'logo.svg'), { once: true });
    logo.setAttribute('src', config.logoUrl);
  }
  setText($('signin-intro'), `Sign in to ${product} to claim and manage your devices.`);
}

async function loadConfig() {
  let res;
  try {
    res = await fetchWithTimeout(new URL('config.json', document.baseURI).href);
  } catch {
    throw new Error("The page couldn't load its configuration — check your connection.");
  }
  if (!res.ok) throw new Error(`The page couldn't load its configuration (HTTP ${res.status}).`);
  let config;
  try {
    config = await res.json();
  } catch {
    throw new Error('The configuration (config.json) is not valid JSON.');
  }
  const missing = ['userPoolClientId'].filter((k) => !config[k]);
  if (!config.cognitoEndpoint && !config.region) missing.push('cognitoEndpoint or region');
  if (missing.length) throw new Error(`The configuration is missing: ${missing.join(', ')}.`);
  return config;
}

function wire() {
  setupCodeInput($('claim-code'));
  $('claim-form').addEventListener('submit', submitClaim);
  $('signin-form').addEventListener('submit', submitSignin);
  $('newpw-form').addEventListener('submit', submitNewPassword);
  $('newpw-cancel').addEventListener('click', () => {
    state.challenge = null;
    route();
  });
  $('signout-button').addEventListener('click', () => signOut());
  $('rename-button').addEventListener('click', renameDevice);
  $('revoke-button').addEventListener('click', revokeDevice);
  $('release-button').addEventListener('click', releaseDevice);
  $('delete-button').addEventListener('click', deleteDevice);
  $('confirm-form').addEventListener('submit', submitDialog);
  $('confirm-cancel').addEventListener('click', closeDialog);
  $('confirm-dialog').addEventListener('cancel', (event) => {
    if (state.dialogBusy) event.preventDefault(); // Escape does not abandon a running action
    else state.dialogAction = null;
  });
  window.addEventListener('hashchange', route);
}

async function main() {
  wire();
  try {
    state.config = await loadConfig();
  } catch (err) {
    configError(err.message);
    return;
  }
  const config = state.config;
  state.apiBase = String(config.apiUrl || location.origin).replace(/\/+$/, '');
  state.cognitoEndpoint = config.cognitoEndpoint || `https://cognito-idp.${config.region}.amazonaws.com/`;
  applyBranding(config);
  state.session = loadSession();
  document.body.dataset.ready = 'true';
  route();
}

// A small surface for extensions (the Add-device flow) and for debugging in the console.
window.latchkey = { api, el, confirmAction, notice, refreshNow: restartPolling, normalizeCode, formatCode };

// ====================== ADD DEVICE FLOW — mount point ======================
// The registration-token flow (design.md, "Two ways to claim", B) plugs in here: implement
// `mountAddDevice(slot)` (e.g. in web/add-device.js, imported above) to render the "Add device"
// button and form into #add-device-slot, POST /v1/pending, then call refreshNow().
// Pending rows carry an empty `[data-pending-actions="<id>"]` span for Delete / Claim / Regenerate
// buttons; listen for the `latchkey:pending-rendered` event to fill them after each re-render.
// ===========================================================================

main();
