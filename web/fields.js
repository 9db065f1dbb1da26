// Errors next to the field they are about, in plain words: checks made before sending, and the API's
// "The field 'x' …" sentences turned into something a person can act on.
import { setText, show } from './dom.js';

export const NAME_MAX = 64;

/** Show `message` under `input` (in `box`), mark the input invalid and tie the two together. */
export function setFieldError(input, box, message) {
  setText(box, message);
  show(box, Boolean(message));
  const ids = new Set((input.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean));
  if (message) {
    input.setAttribute('aria-invalid', 'true');
    ids.add(box.id);
  } else {
    input.removeAttribute('aria-invalid');
    ids.delete(box.id);
  }
  if (ids.size) input.setAttribute('aria-describedby', [...ids].join(' '));
  else input.removeAttribute('aria-describedby');
}

export function clearFieldError(input, box) {
  setFieldError(input, box, '');
}

function describeControl(ch) {
  if (ch === '\t') return 'a tab';
  if (ch === '\n' || ch === '\r') return 'a line break';
  return 'an invisible control character';
}

/** What is wrong with a display name, or '' when it is fine. `what` names it in the sentence. */
export function nameProblem(value, { what = 'name', max = NAME_MAX, required = true } = {}) {
  const name = String(value || '').trim();
  if (!name) return required ? `Enter a ${what}.` : '';
  const control = [...name].find((ch) => /[\u0000-\u001f\u007f]/.test(ch));
  if (control) return `A ${what} can't contain ${describeControl(control)} — remove it and try again.`;
  if ([...name].length > max) return `A ${what} can have at most ${max} characters — this one has ${[...name].length}.`;
  return '';
}

const FIELD_SENTENCE = /^The field '([^']+)' (.+?)\.?$/;

/**
 * The API's validation sentence as {field, text}: `field` is the API's field path ("name",
 * "relayNames.r1") or '' when the message is about no single field; `text` is meant for a person.
 */
export function plainApiMessage(message) {
  const match = FIELD_SENTENCE.exec(String(message || ''));
  if (!match) return { field: '', text: String(message || '') };
  const [, field, rest] = match;
  const isName = /(^|\.)name$/i.test(field) || field.startsWith('relayNames.');
  let text;
  let m;
  if (rest === 'is required') text = 'This is required.';
  else if (rest === 'must not be empty') text = isName ? 'Enter a name.' : "This can't be empty.";
  else if ((m = /^must be at least (\d+) characters long$/.exec(rest))) text = `Use at least ${m[1]} characters.`;
  else if ((m = /^must be at most (\d+) characters long$/.exec(rest))) text = `Use at most ${m[1]} characters.`;
  else if (rest === 'must be a string') text = 'Enter text here.';
  else if (rest === 'contains characters that are not allowed') {
    text = isName
      ? "Names can't contain tabs, line breaks or other control characters."
      : 'Use only letters, digits and the characters - _ . +';
  } else if ((m = /^is invalid: (.+)$/.exec(rest))) text = `This isn't valid: ${m[1]}.`;
  else text = `This ${rest}.`;
  return { field, text };
}
