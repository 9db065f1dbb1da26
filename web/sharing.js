// Sharing (docs/web.md, "Sharing and transfer"): the Share dialog on the details view (members, add by
// email and role, remove), and the role-aware page: a member sees who shared the device with them and
// none of the owner's actions; a viewer gets no relay toggles (relays.js, relay-settings.js read the role).
import { api, devicePath } from './api.js';
import { currentDevice } from './details.js';
import { $, el, focusOn, reconcile, setText, show } from './dom.js';
import { clearFieldError, plainApiMessage, setFieldError } from './fields.js';
import { displayName } from './format.js';
import { restartPolling } from './views.js';

export const ROLE_LABELS = { owner: 'Owner', operator: 'Operator', viewer: 'Viewer' };
const OWNER_ONLY = ['rename-button', 'revoke-button', 'release-button', 'delete-button', 'share-button', 'transfer-button'];

const sharesPath = (id) => `${devicePath(id)}/shares`;
let dialogDevice = null; // the device whose members the dialog shows
let opener = null;

export const roleOf = (device) => (device && device.role) || 'owner';

// --- the role on the details view and on the cards ---------------------------------------------------

document.addEventListener('latchkey:details-rendered', (event) => {
  const { device } = event.detail;
  const role = roleOf(device);
  const owner = role === 'owner';
  for (const id of OWNER_ONLY) {
    const button = $(id);
    if (!owner && document.activeElement === button) focusOn($('details-name'));
    show(button, owner);
  }
  show(document.querySelector('[data-testid="events-section"]'), owner); // the audit trail is the owner's
  const note = $('details-role-note');
  setText(note, owner ? '' : `Shared with you by ${device.sharedBy || 'its owner'} — you are ${role === 'operator' ? 'an operator' : 'a viewer'}.`);
  note.dataset.role = role;
  show(note, !owner);
});

document.addEventListener('latchkey:devices-rendered', (event) => {
  const { devices, cards } = event.detail;
  for (const device of devices) {
    const card = cards.get(String(device.id));
    if (!card) continue;
    const role = roleOf(device);
    card.dataset.role = role;
    let chip = card.querySelector('[data-testid="device-role"]');
    if (role === 'owner') {
      if (chip) chip.remove();
      continue;
    }
    if (!chip) {
      chip = el('p', { class: 'muted small', testid: 'device-role' });
      card.querySelector('.card-head').after(chip);
    }
    setText(chip, `Shared by ${device.sharedBy || 'its owner'} · ${ROLE_LABELS[role] || role}`);
    chip.dataset.role = role;
  }
});

// --- the Share dialog -------------------------------------------------------------------------------

function memberRow(share) {
  const remove = el('button', { type: 'button', class: 'btn btn-small', testid: 'share-remove' }, 'Remove');
  remove.addEventListener('click', () => removeMember(share, remove));
  return el(
    'li',
    { class: 'pending-item', testid: 'share-item', 'data-user-id': share.userId },
    el('span', { class: 'pending-name', testid: 'share-email-text' }),
    el('span', { class: 'chip', testid: 'share-role-text' }),
    el('span', { class: 'pending-actions' }, remove),
  );
}

function updateMemberRow(row, share) {
  setText(row.querySelector('[data-testid="share-email-text"]'), share.email || share.userId);
  const chip = row.querySelector('[data-testid="share-role-text"]');
  setText(chip, ROLE_LABELS[share.role] || share.role);
  chip.dataset.role = share.role;
  row.querySelector('[data-testid="share-remove"]').setAttribute('aria-label', `Remove ${share.email || share.userId}`);
}

async function loadMembers() {
  const device = dialogDevice;
  if (!device) return;
  try {
    const data = await api('GET', sharesPath(device.id));
    if (dialogDevice !== device) return;
    const shares = (data && data.shares) || [];
    show($('share-loading'), false);
    show($('share-empty'), shares.length === 0);
    reconcile($('share-list'), shares, {
      key: (s) => s.userId,
      create: memberRow,
      update: updateMemberRow,
      focusFallback: $('share-email'),
    });
  } catch (err) {
    show($('share-loading'), false);
    showError(`Couldn't load who this device is shared with: ${err.message}`);
  }
}

function showError(message) {
  setText($('share-error'), message);
  show($('share-error'));
}

async function removeMember(share, button) {
  const device = dialogDevice;
  if (!device || button.getAttribute('aria-busy') === 'true') return;
  button.setAttribute('aria-busy', 'true');
  show($('share-error'), false);
  try {
    await api('DELETE', `${sharesPath(device.id)}/${encodeURIComponent(share.userId)}`);
    setText($('share-status'), `${share.email || 'The member'} no longer has access.`);
    await loadMembers();
  } catch (err) {
    showError(`Couldn't remove ${share.email || 'the member'}: ${err.message}`);
  } finally {
    button.removeAttribute('aria-busy');
  }
}

async function addMember(event) {
  event.preventDefault();
  const device = dialogDevice;
  if (!device) return;
  const input = $('share-email');
  const email = input.value.trim();
  clearFieldError(input, $('share-error'));
  setText($('share-status'), '');
  if (!/^[^@\s]+@[^@\s]+$/.test(email)) {
    setFieldError(input, $('share-error'), 'Enter the email address of the account to share with.');
    input.focus();
    return;
  }
  const role = $('share-role').value;
  const button = $('share-add');
  button.disabled = true;
  try {
    await api('POST', sharesPath(device.id), { email, role });
    input.value = '';
    setText($('share-status'), `Shared with ${email} as ${ROLE_LABELS[role].toLowerCase()}.`);
    await loadMembers();
    input.focus();
  } catch (err) {
    const plain = err.status === 400 ? plainApiMessage(err.message) : { field: '', text: err.message };
    if (plain.field === 'email' || err.status === 404) setFieldError(input, $('share-error'), plain.text);
    else showError(plain.text);
    input.focus();
  } finally {
    button.disabled = false;
  }
}

function openShareDialog() {
  const device = currentDevice();
  dialogDevice = device;
  opener = document.activeElement;
  setText($('share-title'), `Share “${displayName(device)}”`);
  $('share-list').replaceChildren();
  show($('share-loading'));
  show($('share-empty'), false);
  clearFieldError($('share-email'), $('share-error'));
  setText($('share-status'), '');
  $('share-email').value = '';
  $('share-role').value = 'viewer';
  $('share-dialog').showModal();
  $('share-email').focus();
  loadMembers();
}

function closeShareDialog() {
  if ($('share-dialog').open) $('share-dialog').close();
}

$('share-button').addEventListener('click', openShareDialog);
$('share-form').addEventListener('submit', addMember);
$('share-close').addEventListener('click', closeShareDialog);
$('share-dialog').addEventListener('close', () => {
  dialogDevice = null;
  if (opener && opener.isConnected && opener.offsetParent !== null) focusOn(opener);
  opener = null;
  restartPolling();
});
document.addEventListener('latchkey:signed-out', closeShareDialog);
