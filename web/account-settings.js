// The Account view (#/account): the owner's email, change password, and two-step sign-in with an
// authenticator app (TOTP). An extension module: it hears `latchkey:account-opened` from the router.
import * as accounts from './account-api.js';
import { config, productName } from './config.js';
import { $, focusOn, notice, setText, show } from './dom.js';
import { EXPIRED_MESSAGE } from './http.js';
import { currentSession } from './session.js';

let secret = null; // the key being set up, until the app's first code turns it on

function message(id, text) {
  setText($(id), text);
  show($(id), Boolean(text));
}

/** The key in groups of four, as authenticator apps show it. */
const grouped = (key) => key.replace(/(.{4})/g, '$1 ').trim();

function otpauthUri(key, email) {
  const issuer = productName();
  const label = encodeURIComponent(`${issuer}:${email}`);
  return `otpauth://totp/${label}?secret=${key}&issuer=${encodeURIComponent(issuer)}`;
}

function showMfa(enabled) {
  const status = $('mfa-status');
  status.dataset.enabled = String(enabled);
  setText(
    status,
    enabled
      ? 'On: signing in asks for a code from your authenticator app.'
      : 'Off: signing in needs only your password.',
  );
  show($('mfa-start'), !enabled && !secret);
  show($('mfa-disable'), enabled);
  show($('mfa-setup-form'), Boolean(secret));
}

async function loadAccount() {
  const session = currentSession();
  setText($('account-email'), session ? session.email : '');
  message('password-success', '');
  message('mfa-settings-error', '');
  secret = null;
  setText($('mfa-status'), 'Loading…');
  try {
    showMfa((await accounts.mfaStatus()).enabled);
  } catch (err) {
    setText($('mfa-status'), '');
    message('mfa-settings-error', err.message);
  }
}

async function submitPassword(event) {
  event.preventDefault();
  message('password-error', '');
  message('password-success', '');
  const previous = $('password-current').value;
  const proposed = $('password-new').value;
  if (!previous || !proposed) {
    message('password-error', 'Enter your current password and a new one.');
    return;
  }
  const button = $('password-submit');
  button.disabled = true;
  try {
    await accounts.changePassword(previous, proposed);
    $('password-current').value = '';
    $('password-new').value = '';
    message('password-success', 'Your password has been changed.');
  } catch (err) {
    const wrongCurrent = err.type === 'NotAuthorizedException' && err.message !== EXPIRED_MESSAGE;
    message('password-error', wrongCurrent ? 'Your current password is not right.' : err.message);
  } finally {
    button.disabled = false;
  }
}

async function startSetup() {
  message('mfa-settings-error', '');
  try {
    secret = await accounts.startTotp();
  } catch (err) {
    message('mfa-settings-error', err.message);
    return;
  }
  const session = currentSession();
  setText($('mfa-secret'), grouped(secret));
  setText($('mfa-uri'), otpauthUri(secret, session ? session.email : ''));
  showMfa(false);
  focusOn($('mfa-setup-code'));
}

async function submitSetup(event) {
  event.preventDefault();
  message('mfa-settings-error', '');
  const code = $('mfa-setup-code').value.trim();
  if (!/^\d{6}$/.test(code)) {
    message('mfa-settings-error', 'Enter the 6-digit code your authenticator app shows.');
    return;
  }
  const button = $('mfa-setup-submit');
  button.disabled = true;
  try {
    await accounts.enableTotp(code);
    secret = null;
    $('mfa-setup-code').value = '';
    showMfa(true);
    notice('Two-step sign-in is on.', 'success', 'account');
    focusOn($('mfa-status'));
  } catch (err) {
    message('mfa-settings-error', err.message);
  } finally {
    button.disabled = false;
  }
}

function cancelSetup() {
  secret = null;
  $('mfa-setup-code').value = '';
  showMfa(false);
  focusOn($('mfa-start'));
}

async function disable() {
  message('mfa-settings-error', '');
  try {
    await accounts.disableTotp();
    showMfa(false);
    notice('Two-step sign-in is off.', 'info', 'account');
    focusOn($('mfa-start'));
  } catch (err) {
    message('mfa-settings-error', err.message);
  }
}

document.addEventListener('latchkey:account-opened', () => {
  if (config.value) loadAccount();
});
$('password-form').addEventListener('submit', submitPassword);
$('mfa-start').addEventListener('click', startSetup);
$('mfa-setup-form').addEventListener('submit', submitSetup);
$('mfa-setup-cancel').addEventListener('click', cancelSetup);
$('mfa-disable').addEventListener('click', disable);
