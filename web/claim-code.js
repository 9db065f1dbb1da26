// The claim code on a device's label: forgiving normalisation, XXXXX-XXXXX display, and the input that
// reformats while typing.

export const CODE_LENGTH = 10;
const CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32

/** Forgiving normalisation: case, spaces and hyphens ignored; Crockford I/L→1, O→0. */
export function normalizeCode(raw) {
  return String(raw)
    .toUpperCase()
    .replace(/[\s\-\u2010-\u2015_.]/g, '')
    .replace(/[IL]/g, '1')
    .replace(/O/g, '0');
}

export function formatCode(normalized) {
  return normalized.length > 5 ? `${normalized.slice(0, 5)}-${normalized.slice(5)}` : normalized;
}

/** A sentence explaining what is wrong with the code, or '' when it looks right. */
export function codeProblem(normalized) {
  if (!normalized) return "Enter the claim code printed on the device's label.";
  const bad = [...normalized].find((ch) => !CODE_ALPHABET.includes(ch));
  if (bad) return `Claim codes don't contain “${bad}” — check the label and try again.`;
  if (normalized.length !== CODE_LENGTH) {
    return `A claim code has ${CODE_LENGTH} letters and digits — you entered ${normalized.length}.`;
  }
  return '';
}

function reformatCodeInput(input) {
  const caret = input.selectionStart ?? input.value.length;
  const before = normalizeCode(input.value.slice(0, caret)).length; // significant chars left of the caret
  const formatted = formatCode(normalizeCode(input.value));
  if (input.value !== formatted) input.value = formatted;
  const pos = before > 5 ? before + 1 : before;
  if (document.activeElement === input) input.setSelectionRange(pos, pos);
}

export function setupCodeInput(input) {
  // Deleting "across" the hyphen removes the character beyond it, so backspace never looks stuck.
  input.addEventListener('beforeinput', (event) => {
    const { selectionStart: start, selectionEnd: end, value } = input;
    if (start !== end) return;
    let remove = -1;
    if (event.inputType === 'deleteContentBackward' && value[start - 1] === '-') remove = start - 2;
    if (event.inputType === 'deleteContentForward' && value[start] === '-') remove = start + 1;
    if (remove < 0 || remove >= value.length) return;
    event.preventDefault();
    input.value = value.slice(0, remove) + value.slice(remove + 1);
    const pos = event.inputType === 'deleteContentBackward' ? remove : start;
    input.setSelectionRange(pos, pos);
    reformatCodeInput(input);
  });
  input.addEventListener('input', () => reformatCodeInput(input));
}
