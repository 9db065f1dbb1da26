// The "Claim a device" form: the code from the label's QR link (#claim=CODE) pre-filled, signed in or
// out; the code and name checked before anything is sent; the API's answer explained next to the field.
import { apiRequest } from './api.js';
import { codeProblem, formatCode, normalizeCode, setupCodeInput } from './claim-code.js';
import { expectDevice, hasCard } from './devices.js';
import { $, announce, focusOn, setText, show } from './dom.js';
import { clearFieldError, nameProblem, plainApiMessage, setFieldError } from './fields.js';
import { plural, toMillis } from './format.js';
import { restartPolling } from './views.js';

const PREFILL_KEY = 'latchkey.claim'; // survives the sign-in (and a reload) until the form shows it
// A device claimed more than this long before our request was already ours (the API answers 200 both
// for a new claim and for "already yours"); the margin absorbs a skewed clock on this computer.
const ALREADY_CLAIMED_MARGIN_MS = 60000;

let prefill = null; // the code while storage is disabled

function storedCode() {
  try {
    return sessionStorage.getItem(PREFILL_KEY) || prefill;
  } catch {
    return prefill;
  }
}

function storeCode(code) {
  prefill = code;
  try {
    if (code) sessionStorage.setItem(PREFILL_KEY, code);
    else sessionStorage.removeItem(PREFILL_KEY);
  } catch {
    /* storage disabled: kept in memory */
  }
}

/** Take `#claim=CODE` out of the address (so a reload does not fill it in again) and remember the code. */
export function takeClaimFromHash() {
  const match = /^#claim=([^&]*)/.exec(location.hash);
  if (!match) return false;
  let raw = match[1];
  try {
    raw = decodeURIComponent(raw);
  } catch {
    /* a malformed escape: use the text as it is */
  }
  const code = normalizeCode(raw);
  if (code) storeCode(code);
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  return Boolean(code);
}

/** The code waiting to be filled in, formatted, or '' (the sign-in view mentions it). */
export function prefilledCode() {
  const code = storedCode();
  return code ? formatCode(code) : '';
}

/** On My Devices: fill the form with the remembered code and put the focus on the name. */
export function applyClaimPrefill() {
  const code = storedCode();
  if (!code) return false;
  storeCode(null);
  resetClaim();
  const input = $('claim-code');
  input.value = formatCode(code);
  const problem = codeProblem(code);
  if (problem) {
    setFieldError(input, $('claim-error'), problem);
    focusOn(input);
  } else {
    show($('claim-prefilled'));
    focusOn($('claim-name'));
  }
  return true;
}

function claimErrorMessage(err) {
  switch (err.status) {
    case 0:
      return err.message;
    case 400:
      return err.message || "That doesn't look like a claim code — it has 10 letters and digits, like ABCDE-12345.";
    case 404:
      return 'No device has this code — check the label';
    case 409:
      return 'This device belongs to another account';
    case 429: {
      const minutes = Math.max(1, Math.ceil((err.retryAfter || 60) / 60));
      return `Too many attempts — try again in ${plural(minutes, 'minute')}`;
    }
    default:
      return err.message;
  }
}

function wasAlreadyOurs(status, device, sentAt) {
  if (status !== 200) return false; // 201: claimed by this request
  if (hasCard(device.id)) return true;
  const claimedAt = toMillis(device.claimedAt);
  return !Number.isNaN(claimedAt) && claimedAt < sentAt - ALREADY_CLAIMED_MARGIN_MS;
}

async function submitClaim(event) {
  event.preventDefault();
  const codeInput = $('claim-code');
  const nameInput = $('claim-name');
  const errorBox = $('claim-error');
  const nameError = $('claim-name-error');
  const okBox = $('claim-success');
  clearFieldError(codeInput, errorBox);
  clearFieldError(nameInput, nameError);
  show(okBox, false);
  show($('claim-prefilled'), false);

  const code = normalizeCode(codeInput.value);
  codeInput.value = formatCode(code);
  const problem = codeProblem(code);
  if (problem) {
    setFieldError(codeInput, errorBox, problem);
    codeInput.focus();
    return;
  }
  const name = nameInput.value.trim();
  const nameIssue = nameProblem(name, { required: false });
  if (nameIssue) {
    setFieldError(nameInput, nameError, nameIssue);
    nameInput.focus();
    return;
  }
  const payload = { claimCode: code };
  if (name) payload.name = name;

  const button = $('claim-submit');
  button.disabled = true;
  setText(button, 'Claiming…');
  const sentAt = Date.now();
  try {
    const { status, data } = await apiRequest('POST', '/v1/claims', payload);
    const device = (data && (data.device || data)) || {};
    const label = device.name || name || formatCode(code);
    const message = wasAlreadyOurs(status, device, sentAt)
      ? `“${label}” is already in your account.`
      : `Claimed “${label}”. It comes online the next time it checks in.`;
    setText(okBox, message);
    show(okBox);
    announce(message);
    expectDevice(device.id);
    $('claim-form').reset();
    restartPolling();
  } catch (err) {
    if (err.status === 401) return; // signed out; the sign-in form says why
    const plain = err.status === 400 ? plainApiMessage(err.message) : { field: '' };
    if (plain.field === 'name') {
      setFieldError(nameInput, nameError, plain.text);
      return;
    }
    setText(errorBox, claimErrorMessage(err));
    show(errorBox);
    if (err.status === 400 || err.status === 404) setFieldError(codeInput, errorBox, claimErrorMessage(err));
  } finally {
    button.disabled = false;
    setText(button, 'Claim device');
  }
}

export function wireClaim() {
  setupCodeInput($('claim-code'));
  $('claim-form').addEventListener('submit', submitClaim);
}

export function resetClaim() {
  $('claim-form').reset();
  clearFieldError($('claim-code'), $('claim-error'));
  clearFieldError($('claim-name'), $('claim-name-error'));
  show($('claim-success'), false);
  show($('claim-prefilled'), false);
}
