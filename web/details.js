// Device details (#/devices/<id>): system information, certificate and the audit trail.
import { api, devicePath } from './api.js';
import { productName } from './config.js';
import { $, announce, el, focusOn, setText, show } from './dom.js';
import { absoluteTime, displayName, orDash, relativeTime, toMillis } from './format.js';
import { currentSession } from './session.js';
import { STATE_LABELS, certText, setBadge, stateNote } from './status.js';
import { isCurrent, registerLoader, showView } from './views.js';

let detailsId = null;
let detailsDevice = null;
let eventsSig = null;
let focusPending = false; // move the focus to the device's name once it has loaded

/** The device on screen (as last loaded, or just its id while loading). */
export function currentDevice() {
  return detailsDevice || { id: detailsId };
}

/** Show the details of `id`; with `focus`, the focus goes to its name (or the error) once loaded. */
export function openDetails(id, { focus = false } = {}) {
  if (focus) focusPending = true;
  if (detailsId !== id) {
    detailsId = id;
    detailsDevice = null;
    eventsSig = null;
    show($('details-loading'));
    show($('details-error'), false);
    show($('details-body'), false);
    $('events-body').replaceChildren();
  }
  showView('details');
}

/** Leave the details: re-opening a device later starts from its loading state. */
export function closeDetails() {
  detailsId = null;
  detailsDevice = null;
  focusPending = false;
}

export function resetDetails() {
  closeDetails();
  eventsSig = null;
}

function renderDetails(device) {
  const previous = detailsDevice;
  detailsDevice = device;
  show($('details-loading'), false);
  show($('details-error'), false);
  show($('details-body'));
  const name = displayName(device);
  setText($('details-name'), name);
  document.title = `${name} — ${productName()}`;
  const badge = setBadge($('details-presence'), device);
  if (previous && previous.id === device.id && $('details-presence').dataset.shown !== badge.key) {
    announce(`${name}: ${badge.label}`);
  }
  $('details-presence').dataset.shown = badge.key;
  const note = stateNote(device);
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
  const revoke = $('revoke-button');
  const disable = Boolean(revoked) || !cert;
  // A button that becomes disabled drops the focus to <body>: hand it to the heading first.
  if (disable && document.activeElement === revoke) focusOn($('details-name'));
  revoke.disabled = disable;
  revoke.title = revoked ? 'Already revoked' : !cert ? 'The device has no certificate yet' : '';
  if (focusPending) {
    focusPending = false;
    focusOn($('details-name'));
  }
  document.dispatchEvent(new CustomEvent('latchkey:details-rendered', { detail: { device } }));
}

const VIA = {
  claim_code: "with the label's claim code",
  registration_token: 'with its registration token',
  pending: 'from Pending',
};

/** An audit event's detail in words: short certificate ids, no "false" flags, known keys named. */
function describeDetail(detail) {
  if (detail === undefined || detail === null || detail === '') return '';
  if (typeof detail !== 'object') return String(detail);
  return Object.entries(detail)
    .filter(([, v]) => v !== null && v !== undefined && v !== '' && v !== false)
    .map(([k, v]) => {
      if (k === 'certificateId') return `certificate ${String(v).slice(0, 12)}…`;
      if (k === 'via') return VIA[v] || `via ${v}`;
      if (k === 'reused') return 'the certificate it already had';
      if (k === 'pendingId') return null;
      if (v === true) return k;
      return `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`;
    })
    .filter(Boolean)
    .join(', ');
}

/** "device.claimed" -> "Device claimed", "certificate.revoked" -> "Certificate revoked". */
export function describeAction(action) {
  const text = String(action || '').replace(/[._]+/g, ' ').trim();
  return text ? text[0].toUpperCase() + text.slice(1) : '—';
}

function describeActor(actor) {
  if (!actor) return '—';
  const session = currentSession() || {};
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
  if (sig === eventsSig) return;
  eventsSig = sig;
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
  const id = detailsId;
  if (!id) return;
  const [dev, events] = await Promise.allSettled([api('GET', devicePath(id)), api('GET', `${devicePath(id)}/events`)]);
  if (!isCurrent(gen) || id !== detailsId || !currentSession()) return;
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
    if (focusPending) {
      focusPending = false;
      focusOn($('details-error'));
    }
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

registerLoader('details', loadDetails);
