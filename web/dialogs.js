// One confirmation <dialog> for every action: explicit Confirm / Cancel; the action runs while the
// dialog stays open, so a failure is shown inside it, next to the input when it is about the input.
import { $, focusOn, setText, show } from './dom.js';
import { NAME_MAX, clearFieldError, plainApiMessage, setFieldError } from './fields.js';

let current = null; // {action, input, confirmLabel, opener} while the dialog is open
let busy = false;

/**
 * Open the confirmation dialog. `action(value)` runs on Confirm while the dialog stays open; on success
 * the dialog closes, on failure the API's message is shown inside it. `input.check(value)` returns a
 * sentence when the value is not acceptable (checked before the action runs).
 */
export function confirmAction({ title, message, confirmLabel = 'Confirm', danger = false, input = null, action }) {
  const dialog = $('confirm-dialog');
  setText($('confirm-title'), title);
  setText($('confirm-message'), message);
  show($('confirm-error'), false);
  const ok = $('confirm-ok');
  setText(ok, confirmLabel);
  ok.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
  ok.disabled = false;
  $('confirm-cancel').disabled = false;
  const field = $('confirm-field');
  show(field, Boolean(input));
  const box = $('confirm-input');
  clearFieldError(box, $('confirm-error'));
  if (input) {
    setText($('confirm-input-label'), input.label || 'Value');
    box.value = input.value || '';
    box.maxLength = input.maxLength || NAME_MAX;
  }
  current = { action, input, confirmLabel, opener: document.activeElement };
  dialog.showModal();
  if (input) {
    box.focus();
    box.select();
  } else {
    $('confirm-cancel').focus(); // destructive actions: the safe choice has the focus
  }
}

/** Back to the button that opened the dialog, if it is still there to take the focus. */
function restoreFocus(opener) {
  if (opener && opener.isConnected && !opener.disabled && opener.offsetParent !== null) focusOn(opener);
}

function closeDialog() {
  if (!busy) $('confirm-dialog').close();
}

// However the dialog closes (Confirm, Cancel, Escape), the focus goes back to the button that opened it.
function onClosed() {
  const opener = current && current.opener;
  current = null;
  restoreFocus(opener);
}

/** Close without running anything (sign out). */
export function dismissDialog() {
  busy = false;
  if ($('confirm-dialog').open) $('confirm-dialog').close();
  current = null;
}

function showError(message, aboutInput) {
  const box = $('confirm-error');
  if (aboutInput) setFieldError($('confirm-input'), box, message);
  else {
    setText(box, message);
    show(box);
  }
}

async function submitDialog(event) {
  event.preventDefault();
  if (busy || !current) return;
  const { action, input, confirmLabel } = current;
  clearFieldError($('confirm-input'), $('confirm-error'));
  let value;
  if (input) {
    value = $('confirm-input').value.trim();
    const problem = input.check ? input.check(value) : value ? '' : 'Enter a value.';
    if (problem) {
      showError(problem, true);
      $('confirm-input').focus();
      return;
    }
  }
  const ok = $('confirm-ok');
  busy = true;
  ok.disabled = true;
  $('confirm-cancel').disabled = true;
  setText(ok, 'Working…');
  try {
    await action(value);
    busy = false;
    closeDialog();
  } catch (err) {
    const plain = err.status === 400 ? plainApiMessage(err.message) : { field: '', text: err.message };
    showError(plain.text || 'That did not work — try again.', Boolean(input && plain.field));
  } finally {
    busy = false;
    ok.disabled = false;
    $('confirm-cancel').disabled = false;
    setText(ok, confirmLabel);
  }
}

export function wireDialog() {
  $('confirm-form').addEventListener('submit', submitDialog);
  $('confirm-cancel').addEventListener('click', closeDialog);
  $('confirm-dialog').addEventListener('cancel', (event) => {
    if (busy) event.preventDefault(); // Escape does not abandon a running action
  });
  $('confirm-dialog').addEventListener('close', onClosed);
}
