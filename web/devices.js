// My Devices: one card per device and the Pending list of devices added with a registration token.
// Both are updated in place on every refresh (reconcile), so focus survives; changes a person did not
// cause (a device comes online, a pending device registers) are announced in the live region.
import { api } from './api.js';
import { $, announce, el, reconcile, setAttr, setText, show } from './dom.js';
import { absoluteTime, displayName, orDash, relativeTime, timeUntil } from './format.js';
import { currentSession } from './session.js';
import { certText, setBadge, stateNote } from './status.js';
import { isCurrent, registerLoader } from './views.js';

const cards = new Map(); // deviceId -> <li>, for the extensions (relays.js)
const expected = new Set(); // devices the person just added here: their new card is not announced
let devicesShown = false; // after the first list, new cards and badge changes are announced
let pendingShown = false;

function createCard(device) {
  const id = String(device.id);
  const row = (label, testid) => [el('dt', { text: label }), el('dd', { testid })];
  return el(
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
}

function updateCard(card, device) {
  const q = (testid) => card.querySelector(`[data-testid="${testid}"]`);
  const name = displayName(device);
  const before = card.dataset.badge;
  setText(q('device-name'), name);
  const badge = setBadge(q('device-presence'), device);
  card.dataset.badge = badge.key;
  if (devicesShown && before && before !== badge.key) announce(`${name}: ${badge.label}`);
  const note = stateNote(device);
  setText(q('device-state'), note);
  show(q('device-state'), Boolean(note));
  card.dataset.state = device.state || '';
  const seen = q('device-last-seen');
  setText(seen, relativeTime(device.lastSeen));
  setAttr(seen, 'title', absoluteTime(device.lastSeen));
  setText(q('device-ip'), orDash(device.ip));
  setText(q('device-board'), orDash(device.board));
  const cert = q('device-cert');
  setText(cert, certText(device.certificate));
  cert.dataset.status = (device.certificate && device.certificate.status) || '';
  setAttr(q('device-open'), 'aria-label', `Details for ${name}`);
}

function renderDevices(devices) {
  const list = $('device-list');
  show($('devices-loading'), false);
  show($('devices-error'), false);
  show($('devices-empty'), devices.length === 0);
  const known = new Set(cards.keys());
  // The API's order (newest first): a device just claimed shows at the top.
  reconcile(list, devices.filter((d) => d && d.id), {
    key: (d) => d.id,
    create: createCard,
    update: updateCard,
    focusFallback: $('devices-heading'),
  });
  cards.clear();
  for (const card of list.children) cards.set(card.dataset.deviceId, card);
  if (devicesShown) {
    for (const device of devices) {
      const id = device && device.id ? String(device.id) : '';
      if (id && !known.has(id) && !expected.has(id)) announce(`${displayName(device)} was added to your devices.`);
    }
  }
  devicesShown = true;
  expected.clear();
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

/** The person has just claimed `id` on this page (and was told so): no announcement for its card. */
export function expectDevice(id) {
  if (id) expected.add(String(id));
}

/** True when the device is on the list the page last showed. */
export function hasCard(id) {
  return cards.has(String(id));
}

export function cardLink(id) {
  const card = cards.get(String(id));
  return card ? card.querySelector('[data-testid="device-open"]') : null;
}

/** Drop a card at once (the device was deleted or released), before the next refresh would. */
export function forgetCard(id) {
  const card = cards.get(String(id));
  if (card) {
    card.remove();
    cards.delete(String(id));
  }
}

// ---------------------------------------------------------------- Pending

const PENDING_STATES = { pending: 'Waiting for the device', registered: 'Registered' };

function createPendingRow(p) {
  return el(
    'li',
    { class: 'pending-item', testid: 'pending-item', 'data-pending-id': p.id },
    el('span', { class: 'pending-name', testid: 'pending-name' }),
    el('span', { class: 'chip', testid: 'pending-state' }),
    el('span', { class: 'muted small', testid: 'pending-board' }),
    el('span', { class: 'muted small', testid: 'pending-expires' }),
    el('span', { class: 'pending-actions', 'data-pending-actions': p.id }), // for the Add-device flow
  );
}

function updatePendingRow(row, p) {
  const q = (testid) => row.querySelector(`[data-testid="${testid}"]`);
  const before = row.dataset.state;
  setText(q('pending-name'), p.name);
  const chip = q('pending-state');
  setText(chip, PENDING_STATES[p.state] || p.state);
  chip.className = `chip chip-${p.state}`;
  chip.dataset.state = p.state;
  row.dataset.state = p.state;
  setText(q('pending-board'), p.board);
  show(q('pending-board'), Boolean(p.board));
  setText(q('pending-expires'), p.expires);
  show(q('pending-expires'), Boolean(p.expires));
  if (pendingShown && before && before !== p.state) announce(`${p.name}: ${PENDING_STATES[p.state] || p.state}`);
}

function renderPending(items) {
  show($('pending-loading'), false);
  show($('pending-error'), false);
  show($('pending-unavailable'), false);
  show($('pending-empty'), items.length === 0);
  const rows = items.map((p) => ({
    id: String(p.id || ''),
    name: p.name || p.id || 'Unnamed device',
    board: p.board || '',
    expires: p.state === 'registered' ? '' : timeUntil(p.expiresAt),
    state: p.state || 'pending',
  }));
  reconcile($('pending-list'), rows, {
    key: (p) => p.id,
    create: createPendingRow,
    update: updatePendingRow,
    focusFallback: $('pending-heading'),
  });
  pendingShown = true;
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
  devicesShown = false;
  pendingShown = false;
  $('device-list').replaceChildren();
  $('pending-list').replaceChildren();
  show($('devices-loading'));
  show($('devices-empty'), false);
  show($('devices-error'), false);
  show($('pending-loading'));
  show($('pending-empty'), false);
  show($('pending-error'), false);
  show($('pending-unavailable'), false);
  setText($('devices-updated'), '');
}
