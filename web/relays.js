// Relays and sensors through the device shadow: toggles on each device card (pending until the
// device confirms), the latest sensor reading with its age, and relay/sensor settings on the details.
import { api } from './api.js';
import { el, notice } from './dom.js';
import { relativeTime } from './format.js';

const states = new Map(); // device id -> last GET /v1/devices/{id}/state

async function fetchState(id) {
  const body = await api('GET', `/v1/devices/${encodeURIComponent(id)}/state`);
  states.set(id, body);
  return body;
}

async function change(id, patch) {
  try {
    const body = await api('PATCH', `/v1/devices/${encodeURIComponent(id)}/state`, patch);
    states.set(id, body);
    return body;
  } catch (err) {
    notice(err.message, 'error');
    return null;
  }
}

function relayRows(id, shadow, onChanged) {
  const caps = (shadow.reported && shadow.reported.capabilities) || {};
  const reported = (shadow.reported && shadow.reported.relays) || {};
  const pending = (shadow.delta && shadow.delta.relays) || {};
  return Object.entries(caps.relays || {}).map(([rid, relay]) => {
    const waiting = Object.prototype.hasOwnProperty.call(pending, rid);
    const on = waiting ? Boolean(pending[rid]) : Boolean(reported[rid]);
    const label = `${relay.name || rid}: ${on ? 'On' : 'Off'}${waiting ? ' …' : ''}`;
    return el('button', {
      type: 'button',
      class: `btn btn-small relay${on ? ' relay-on' : ''}${waiting ? ' relay-pending' : ''}`,
      testid: 'relay-toggle',
      'data-relay': rid,
      'data-reported': String(Boolean(reported[rid])),
      'data-pending': String(waiting),
      'aria-pressed': String(on),
      title: waiting ? 'Waiting for the device to confirm' : 'Switch',
      text: label,
      onclick: async () => {
        const updated = await change(id, { relays: { [rid]: !on } });
        if (updated) onChanged(updated);
      },
    });
  });
}

function sensorRows(shadow) {
  const readings = (shadow.reported && shadow.reported.sensors) || {};
  return Object.entries(readings).map(([sid, reading]) => el('span', {
    class: 'muted small sensor', testid: 'sensor-reading', 'data-sensor': sid,
    text: `${sid}: ${reading.value} ${reading.unit || ''} · ${relativeTime(reading.at ? reading.at * 1000 : null)}`,
  }));
}

function renderCardControls(card, id, shadow) {
  let box = card.querySelector('[data-testid="device-controls"]');
  if (!box) {
    box = el('div', { class: 'controls', testid: 'device-controls' });
    card.querySelector('.card-open').before(box);
  }
  const redraw = (updated) => renderCardControls(card, id, updated);
  box.replaceChildren(...relayRows(id, shadow, redraw), ...sensorRows(shadow));
}

document.addEventListener('latchkey:devices-rendered', (event) => {
  const { devices, cards } = event.detail;
  for (const device of devices) {
    const card = cards.get(String(device.id));
    if (!card || device.state !== 'active') continue;
    fetchState(device.id).then((shadow) => renderCardControls(card, device.id, shadow)).catch(() => {});
  }
});

function settingsForm(id, shadow) {
  const caps = (shadow.reported && shadow.reported.capabilities) || {};
  const fields = [];
  for (const [rid, relay] of Object.entries(caps.relays || {})) {
    fields.push(el('label', { for: `relay-name-${rid}`, text: `Relay ${rid} name` }),
      el('input', { id: `relay-name-${rid}`, testid: 'relay-name', 'data-relay': rid, value: relay.name || '', maxlength: 32 }),
      el('label', { for: `relay-logic-${rid}`, text: `Relay ${rid} logic` }),
      el('select', { id: `relay-logic-${rid}`, testid: 'relay-logic', 'data-relay': rid },
        ...['positive', 'negative'].map((v) => el('option', { value: v, text: v, selected: relay.logic === v }))));
  }
  for (const [sid, sensor] of Object.entries(caps.sensors || {})) {
    fields.push(el('label', { for: `sensor-offset-${sid}`, text: `${sid} (${sensor.type}) offset, ${sensor.unit}` }),
      el('input', { id: `sensor-offset-${sid}`, testid: 'sensor-offset', 'data-sensor': sid, type: 'number', step: '0.1', value: String(sensor.offset ?? 0) }));
  }
  const form = el('form', { class: 'add-device-form', testid: 'controls-form' }, ...fields,
    el('button', { type: 'submit', class: 'btn btn-primary', testid: 'controls-save', text: 'Save settings' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const patch = { relayNames: {}, relayLogic: {}, sensorOffsets: {} };
    form.querySelectorAll('[data-testid="relay-name"]').forEach((i) => { patch.relayNames[i.dataset.relay] = i.value.trim(); });
    form.querySelectorAll('[data-testid="relay-logic"]').forEach((i) => { patch.relayLogic[i.dataset.relay] = i.value; });
    form.querySelectorAll('[data-testid="sensor-offset"]').forEach((i) => { patch.sensorOffsets[i.dataset.sensor] = Number(i.value); });
    if (await change(id, patch)) notice('Settings sent to the device.');
  });
  return form;
}

document.addEventListener('latchkey:details-rendered', async (event) => {
  const { device } = event.detail;
  const section = document.getElementById('controls-section');
  const body = document.getElementById('controls-body');
  if (device.state !== 'active') { section.hidden = true; return; }
  try {
    const shadow = await fetchState(device.id);
    const caps = shadow.reported && shadow.reported.capabilities;
    if (!caps) { section.hidden = true; return; }
    if (body.dataset.deviceId !== device.id || !body.querySelector('form')) {
      body.dataset.deviceId = device.id;
      body.replaceChildren(settingsForm(device.id, shadow));
    }
    section.hidden = false;
  } catch {
    section.hidden = true;
  }
});
