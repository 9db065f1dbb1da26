// The sign-in form and Cognito's new-password challenge (the other account forms: account.js).
import { startConfirm } from './account.js';
import { $, setText, show } from './dom.js';
import { answerNewPassword, cancelChallenge, signIn } from './session.js';
import { route } from './views.js';

export function showSigninError(message) {
  const box = $('signin-error');
  setText(box, message);
  show(box, Boolean(message));
}

async function submitSignin(event) {
  event.preventDefault();
  const email = $('signin-email').value.trim();
  const password = $('signin-password').value;
  if (!email || !password) {
    showSigninError('Enter your email and password.');
    return;
  }
  showSigninError('');
  setText($('signin-info'), '');
  show($('signin-info'), false);
  const button = $('signin-submit');
  button.disabled = true;
  setText(button, 'Signing in…');
  try {
    const outcome = await signIn(email, password);
    $('signin-password').value = '';
    route();
    if (outcome === 'new-password') $('newpw-password').focus();
    if (outcome === 'mfa') $('mfa-code').focus();
  } catch (err) {
    if (err.type === 'UserNotConfirmedException') {
      $('signin-password').value = '';
      startConfirm(email, password); // the code is what is missing: ask for it here
      return;
    }
    showSigninError(err.message);
  } finally {
    button.disabled = false;
    setText(button, 'Sign in');
  }
}

async function submitNewPassword(event) {
  event.preventDefault();
  const box = $('newpw-error');
  show(box, false);
  const password = $('newpw-password').value;
  if (!password) {
    setText(box, 'Enter a new password.');
    show(box);
    return;
  }
  const button = $('newpw-submit');
  button.disabled = true;
  try {
    await answerNewPassword(password);
    $('newpw-password').value = '';
    route();
  } catch (err) {
    setText(box, err.message);
    show(box);
  } finally {
    button.disabled = false;
  }
}

export function wireSignin() {
  $('signin-form').addEventListener('submit', submitSignin);
  $('newpw-form').addEventListener('submit', submitNewPassword);
  $('newpw-cancel').addEventListener('click', () => {
    cancelChallenge();
    route();
  });
}
