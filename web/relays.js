// Relays and sensors on each device card, through the device shadow: toggles (pending until the device
// confirms) and the latest sensor readings with their age. Only for an active device: a revoked or
// released one has no live readings and nothing to switch. Updated in place, so focus stays put.
import { api, statePath } from './api.js';
import { el, reconcile, setAttr, setText, show } from './dom.js';
import { relativeTime } from './format.js';
import { isLive } from './status.js';

const states = new Map(); // device id -> last GET/PATCH /v1/devices/{id}/state

function relaysOf(shadow) {
  const caps = (shadow.reported && shadow.reported.capabilities) || {};
  const reported = (shadow.reported && shadow.reported.relays) || {};
  const pending = (shadow.delta && shadow.delta.relays) || {};
  return Object.entries(caps.relays || {}).map(([rid, relay]) => {
    const waiting = Object.prototype.hasOwnProperty.call(pending, rid);
    return {
      rid,
      name: relay.name || rid,
      reported: Boolean(reported[rid]),
      waiting,
      on: waiting ? Boolean(pending[rid]) : Boolean(reported[rid]),
    };
  });
}

function sensorsOf(shadow) {
  const readings = (shadow.reported && shadow.reported.sensors) || {};
  return Object.entries(readings).map(([sid, reading]) => ({ sid, ...reading }));
}

function controlsOf(card) {
  let box = card.querySelector('[data-testid="device-controls"]');
  if (!box) {
    box = el(
      'div',
      { class: 'controls', testid: 'device-controls' },
      el('div', { class: 'controls-relays', role: 'group', 'aria-label': 'Relays' }),
      el('div', { class: 'controls-sensors' }),
      el('p', { class: 'field-error', testid: 'device-controls-error', role: 'alert', hidden: true }),
    );
    card.querySelector('.card-open').before(box);
  }
  return box;
}

async function toggle(card, id, rid, button) {
  const relay = relaysOf(states.get(id) || {}).find((r) => r.rid === rid);
  if (!relay) return;
  const error = controlsOf(card).querySelector('[data-testid="device-controls-error"]');
  show(error, false);
  // Busy, not disabled: a disabled button would drop the keyboard focus to <body>.
  if (button.getAttribute('aria-busy') === 'true') return;
  button.setAttribute('aria-busy', 'true');
  try {
    const updated = await api('PATCH', statePath(id), { relays: { [rid]: !relay.on } });
    states.set(id, updated);
    render(card, id, updated);
  } catch (err) {
    setText(error, `Couldn't switch ${relay.name}: ${err.message}`);
    show(error);
  } finally {
    button.removeAttribute('aria-busy');
  }
}

function createRelay(card, id) {
  return (relay) => {
    const button = el('button', { type: 'button', testid: 'relay-toggle', 'data-relay': relay.rid });
    button.addEventListener('click', () => toggle(card, id, relay.rid, button));
    return button;
  };
}

function updateRelay(button, relay) {
  const cls = `btn btn-small relay${relay.on ? ' relay-on' : ''}${relay.waiting ? ' relay-pending' : ''}`;
  if (button.className !== cls) button.className = cls;
  setAttr(button, 'data-reported', String(relay.reported));
  setAttr(button, 'data-pending', String(relay.waiting));
  setAttr(button, 'aria-pressed', String(relay.on));
  setAttr(button, 'title', relay.waiting ? 'Waiting for the device to confirm' : `Switch ${relay.name} ${relay.on ? 'off' : 'on'}`);
  setText(button, `${relay.name}: ${relay.on ? 'On' : 'Off'}${relay.waiting ? ' …' : ''}`);
}

function updateSensor(span, reading) {
  const at = reading.at ? reading.at * 1000 : null;
  setText(span, `${reading.sid}: ${reading.value} ${reading.unit || ''} · ${relativeTime(at)}`);
}

function render(card, id, shadow) {
  const box = controlsOf(card);
  // A viewer of a shared device sees its sensors but gets no relay toggles (the API would answer 403).
  const relays = card.dataset.role === 'viewer' ? [] : relaysOf(shadow);
  reconcile(box.querySelector('.controls-relays'), relays, {
    key: (r) => r.rid,
    create: createRelay(card, id),
    update: updateRelay,
  });
  reconcile(box.querySelector('.controls-sensors'), sensorsOf(shadow), {
    key: (s) => s.sid,
    create: (s) => el('span', { class: 'muted small sensor', testid: 'sensor-reading', 'data-sensor': s.sid }),
    update: updateSensor,
  });
}

document.addEventListener('latchkey:devices-rendered', (event) => {
  const { devices, cards } = event.detail;
  for (const device of devices) {
    const card = cards.get(String(device.id));
    if (!card) continue;
    if (!isLive(device)) {
      const box = card.querySelector('[data-testid="device-controls"]');
      if (box) box.remove();
      states.delete(device.id);
      continue;
    }
    api('GET', statePath(device.id))
      .then((shadow) => {
        states.set(device.id, shadow);
        if (card.isConnected && card.dataset.state === 'active') render(card, device.id, shadow);
      })
      .catch(() => {});
  }
});
