// Relay names and logic and sensor offsets on the details view, sent through the device shadow. Only
// what was changed is sent; an offset left empty is left alone (not sent as 0). Problems show next to
// their field, the outcome next to the Save button.
import { api, statePath } from './api.js';
import { $, el, setText, show } from './dom.js';
import { clearFieldError, plainApiMessage, setFieldError } from './fields.js';
import { isLive } from './status.js';

const RELAY_NAME_MAX = 32;
const LOGIC = [
  ['positive', 'Positive (on = high)'],
  ['negative', 'Negative (on = low)'],
];

let shown = null; // {id, caps} of the form on screen

function capsOf(shadow) {
  return (shadow && shadow.reported && shadow.reported.capabilities) || null;
}

function field(id, label, control, hint = null) {
  const error = el('p', { class: 'field-error', id: `${id}-error`, testid: 'field-error', role: 'alert', hidden: true });
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), control, hint, error);
}

function settingsForm(caps) {
  const relays = Object.entries(caps.relays || {});
  const sensors = Object.entries(caps.sensors || {});
  const relayRows = relays.map(([rid, relay]) =>
    el(
      'div',
      { class: 'settings-row' },
      field(`relay-name-${rid}`, `Relay ${rid} name`,
        el('input', { id: `relay-name-${rid}`, type: 'text', testid: 'relay-name', 'data-relay': rid, value: relay.name || '', maxlength: RELAY_NAME_MAX, autocomplete: 'off' })),
      field(`relay-logic-${rid}`, `Relay ${rid} logic`,
        el('select', { id: `relay-logic-${rid}`, testid: 'relay-logic', 'data-relay': rid },
          ...LOGIC.map(([value, text]) => el('option', { value, text, selected: relay.logic === value })))),
    ),
  );
  const sensorRows = sensors.map(([sid, sensor]) =>
    field(`sensor-offset-${sid}`, `${sid} (${sensor.type}) offset, ${sensor.unit}`,
      el('input', { id: `sensor-offset-${sid}`, type: 'number', step: '0.1', inputmode: 'decimal', testid: 'sensor-offset', 'data-sensor': sid, value: String(sensor.offset ?? 0), 'aria-describedby': `sensor-offset-${sid}-hint` }),
      el('p', { class: 'hint', id: `sensor-offset-${sid}-hint`, text: 'Added to every reading. Leave it empty to keep the current offset.' })),
  );
  const form = el(
    'form',
    { class: 'settings-form', testid: 'controls-form', novalidate: true },
    relays.length ? el('fieldset', { class: 'settings-group' }, el('legend', { text: 'Relays' }), ...relayRows) : null,
    sensors.length ? el('fieldset', { class: 'settings-group' }, el('legend', { text: 'Sensors' }), ...sensorRows) : null,
    el('p', { class: 'form-error', testid: 'controls-error', role: 'alert', hidden: true }),
    el(
      'div',
      { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn btn-primary', testid: 'controls-save', text: 'Save settings' }),
      el('p', { class: 'form-status', testid: 'controls-status', role: 'status' }),
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    save(form);
  });
  return form;
}

const errorBox = (input) => $(`${input.id}-error`);

/** {patch, count} of what differs from the device's settings, or {problems} to show by the fields. */
function collect(form, caps) {
  const patch = {};
  const problems = [];
  const put = (group, key, value) => {
    patch[group] = patch[group] || {};
    patch[group][key] = value;
  };
  form.querySelectorAll('[data-testid="relay-name"]').forEach((input) => {
    const rid = input.dataset.relay;
    const name = input.value.trim();
    if (!name) problems.push([input, `Give relay ${rid} a name (up to ${RELAY_NAME_MAX} characters).`]);
    else if (name !== ((caps.relays || {})[rid] || {}).name) put('relayNames', rid, name);
  });
  form.querySelectorAll('[data-testid="relay-logic"]').forEach((select) => {
    const rid = select.dataset.relay;
    if (select.value !== ((caps.relays || {})[rid] || {}).logic) put('relayLogic', rid, select.value);
  });
  form.querySelectorAll('[data-testid="sensor-offset"]').forEach((input) => {
    const sid = input.dataset.sensor;
    if (input.validity.badInput) {
      problems.push([input, 'Enter a number, like 0.5 or -1.2.']);
      return;
    }
    if (input.value.trim() === '') return; // empty: leave the offset as it is
    const value = Number(input.value);
    if (!Number.isFinite(value)) problems.push([input, 'Enter a number, like 0.5 or -1.2.']);
    else if (value !== Number(((caps.sensors || {})[sid] || {}).offset ?? 0)) put('sensorOffsets', sid, value);
  });
  return { patch, problems };
}

function fieldFor(form, apiField) {
  const [group, key] = apiField.split('.');
  const testid = { relayNames: 'relay-name', relayLogic: 'relay-logic', sensorOffsets: 'sensor-offset' }[group];
  if (!testid || !key) return null;
  const attr = group === 'sensorOffsets' ? 'data-sensor' : 'data-relay';
  return form.querySelector(`[data-testid="${testid}"][${attr}="${CSS.escape(key)}"]`);
}

async function save(form) {
  const status = form.querySelector('[data-testid="controls-status"]');
  const formError = form.querySelector('[data-testid="controls-error"]');
  const button = form.querySelector('[data-testid="controls-save"]');
  setText(status, '');
  show(formError, false);
  form.querySelectorAll('input, select').forEach((input) => clearFieldError(input, errorBox(input)));
  const { id, caps } = shown;
  const { patch, problems } = collect(form, caps);
  if (problems.length) {
    for (const [input, message] of problems) setFieldError(input, errorBox(input), message);
    problems[0][0].focus();
    return;
  }
  if (!Object.keys(patch).length) {
    setText(status, 'Nothing to save — these are the current settings.');
    return;
  }
  button.disabled = true;
  try {
    await api('PATCH', statePath(id), patch);
    setText(status, 'Saved. The device applies the settings the next time it is online.');
  } catch (err) {
    const plain = err.status === 400 ? plainApiMessage(err.message) : { field: '', text: err.message };
    const input = plain.field && fieldFor(form, plain.field);
    if (input) {
      setFieldError(input, errorBox(input), plain.text);
      input.focus();
    } else {
      setText(formError, `Couldn't save the settings: ${plain.text}`);
      show(formError);
    }
  } finally {
    button.disabled = false;
  }
}

document.addEventListener('latchkey:details-rendered', async (event) => {
  const { device } = event.detail;
  const section = $('controls-section');
  const body = $('controls-body');
  if (!isLive(device) || device.role === 'viewer') {
    section.hidden = true; // settings are the owner's and operators' (viewers get 403)
    return;
  }
  try {
    const caps = capsOf(await api('GET', statePath(device.id)));
    if (!caps) {
      section.hidden = true;
      return;
    }
    // Built once per device: later refreshes must not undo what the person is typing.
    if (!shown || shown.id !== device.id || !body.querySelector('form')) {
      shown = { id: device.id, caps };
      body.replaceChildren(settingsForm(caps));
    } else {
      shown.caps = caps; // what "changed" means: compared with what the device reports now
    }
    section.hidden = false;
  } catch {
    section.hidden = true;
  }
});
