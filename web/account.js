// Signed out: which form the sign-in panel shows, and the account flows behind them — create an
// account, confirm it with the emailed code, reset a forgotten password, the authenticator-app code at
// sign-in. Cognito does the work (account-api.js); this module keeps the person's place between steps.
import * as accounts from './account-api.js';
import { $, focusOn, setText, show } from './dom.js';
import { answerMfa, cancelChallenge, signIn } from './session.js';
import { route } from './views.js';

const FORMS = {
  signin: 'signin-form',
  'new-password': 'newpw-form',
  mfa: 'mfa-form',
  signup: 'signup-form',
  confirm: 'confirm-signup-form',
  forgot: 'forgot-form',
  reset: 'reset-form',
};
const MIN_PASSWORD = 12; // definitions.USER_POOL; Cognito has the last word

let mode = null; // null (sign in) | 'signup' | 'confirm' | 'forgot' | 'reset'
let pending = { email: '', password: '' }; // the sign-up or reset in progress (the password stays in memory only)

/** Show the one form that fits (a sign-in challenge first); returns its name. Called by the router. */
export function showSignedOutForm(challenge) {
  const which = challenge || mode || 'signin';
  for (const [name, id] of Object.entries(FORMS)) show($(id), name === which);
  return which;
}

function message(id, text) {
  setText($(id), text);
  show($(id), Boolean(text));
}

function goTo(next, focusId) {
  mode = next;
  for (const id of ['signup-error', 'confirm-signup-error', 'confirm-signup-info', 'forgot-error', 'reset-error', 'reset-info', 'mfa-error']) {
    message(id, '');
  }
  route();
  if (focusId) focusOn($(focusId));
}

/** Back to the sign-in form with the email filled in and, optionally, a confirmation above it. */
function backToSignIn(email, info = '') {
  cancelChallenge();
  goTo(null);
  if (email) $('signin-email').value = email;
  message('signin-info', info);
  focusOn($(email ? 'signin-password' : 'signin-email'));
}

/** The sign-in form found an unconfirmed account: ask for its code (a new one is sent). */
export async function startConfirm(email, password = '') {
  pending = { email: accounts.normalizeEmail(email), password };
  setText($('confirm-signup-text'), `Enter the 6-digit code we emailed to ${pending.email}.`);
  goTo('confirm', 'confirm-signup-code');
  try {
    await accounts.resendCode(pending.email);
    message('confirm-signup-info', `We sent a new code to ${pending.email}.`);
  } catch (err) {
    message('confirm-signup-error', err.message);
  }
}

/** Runs `work` with the form's submit button busy; errors go to `errorId`. */
async function busy(buttonId, busyText, errorId, work) {
  const button = $(buttonId);
  const text = button.textContent;
  button.disabled = true;
  setText(button, busyText);
  message(errorId, '');
  try {
    await work();
  } catch (err) {
    message(errorId, err.message);
  } finally {
    button.disabled = false;
    setText(button, text);
  }
}

function problemWith(email, password) {
  if (!email || !email.includes('@')) return 'Enter your email address.';
  if (password !== undefined && password.length < MIN_PASSWORD) {
    return 'The password needs at least 12 characters, with upper- and lowercase letters, a digit and a symbol.';
  }
  return '';
}

async function submitSignUp(event) {
  event.preventDefault();
  const email = accounts.normalizeEmail($('signup-email').value);
  const password = $('signup-password').value;
  const problem = problemWith(email, password);
  if (problem) {
    message('signup-error', problem);
    return;
  }
  await busy('signup-submit', 'Creating account…', 'signup-error', async () => {
    await accounts.signUp(email, password);
    pending = { email, password };
    $('signup-password').value = '';
    setText($('confirm-signup-text'), `We emailed a 6-digit code to ${email}. Enter it to confirm your account.`);
    goTo('confirm', 'confirm-signup-code');
  });
}

