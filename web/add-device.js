// "Add device" (design.md B): a pending device with a one-time registration token, its downloadable
// configuration, and the actions on pending devices (Delete, Claim this device, Regenerate / Upgrade).
import { api } from './api.js';
import { confirmAction } from './dialogs.js';
import { el } from './dom.js';
import { restartPolling } from './views.js';

const BOARDS = [
  ['python-agent', 'Python agent (Linux, Raspberry Pi)'],
  ['esp32', 'ESP32 (Arduino)'],
  ['esp8266', 'ESP8266 (Arduino)'],
];

function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const link = el('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// The configuration the API returned: shown once (the token is not stored in clear), with a download.
function renderConfig(box, created) {
  const kind = created.config.recommended || 'agentToml';
  const text = created.config[kind];
  const filename = created.config.filenames[kind];
  box.replaceChildren(
    el('p', { testid: 'config-note', text: `Configuration for “${created.name}”. Its registration token is shown only now and works once, for 24 hours.` }),
    el('pre', { class: 'config-text', testid: 'config-text', text }),
    el('button', { type: 'button', class: 'btn btn-primary', testid: 'config-download', text: `Download ${filename}`, onclick: () => download(filename, text) }),
  );
}

function mountAddDevice(slot) {
  const result = el('div', { class: 'config-box', testid: 'add-device-result' });
  const error = el('p', { class: 'banner banner-error', testid: 'add-device-error', role: 'alert', hidden: true });
  const name = el('input', { id: 'add-device-name', testid: 'add-device-name', required: true, maxlength: 64, autocomplete: 'off' });
  const board = el('select', { id: 'add-device-board', testid: 'add-device-board' },
    ...BOARDS.map(([value, label]) => el('option', { value, text: label })));
  const form = el('form', { class: 'add-device-form', testid: 'add-device-form', hidden: true },
    el('label', { for: 'add-device-name', text: 'Name' }), name,
    el('label', { for: 'add-device-board', text: 'Board' }), board,
    el('button', { type: 'submit', class: 'btn btn-primary', testid: 'add-device-submit', text: 'Create configuration' }),
    error);
  const open = el('button', { type: 'button', class: 'btn', testid: 'add-device-button', text: 'Add device',
    onclick: () => { form.hidden = !form.hidden; if (!form.hidden) name.focus(); } });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const created = await api('POST', '/v1/pending', { name: name.value.trim(), board: board.value });
      renderConfig(result, created);
      form.reset();
      form.hidden = true;
      restartPolling();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
  slot.replaceChildren(open, form, result);
}

function actionButton(label, testid, onclick, danger = false) {
  return el('button', { type: 'button', class: `btn btn-small${danger ? ' btn-danger' : ''}`, testid, text: label, onclick });
}

function fillPendingActions(items) {
  for (const item of items) {
    const slot = document.querySelector(`[data-pending-actions="${CSS.escape(String(item.id))}"]`);
    if (!slot || slot.childElementCount) continue;
    const name = item.name || item.id;
    const buttons = [];
    if (item.state === 'registered') {
      buttons.push(actionButton('Claim this device', 'pending-claim', () => confirmAction({
        title: 'Claim this device', message: `Claim “${name}” for your account?`, confirmLabel: 'Claim',
        action: async () => { await api('POST', `/v1/pending/${encodeURIComponent(item.id)}/claim`); restartPolling(); },
      })));
    }
    const label = item.upgradeAvailable ? 'Upgrade to secure v2' : 'Regenerate token';
    buttons.push(actionButton(label, item.upgradeAvailable ? 'pending-upgrade' : 'pending-regenerate', () => confirmAction({
      title: label,
      message: `Issue a new registration token for “${name}”? The old token stops working, and a device that registered with it loses its certificate.`,
      confirmLabel: label,
      action: async () => {
        const created = await api('POST', `/v1/pending/${encodeURIComponent(item.id)}/token`);
        renderConfig(document.querySelector('[data-testid="add-device-result"]'), created);
        restartPolling();
      },
    })));
    buttons.push(actionButton('Delete', 'pending-delete', () => confirmAction({
      title: 'Delete pending device', message: `Delete “${name}”? Its registration token stops working.`,
      confirmLabel: 'Delete', danger: true,
      action: async () => { await api('DELETE', `/v1/pending/${encodeURIComponent(item.id)}`); restartPolling(); },
    }), true));
    slot.replaceChildren(...buttons);
  }
}

const slot = document.getElementById('add-device-slot');
if (slot) mountAddDevice(slot);
document.addEventListener('latchkey:pending-rendered', (event) => fillPendingActions(event.detail.items));
