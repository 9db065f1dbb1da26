// Rename, Revoke, Release and Delete on the details view, each behind the confirmation dialog (Renew
// certificate: rotate.js).
import { api, devicePath } from './api.js';
import { currentDevice } from './details.js';
import { forgetCard } from './devices.js';
import { confirmAction } from './dialogs.js';
import { $, notice } from './dom.js';
import { NAME_MAX, nameProblem } from './fields.js';
import { displayName } from './format.js';
import { wireRotate } from './rotate.js';
import { restartPolling } from './views.js';

function renameDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Rename device',
    message: `Choose a new name for “${name}”.`,
    confirmLabel: 'Rename',
    input: { label: 'New name', value: device.name || '', maxLength: NAME_MAX, check: (value) => nameProblem(value) },
    action: async (newName) => {
      await api('PATCH', devicePath(device.id), { name: newName });
      notice(`Renamed “${name}” to “${newName}”.`, 'success');
      restartPolling();
    },
  });
}

function revokeDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Revoke certificate?',
    message: `Revoke the certificate of “${name}”? The device is disconnected at once and can't connect with this certificate again.`,
    confirmLabel: 'Revoke',
    danger: true,
    action: async () => {
      await api('POST', `${devicePath(device.id)}/revoke`);
      notice(`The certificate of “${name}” is revoked.`, 'success');
      restartPolling();
    },
  });
}

function releaseDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Release device?',
    message: `Release “${name}”? Its certificate is revoked, it forgets its credentials and leaves your account. Anyone with the code on its label can then claim it again.`,
    confirmLabel: 'Release',
    danger: true,
    action: async () => {
      await api('POST', `${devicePath(device.id)}/release`);
      forgetCard(device.id);
      notice(`“${name}” was released.`, 'success', 'devices');
      location.hash = '#/';
    },
  });
}

function deleteDevice() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Delete device?',
    message: `Delete “${name}”? Its certificate is revoked and it is removed for good — it can never connect again.`,
    confirmLabel: 'Delete',
    danger: true,
    action: async () => {
      await api('DELETE', devicePath(device.id));
      forgetCard(device.id);
      notice(`“${name}” was deleted.`, 'success', 'devices');
      location.hash = '#/';
    },
  });
}

export function wireDeviceActions() {
  $('rename-button').addEventListener('click', renameDevice);
  $('revoke-button').addEventListener('click', revokeDevice);
  $('release-button').addEventListener('click', releaseDevice);
  $('delete-button').addEventListener('click', deleteDevice);
  wireRotate();
}
