// "Renew certificate" on the details view: asks the agent for a new key and certificate (POST /rotate),
// behind the confirmation dialog. The old certificate keeps working until the device has switched.
import { api, devicePath } from './api.js';
import { currentDevice } from './details.js';
import { confirmAction } from './dialogs.js';
import { $, focusOn, notice } from './dom.js';
import { displayName } from './format.js';
import { restartPolling } from './views.js';

function renewCertificate() {
  const device = currentDevice();
  const name = displayName(device);
  confirmAction({
    title: 'Renew certificate?',
    message: `Give “${name}” a new key and certificate? It switches by itself, the next time it is online; its current certificate keeps working until then and is revoked afterwards.`,
    confirmLabel: 'Renew',
    action: async () => {
      await api('POST', `${devicePath(device.id)}/rotate`);
      notice(`“${name}” will switch to a new certificate as soon as it is online.`, 'success');
      restartPolling();
    },
  });
}

// Only an active device renews (the service answers 409 otherwise): the button says so.
function reflect(event) {
  const device = event.detail && event.detail.device;
  const button = $('rotate-button');
  if (!device || !button) return;
  const disable = device.state !== 'active';
  if (disable && document.activeElement === button) focusOn($('details-name'));
  button.disabled = disable;
  button.title = disable ? 'Only an active device can renew its certificate' : '';
}

export function wireRotate() {
  $('rotate-button').addEventListener('click', renewCertificate);
  document.addEventListener('latchkey:details-rendered', reflect);
}
