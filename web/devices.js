// My Devices: one card per device, updated in place on every refresh so focus survives, and the
// Pending list of devices added with a registration token.
import { api } from './api.js';
import { $, el, setText, show } from './dom.js';
import { absoluteTime, displayName, orDash, relativeTime, timeUntil } from './format.js';
import { currentSession } from './session.js';
import { STATE_NOTES, certText, presenceOf, setBadge } from './status.js';
import { isCurrent, registerLoader } from './views.js';

const cards = new Map(); // deviceId -> <li>
let pendingSig = null;

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
    let card = cards.get(id);
    if (!card) {
      card = createCard(id);
      cards.set(id, card);
    }
    updateCard(card, device);
    if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    seen.add(id);
  });
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.remove();
      cards.delete(id);
    }
  }
  setText($('devices-updated'), `Updated ${new Date().toLocaleTimeString()}`);
  document.dispatchEvent(new CustomEvent('latchkey:devices-rendered', { detail: { devices, cards } }));
}

async function loadDevices(gen) {
  try {
    const data = await api('GET', '/v1/devices');
    if (!isCurrent(gen)) return;
    const devices = Array.isArray(data) ? data : (data && Array.isArray(data.devices) ? data.devices : []);
    renderDevices(devices);
  } catch (err) {
    if (!isCurrent(gen) || !currentSession()) return;
    show($('devices-loading'), false);
    setText($('devices-error'), `Couldn't load your devices: ${err.message}`);
    show($('devices-error'));
  }
}

/** Drop a card at once (the device was deleted), before the next refresh would. */
export function forgetCard(id) {
  const card = cards.get(String(id));
  if (card) {
    card.remove();
    cards.delete(String(id));
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
  if (sig === pendingSig) return; // unchanged: keep the DOM (and any focus) as it is
  pendingSig = sig;
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
    if (!isCurrent(gen)) return;
    const items = Array.isArray(data) ? data : (data && Array.isArray(data.pending) ? data.pending : []);
    renderPending(items);
  } catch (err) {
    if (!isCurrent(gen) || !currentSession()) return;
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

registerLoader('devices', (gen) => Promise.all([loadDevices(gen), loadPending(gen)]));

/** Back to "Loading…" with no cards (sign out). */
export function resetDevices() {
  cards.clear();
  $('device-list').replaceChildren();
  $('pending-list').replaceChildren();
  pendingSig = null;
  show($('devices-loading'));
  show($('devices-empty'), false);
  show($('devices-error'), false);
  show($('pending-loading'));
  show($('pending-empty'), false);
  show($('pending-error'), false);
  show($('pending-unavailable'), false);
  setText($('devices-updated'), '');
}
