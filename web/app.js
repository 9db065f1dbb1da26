// Latchkey claim page, entry module: configuration, routing and wiring. No build step, no
// dependencies; each concern lives in its own module (see docs/web.md, "Modules").
import { api } from './api.js';
import { resetClaim, wireClaim } from './claim.js';
import { formatCode, normalizeCode } from './claim-code.js';
import { config, loadConfig } from './config.js';
import { closeDetails, openDetails, resetDetails } from './details.js';
import { wireDeviceActions } from './device-actions.js';
import { resetDevices } from './devices.js';
import { confirmAction, dismissDialog, wireDialog } from './dialogs.js';
import { $, el, notice, setText, show } from './dom.js';
import { hasChallenge, currentSession, restoreSession, signOut } from './session.js';
import { showSigninError, wireSignin } from './signin.js';
import { restartPolling, setRouter, showView, stopPolling } from './views.js';

function route() {
  if (!config.value) return;
  if (!currentSession()) {
    stopPolling();
    showView('signin');
    const challenge = hasChallenge();
    show($('signin-form'), !challenge);
    show($('newpw-form'), challenge);
    return;
  }
  const match = location.hash.match(/^#\/devices\/([^/?#]+)$/);
  if (match) {
    openDetails(decodeURIComponent(match[1]));
  } else {
    closeDetails();
    showView('devices');
  }
  restartPolling();
}

function resetAppState() {
  stopPolling();
  resetDevices();
  resetDetails();
  resetClaim();
  dismissDialog();
}

function configError(text) {
  setText($('config-error-text'), text);
  showView('config-error');
}

function applyBranding(value) {
  const product = value.productName || 'Latchkey';
  setText($('brand-name'), product);
  const logo = $('brand-logo');
  if (value.logoUrl) {
    logo.addEventListener('error', () => logo.setAttribute('src', 'logo.svg'), { once: true });
    logo.setAttribute('src', value.logoUrl);
  }
  setText($('signin-intro'), `Sign in to ${product} to claim and manage your devices.`);
}

function wire() {
  setRouter(route);
  wireClaim();
  wireSignin();
  wireDeviceActions();
  wireDialog();
  $('signout-button').addEventListener('click', () => signOut());
  document.addEventListener('latchkey:signed-out', (event) => {
    resetAppState();
    if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
    route();
    if (event.detail.message) showSigninError(event.detail.message);
  });
  window.addEventListener('hashchange', route);
}

async function main() {
  wire();
  let value;
  try {
    value = await loadConfig();
  } catch (err) {
    configError(err.message);
    return;
  }
  applyBranding(value);
  restoreSession();
  document.body.dataset.ready = 'true';
  route();
}

// A small surface for debugging in the console; extensions import the modules they need instead.
window.latchkey = { api, el, confirmAction, notice, refreshNow: restartPolling, normalizeCode, formatCode };

main();
