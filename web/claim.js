// The "Claim a device" form: check the code before sending it, then explain the API's answer in words.
import { api } from './api.js';
import { codeProblem, formatCode, normalizeCode, setupCodeInput } from './claim-code.js';
import { $, setText, show } from './dom.js';
import { plural } from './format.js';
import { restartPolling } from './views.js';

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

async function submitClaim(event) {
  event.preventDefault();
  const codeInput = $('claim-code');
  const nameInput = $('claim-name');
  const errorBox = $('claim-error');
  const okBox = $('claim-success');
  show(errorBox, false);
  show(okBox, false);

  const code = normalizeCode(codeInput.value);
  codeInput.value = formatCode(code);
  const problem = codeProblem(code);
  if (problem) {
    setText(errorBox, problem);
    show(errorBox);
    codeInput.setAttribute('aria-invalid', 'true');
    codeInput.focus();
    return;
  }
  codeInput.removeAttribute('aria-invalid');
  const name = nameInput.value.trim();
  const payload = { claimCode: code };
  if (name) payload.name = name;

  const button = $('claim-submit');
  button.disabled = true;
  setText(button, 'Claiming…');
  try {
    const result = await api('POST', '/v1/claims', payload);
    const device = (result && (result.device || result)) || {};
    const label = device.name || name || formatCode(code);
    setText(okBox, `Claimed “${label}”. It comes online the next time it checks in.`);
    show(okBox);
    $('claim-form').reset();
    restartPolling();
  } catch (err) {
    if (err.status === 401) return; // signed out; the sign-in form says why
    setText(errorBox, claimErrorMessage(err));
    show(errorBox);
    if (err.status === 400 || err.status === 404) codeInput.setAttribute('aria-invalid', 'true');
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
  show($('claim-error'), false);
  show($('claim-success'), false);
}
