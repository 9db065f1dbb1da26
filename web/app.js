// Latchkey claim page, entry module: configuration, routing, focus on view changes and wiring. No
// build step, no dependencies; each concern lives in its own module (docs/web.md, "Modules").
import { api } from './api.js';
import { applyClaimPrefill, prefilledCode, resetClaim, takeClaimFromHash, wireClaim } from './claim.js';
import { formatCode, normalizeCode } from './claim-code.js';
import { config, loadConfig } from './config.js';
import { closeDetails, openDetails, resetDetails } from './details.js';
import { wireDeviceActions } from './device-actions.js';
import { cardLink, resetDevices } from './devices.js';
import { confirmAction, dismissDialog, wireDialog } from './dialogs.js';
import { $, dismissNotice, el, focusOn, notice, setText, show } from './dom.js';
import { resetAccountForms, showSignedOutForm, wireAccount } from './account.js';
import { challengeType, currentSession, restoreSession, signOut } from './session.js';
import { showSigninError, wireSignin } from './signin.js';
import { currentView, restartPolling, setRouter, showView, stopPolling } from './views.js';

let lastDetailsId = null; // going back to the list puts the focus on this device's card

function route() {
  if (!config.value) return;
  takeClaimFromHash();
  const previous = currentView();
  if (!currentSession()) {
    stopPolling();
    showView('signin');
    showSignedOutForm(challengeType());
    const code = prefilledCode();
    setText($('signin-claim-note'), code ? `Sign in to claim the device with the code ${code}.` : '');
    show($('signin-claim-note'), Boolean(code));
    if (previous && !['boot', 'signin'].includes(previous)) focusOn($('signin-heading')); // signed out
    return;
  }
  if (location.hash === '#/account') {
    closeDetails();
    showView('account');
    if (previous !== 'account') {
      document.dispatchEvent(new CustomEvent('latchkey:account-opened'));
      focusOn($('account-heading'));
    }
    restartPolling();
    return;
  }
  const match = location.hash.match(/^#\/devices\/([^/?#]+)$/);
  if (match) {
    const id = decodeURIComponent(match[1]);
    openDetails(id, { focus: previous !== 'details' || id !== lastDetailsId });
    lastDetailsId = id;
  } else {
    closeDetails();
    showView('devices');
    if (!applyClaimPrefill()) {
      if (previous === 'signin') focusOn($('claim-heading'));
      else if (previous === 'details') focusOn(cardLink(lastDetailsId) || $('devices-heading'));
    }
  }
  restartPolling();
}

function resetAppState() {
  stopPolling();
  resetDevices();
  resetDetails();
  resetClaim();
  dismissDialog();
  dismissNotice();
  resetAccountForms();
  lastDetailsId = null;
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
  wireAccount();
  wireDeviceActions();
  wireDialog();
  $('signout-button').addEventListener('click', () => signOut());
  $('notice-close').addEventListener('click', dismissNotice);
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
