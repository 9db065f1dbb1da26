// Transfer (docs/web.md, "Sharing and transfer"): the owner offers a device to another account from the
// details view; offers to and from this account are listed on My Devices with Accept / Decline / Cancel,
// and a pending offer of the device on screen is shown on its details with Cancel offer.
import { api, devicePath } from './api.js';
import { currentDevice } from './details.js';
import { confirmAction } from './dialogs.js';
import { $, el, notice, reconcile, setText, show } from './dom.js';
import { absoluteTime, timeUntil } from './format.js';
import { currentSession } from './session.js';
import { restartPolling } from './views.js';

const EMAIL = /^[^@\s]+@[^@\s]+$/;
let latest = []; // the last GET /v1/transfers

/** Days while there are more than two left ("expires in 7 days"), then hours and minutes. */
function expiresIn(value) {
  const ms = Date.parse(value) - Date.now();
  const days = Math.round(ms / 86400000);
  return ms > 0 && days >= 2 ? `expires in ${days} days` : timeUntil(value);
}

const transferPath = (id) => `/v1/transfers/${encodeURIComponent(id)}`;
const label = (offer) => `“${offer.deviceName || offer.deviceId}”`;

async function loadTransfers() {
  const data = await api('GET', '/v1/transfers');
  latest = (data && data.transfers) || [];
  return latest;
}

// --- offering (details view) -------------------------------------------------------------------------

function offerTransfer() {
  const device = currentDevice();
  const name = device.name || device.id;
  confirmAction({
    title: 'Transfer device',
    message: `Offer “${name}” to another account. When they accept, it becomes theirs: you and everyone you shared it with lose access, and it reconnects with a new certificate. The offer expires in 7 days.`,
    confirmLabel: 'Offer transfer',
    input: {
      label: 'Email of the new owner',
      maxLength: 254,
      check: (value) => (EMAIL.test(value) ? '' : 'Enter the email address of the new owner.'),
    },
    action: async (email) => {
      await api('POST', `${devicePath(device.id)}/transfer`, { email });
      notice(`“${name}” is offered to ${email}. The offer expires in 7 days unless they accept it.`, 'success');
      restartPolling();
    },
  });
}

function cancelOffer(offer) {
  confirmAction({
    title: 'Cancel transfer offer?',
    message: `Cancel the offer of ${label(offer)} to ${offer.recipient}? The device stays yours.`,
    confirmLabel: 'Cancel offer',
    action: async () => {
      await api('DELETE', transferPath(offer.id));
      notice(`The offer of ${label(offer)} was cancelled.`, 'success');
      restartPolling();
    },
  });
}

document.addEventListener('latchkey:details-rendered', async (event) => {
  const { device } = event.detail;
  const note = $('details-transfer-note');
  if ((device.role || 'owner') !== 'owner') {
    show(note, false);
    return;
  }
  let offers = latest;
  try {
    offers = await loadTransfers();
  } catch {
    // keep what was shown
  }
  if (currentDevice().id !== device.id) return;
  const offer = offers.find((o) => o.direction === 'outgoing' && o.deviceId === device.id);
  show(note, Boolean(offer));
  $('transfer-button').disabled = Boolean(offer);
  $('transfer-button').title = offer ? 'A transfer offer is pending' : '';
  if (offer) {
    setText($('details-transfer-text'), `Offered to ${offer.recipient} — ${expiresIn(offer.expiresAt)}.`);
    note.dataset.transferId = offer.id;
  }
});

// --- answering (My Devices) --------------------------------------------------------------------------

function acceptOffer(offer) {
  confirmAction({
    title: 'Accept transfer?',
    message: `${label(offer)} from ${offer.sender} becomes yours. It starts fresh: a new certificate, default name and settings, no shares and none of the previous owner's history.`,
    confirmLabel: 'Accept',
    action: async () => {
      await api('POST', `${transferPath(offer.id)}/accept`);
      notice(`${label(offer)} is now yours. It joins with a new certificate the next time it checks in.`, 'success');
      restartPolling();
    },
  });
}

function declineOffer(offer) {
  confirmAction({
    title: 'Decline transfer?',
    message: `Decline ${label(offer)} from ${offer.sender}? The device stays with them.`,
    confirmLabel: 'Decline',
    danger: true,
    action: async () => {
      await api('DELETE', transferPath(offer.id));
      notice(`You declined ${label(offer)}.`, 'success');
      restartPolling();
    },
  });
}

function createOfferRow(offer) {
  const incoming = offer.direction === 'incoming';
  const buttons = incoming
    ? [
        el('button', { type: 'button', class: 'btn btn-small btn-primary', testid: 'transfer-accept', onclick: () => acceptOffer(current(offer.id)) }, 'Accept'),
        el('button', { type: 'button', class: 'btn btn-small', testid: 'transfer-decline', onclick: () => declineOffer(current(offer.id)) }, 'Decline'),
      ]
    : [el('button', { type: 'button', class: 'btn btn-small', testid: 'transfer-cancel', onclick: () => cancelOffer(current(offer.id)) }, 'Cancel offer')];
  return el(
    'li',
    { class: 'pending-item', testid: 'transfer-item', 'data-transfer-id': offer.id, 'data-direction': offer.direction },
    el('span', { class: 'pending-name', testid: 'transfer-text' }),
    el('span', { class: 'muted small', testid: 'transfer-expires' }),
    el('span', { class: 'pending-actions' }, buttons),
  );
}

function current(id) {
  return latest.find((o) => o.id === id) || { id };
}

function updateOfferRow(row, offer) {
  const text =
    offer.direction === 'incoming'
      ? `${label(offer)} offered to you by ${offer.sender}`
      : `${label(offer)} offered to ${offer.recipient}`;
  setText(row.querySelector('[data-testid="transfer-text"]'), text);
  const expires = row.querySelector('[data-testid="transfer-expires"]');
  setText(expires, expiresIn(offer.expiresAt));
  expires.title = absoluteTime(offer.expiresAt);
}

document.addEventListener('latchkey:devices-rendered', async () => {
  let offers;
  try {
    offers = await loadTransfers();
  } catch (err) {
    if (!currentSession() || err.status === 401) return;
    setText($('transfers-error'), `Couldn't load transfer offers: ${err.message}`);
    show($('transfers-error'));
    show($('transfers-section'));
    return;
  }
  show($('transfers-error'), false);
  show($('transfers-section'), offers.length > 0);
  reconcile($('transfers-list'), offers, {
    key: (o) => o.id,
    create: createOfferRow,
    update: updateOfferRow,
    focusFallback: $('devices-heading'),
  });
});

$('transfer-button').addEventListener('click', offerTransfer);
$('transfer-cancel-button').addEventListener('click', () => {
  const id = $('details-transfer-note').dataset.transferId;
  const offer = latest.find((o) => o.id === id);
  if (offer) cancelOffer(offer);
});
document.addEventListener('latchkey:signed-out', () => {
  latest = [];
  $('transfers-list').replaceChildren();
  show($('transfers-section'), false);
});
