// "Add device" (design.md B): a pending device with a one-time registration token, its downloadable
// configuration, and the actions on pending devices (Delete, Claim this device, Regenerate / Upgrade).
import { api } from './api.js';
import { expectDevice } from './devices.js';
import { confirmAction } from './dialogs.js';
import { el, focusOn, notice } from './dom.js';
import { NAME_MAX, clearFieldError, nameProblem, plainApiMessage, setFieldError } from './fields.js';
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
  const note = el('p', {
    class: 'form-success',
    testid: 'config-note',
    text: `Configuration for “${created.name}”. Its registration token is shown only now and works once, for 24 hours.`,
  });
  box.replaceChildren(
    note,
    el('pre', { class: 'config-text', testid: 'config-text', tabindex: 0, 'aria-label': `Configuration ${filename}`, text }),
    el('div', { class: 'form-actions' },
      el('button', { type: 'button', class: 'btn btn-primary', testid: 'config-download', text: `Download ${filename}`, onclick: () => download(filename, text) }),
      el('button', { type: 'button', class: 'btn', testid: 'config-close', text: 'Done', onclick: () => { box.replaceChildren(); focusOn(document.querySelector('[data-testid="add-device-button"]')); } })),
  );
  focusOn(note);
}

function field(label, control, error, hint = null) {
  return el('div', { class: 'field' }, el('label', { for: control.id, text: label }), control, hint, error);
}

function mountAddDevice(slot) {
  const result = el('div', { class: 'config-box', testid: 'add-device-result' });
  const error = el('p', { class: 'form-error', id: 'add-device-error', testid: 'add-device-error', role: 'alert', hidden: true });
  const nameError = el('p', { class: 'field-error', id: 'add-device-name-error', testid: 'add-device-name-error', role: 'alert', hidden: true });
  const name = el('input', { id: 'add-device-name', testid: 'add-device-name', type: 'text', required: true, maxlength: NAME_MAX, autocomplete: 'off', placeholder: 'e.g. Greenhouse' });
  const board = el('select', { id: 'add-device-board', testid: 'add-device-board' },
    ...BOARDS.map(([value, label]) => el('option', { value, text: label })));
  const form = el('form', { class: 'inline-form', id: 'add-device-form', testid: 'add-device-form', novalidate: true, hidden: true, 'aria-label': 'Add a device' },
    el('div', { class: 'inline-form-fields' },
      field('Name', name, nameError),
      field('Board', board, null)),
    error,
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn btn-primary', testid: 'add-device-submit', text: 'Create configuration' }),
      el('button', { type: 'button', class: 'btn', testid: 'add-device-cancel', text: 'Cancel', onclick: () => toggle(false) })));
  const open = el('button', { type: 'button', class: 'btn', testid: 'add-device-button', text: 'Add device',
    'aria-expanded': 'false', 'aria-controls': 'add-device-form', onclick: () => toggle(form.hidden) });
  function toggle(visible) {
    form.hidden = !visible;
    open.setAttribute('aria-expanded', String(visible));
    if (visible) name.focus();
    else {
      form.reset();
      clearFieldError(name, nameError);
      error.hidden = true;
      open.focus();
    }
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    clearFieldError(name, nameError);
    const problem = nameProblem(name.value);
    if (problem) {
      setFieldError(name, nameError, problem);
      name.focus();
      return;
    }
    try {
      const created = await api('POST', '/v1/pending', { name: name.value.trim(), board: board.value });
      form.reset();
      form.hidden = true;
      open.setAttribute('aria-expanded', 'false');
      renderConfig(result, created);
      restartPolling();
    } catch (err) {
      const plain = err.status === 400 ? plainApiMessage(err.message) : { field: '', text: err.message };
      if (plain.field === 'name') {
        setFieldError(name, nameError, plain.text);
        name.focus();
      } else {
        error.textContent = plain.text;
        error.hidden = false;
      }
    }
  });
  slot.replaceChildren(open, form, result);
}

function actionButton(label, testid, onclick, danger = false) {
  return el('button', { type: 'button', class: `btn btn-small${danger ? ' btn-danger' : ''}`, testid, text: label, onclick });
}

// Buttons are rebuilt only when what they offer changes, so a refresh never takes the focus away.
function fillPendingActions(items) {
  for (const item of items) {
    const slot = document.querySelector(`[data-pending-actions="${CSS.escape(String(item.id))}"]`);
    const sig = `${item.state}|${Boolean(item.upgradeAvailable)}`;
    if (!slot || slot.dataset.sig === sig) continue;
    slot.dataset.sig = sig;
    const name = item.name || item.id;
    const buttons = [];
    if (item.state === 'registered') {
      buttons.push(actionButton('Claim this device', 'pending-claim', () => confirmAction({
        title: 'Claim this device', message: `Claim “${name}” for your account?`, confirmLabel: 'Claim',
        action: async () => {
          const device = await api('POST', `/v1/pending/${encodeURIComponent(item.id)}/claim`);
          expectDevice(device && device.id);
          notice(`Claimed “${name}”.`, 'success');
          restartPolling();
        },
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
      action: async () => {
        await api('DELETE', `/v1/pending/${encodeURIComponent(item.id)}`);
        notice(`“${name}” was deleted.`, 'success');
        restartPolling();
      },
    }), true));
    slot.replaceChildren(...buttons);
  }
}

const slot = document.getElementById('add-device-slot');
if (slot) mountAddDevice(slot);
document.addEventListener('latchkey:pending-rendered', (event) => fillPendingActions(event.detail.items));
