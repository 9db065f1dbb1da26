// A device's state and presence in words, and the badge that shows them. Shared by cards and details.
// Presence means something only for an active device: a revoked, released or deleted device, or one
// still waiting for its certificate, shows its state, never a stale "Online".
import { checkInHint } from './checkin.js';
import { setText } from './dom.js';

const PRESENCE_LABELS = { online: 'Online', away: 'Away', offline: 'Offline' };

const STATE_BADGES = {
  unclaimed: ['released', 'Released'],
  claimed: ['waiting', 'Claimed'],
  provisioned: ['waiting', 'Connecting'],
  revoked: ['revoked', 'Revoked'],
  deleted: ['deleted', 'Deleted'],
};

export const STATE_NOTES = {
  unclaimed: 'Released — no longer in your account',
  claimed: 'Waiting for the device to check in',
  provisioned: 'Receiving its certificate',
  revoked: 'Revoked — the device can no longer connect',
  deleted: 'Deleted',
};

export const STATE_LABELS = {
  unclaimed: 'Released',
  claimed: 'Claimed — waiting for the device',
  provisioned: 'Certificate delivered, waiting for the device to confirm',
  active: 'Active',
  revoked: 'Revoked',
  deleted: 'Deleted',
};

/** True when the device has a working certificate, so its presence, readings and relays are real. */
export function isLive(device) {
  return Boolean(device) && device.state === 'active';
}

export function presenceOf(device) {
  if (!isLive(device)) return 'offline';
  const p = String(device.presence || 'offline').toLowerCase();
  return PRESENCE_LABELS[p] ? p : 'offline';
}

/** {key, label}: the presence of an active device, else its state. */
export function badgeOf(device) {
  if (isLive(device)) {
    const presence = presenceOf(device);
    return { key: presence, label: PRESENCE_LABELS[presence] };
  }
  const [key, label] = STATE_BADGES[device && device.state] || ['offline', 'Offline'];
  return { key, label };
}

export function stateNote(device) {
  if (!device || !device.state || device.state === 'active') return '';
  const hint = checkInHint(device); // a claimed device quiet for 30 s: when it will check in
  if (hint) return hint;
  return STATE_NOTES[device.state] || String(device.state);
}

export function certText(cert) {
  if (!cert || !cert.status) return 'None yet';
  return String(cert.status).replace(/_/g, ' ');
}

/** Draw the badge; `data-presence` is online / away / offline (never online unless active). */
export function setBadge(node, device) {
  const badge = badgeOf(device);
  const cls = `badge badge-${badge.key}`;
  if (node.className !== cls) node.className = cls;
  node.dataset.presence = presenceOf(device);
  node.dataset.badge = badge.key;
  setText(node, badge.label);
  return badge;
}