async function submitConfirm(event) {
  event.preventDefault();
  const code = $('confirm-signup-code').value.trim();
  if (!/^\d{6}$/.test(code)) {
    message('confirm-signup-error', 'Enter the 6-digit code from the email.');
    return;
  }
  await busy('confirm-signup-submit', 'Confirming…', 'confirm-signup-error', async () => {
    await accounts.confirmSignUp(pending.email, code);
    $('confirm-signup-code').value = '';
    const { email, password } = pending;
    pending = { email: '', password: '' };
    if (!password) {
      backToSignIn(email, 'Your email is confirmed — sign in.');
      return;
    }
    let outcome;
    try {
      outcome = await signIn(email, password); // straight in: the person has just chosen the password
    } catch {
      backToSignIn(email, 'Your email is confirmed — sign in.');
      return;
    }
    mode = null;
    route();
    if (outcome === 'new-password') focusOn($('newpw-password'));
    if (outcome === 'mfa') focusOn($('mfa-code'));
  });
}

async function resendSignUpCode() {
  await busy('confirm-signup-resend', 'Sending…', 'confirm-signup-error', async () => {
    message('confirm-signup-info', '');
    await accounts.resendCode(pending.email);
    message('confirm-signup-info', `We sent a new code to ${pending.email}.`);
  });
}

async function submitForgot(event) {
  event.preventDefault();
  const email = accounts.normalizeEmail($('forgot-email').value);
  const problem = problemWith(email);
  if (problem) {
    message('forgot-error', problem);
    return;
  }
  await busy('forgot-submit', 'Sending…', 'forgot-error', async () => {
    await accounts.forgotPassword(email);
    pending = { email, password: '' };
    setText($('reset-text'), `If ${email} has an account, we emailed it a 6-digit code. Enter it with your new password.`);
    goTo('reset', 'reset-code');
  });
}

async function submitReset(event) {
  event.preventDefault();
  const code = $('reset-code').value.trim();
  const password = $('reset-password').value;
  if (!/^\d{6}$/.test(code)) {
    message('reset-error', 'Enter the 6-digit code from the email.');
    return;
  }
  const problem = problemWith(pending.email, password);
  if (problem) {
    message('reset-error', problem);
    return;
  }
  await busy('reset-submit', 'Saving…', 'reset-error', async () => {
    await accounts.confirmForgotPassword(pending.email, code, password);
    $('reset-code').value = '';
    $('reset-password').value = '';
    backToSignIn(pending.email, 'Your password has been changed — sign in with the new one.');
  });
}

async function resendResetCode() {
  await busy('reset-resend', 'Sending…', 'reset-error', async () => {
    message('reset-info', '');
    await accounts.forgotPassword(pending.email);
    message('reset-info', `We sent a new code to ${pending.email}.`);
  });
}

async function submitMfa(event) {
  event.preventDefault();
  const code = $('mfa-code').value.trim();
  if (!/^\d{6}$/.test(code)) {
    message('mfa-error', 'Enter the 6-digit code from your authenticator app.');
    return;
  }
  await busy('mfa-submit', 'Verifying…', 'mfa-error', async () => {
    await answerMfa(code);
    $('mfa-code').value = '';
    route();
  });
}

export function wireAccount() {
  $('signup-link').addEventListener('click', () => {
    $('signup-email').value = $('signin-email').value.trim();
    message('signin-info', '');
    goTo('signup', 'signup-email');
  });
  $('forgot-link').addEventListener('click', () => {
    $('forgot-email').value = $('signin-email').value.trim();
    message('signin-info', '');
    goTo('forgot', 'forgot-email');
  });
  $('signup-form').addEventListener('submit', submitSignUp);
  $('confirm-signup-form').addEventListener('submit', submitConfirm);
  $('confirm-signup-resend').addEventListener('click', resendSignUpCode);
  $('forgot-form').addEventListener('submit', submitForgot);
  $('reset-form').addEventListener('submit', submitReset);
  $('reset-resend').addEventListener('click', resendResetCode);
  $('mfa-form').addEventListener('submit', submitMfa);
  for (const button of document.querySelectorAll('[data-back-to-signin]')) {
    button.addEventListener('click', () => backToSignIn(''));
  }
}

/** Signing out starts from the sign-in form. */
export function resetAccountForms() {
  mode = null;
  pending = { email: '', password: '' };
  message('signin-info', '');
}
