// One confirmation <dialog> for every action: explicit Confirm / Cancel; the action runs while the
// dialog stays open, so a failure is shown inside it.
import { $, setText, show } from './dom.js';

const NAME_MAX = 64;

let current = null; // {action, input, confirmLabel} while the dialog is open
let busy = false;

/**
 * Open the confirmation dialog. `action(value)` runs on Confirm while the dialog stays open; on success
 * the dialog closes, on failure the API's message is shown inside it.
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
  if (input) {
    setText($('confirm-input-label'), input.label || 'Value');
    box.value = input.value || '';
    box.maxLength = input.maxLength || NAME_MAX;
  }
  current = { action, input, confirmLabel };
  dialog.showModal();
  if (input) {
    box.focus();
    box.select();
  } else {
    $('confirm-cancel').focus(); // destructive actions: the safe choice has the focus
  }
}

function closeDialog() {
  if (busy) return;
  current = null;
  $('confirm-dialog').close();
}

/** Close without running anything (sign out). */
export function dismissDialog() {
  busy = false;
  current = null;
  if ($('confirm-dialog').open) $('confirm-dialog').close();
}

async function submitDialog(event) {
  event.preventDefault();
  if (busy || !current) return;
  const { action, input, confirmLabel } = current;
  const errorBox = $('confirm-error');
  show(errorBox, false);
  let value;
  if (input) {
    value = $('confirm-input').value.trim();
    if (!value) {
      setText(errorBox, input.emptyMessage || 'Enter a value.');
      show(errorBox);
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
    setText(errorBox, err.message || 'That did not work — try again.');
    show(errorBox);
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
    else current = null;
  });
}
