// A device's state and presence in words, and the badge that shows them. Shared by cards and details.
import { setText } from './dom.js';

const PRESENCE_LABELS = { online: 'Online', away: 'Away', offline: 'Offline' };

export const STATE_NOTES = {
  unclaimed: 'Not claimed',
  claimed: 'Waiting for the device to check in',
  provisioned: 'Receiving its certificate',
  revoked: 'Revoked — the device can no longer connect',
  deleted: 'Deleted',
};

export const STATE_LABELS = {
  unclaimed: 'Unclaimed',
  claimed: 'Claimed — waiting for the device',
  provisioned: 'Certificate delivered, waiting for the device to confirm',
  active: 'Active',
  revoked: 'Revoked',
};

export function presenceOf(device) {
  const p = String((device && device.presence) || 'offline').toLowerCase();
  return PRESENCE_LABELS[p] ? p : 'offline';
}

export function certText(cert) {
  if (!cert || !cert.status) return 'None yet';
  return String(cert.status).replace(/_/g, ' ');
}

export function setBadge(node, presence) {
  node.className = `badge badge-${presence}`;
  node.dataset.presence = presence;
  setText(node, PRESENCE_LABELS[presence]);
}
