// The MANAS360 account page: plain JavaScript, no build step, no third-party code.
// It is one more client of the public API under /api/v1. The tokens live in this script's
// memory only (never in web storage or cookies): closing or reloading the tab
// signs the page out. Text from the API is only ever set as text (textContent), never as HTML.
"use strict";

const API = "/api/v1";
const LANDINGS = {
  "/reset-password": {
    title: "Choose a new password",
    text: "Enter a new password and press the button. Your password is changed and every session of your account is signed out; you are then signed in here.",
    button: "Set the new password",
    password: "New password (10 to 128 characters)",
  },
  "/verify-email": {
    title: "Verify your email address",
    text: "Press the button to confirm that this address is yours. Sessions started before it are signed out; log in again afterwards.",
    button: "Verify my email address",
  },
  "/confirm-email": {
    title: "Confirm your new email address",
    text: "Log in to the account whose address changes, then press the button: the new address becomes your sign-in address.",
    button: "Confirm the new address",
    needsSession: true,
  },
  "/cancel-email-change": {
    title: "Cancel the email change",
    text: "Press the button to cancel the change of your account's email address. If it was already confirmed, the old address comes back, every session is signed out and a password reset link is mailed to it.",
    button: "Cancel the email change",
  },
  "/cancel-deletion": {
    title: "Keep your account",
    text: "Enter your password and press the button to cancel the deletion of your account; you are then signed in here.",
    button: "Cancel the deletion",
    password: "Your password",
  },
};

const state = {
  pair: null, // {access_token, refresh_token, user}
  landing: null, // {path, token, done}
  mfaToken: null,
  reauth: null, // {resolve, reject} while the step-up dialog is open
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, envelope) {
    super((envelope && envelope.message) || `The service answered ${status}`);
    this.status = status;
    this.code = (envelope && envelope.error) || "Error";
    this.envelope = envelope || {};
  }
}

// ---- talking to the API -------------------------------------------------------------

async function request(method, path, { body, auth = true, retried = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state.pair) headers.Authorization = `Bearer ${state.pair.access_token}`;
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.ok) return response;
  let envelope = null;
  try {
    envelope = await response.json();
  } catch (_) {
    envelope = null;
  }
  const error = new ApiError(response.status, envelope);
  if (auth && state.pair && !retried && error.code === "TokenExpired") {
    await refresh();
    return request(method, path, { body, auth, retried: true });
  }
  if (auth && state.pair && ["TokenRevoked", "TokenExpired", "InvalidToken", "TokenReuseDetected"].includes(error.code)) {
    signOut();
  }
  throw error;
}

async function api(method, path, options) {
  const response = await request(method, path, options);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

async function refresh() {
  const pair = await api("POST", "/auth/refresh", { body: { refresh_token: state.pair.refresh_token }, auth: false });
  state.pair = pair;
}

// An action that may answer 403 ReauthenticationRequired: ask for a fresh credential, then
// run it once more.
async function withStepUp(action) {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "ReauthenticationRequired") throw error;
    await stepUp();
    return action();
  }
}

// ---- WebAuthn -----------------------------------------------------------------------

function passkeysSupported() {
  return (
    window.PublicKeyCredential !== undefined &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function"
  );
}

async function createCredential(options) {
  if (!passkeysSupported()) throw new Error("This browser cannot use passkeys.");
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
  const credential = await navigator.credentials.create({ publicKey });
  return credential.toJSON();
}

async function getCredential(options) {
  if (!passkeysSupported()) throw new Error("This browser cannot use passkeys.");
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  const credential = await navigator.credentials.get({ publicKey });
  return credential.toJSON();
}

// ---- messages -----------------------------------------------------------------------

function clearMessages() {
  $("notice").textContent = "";
  $("problem").hidden = true;
  $("problem-message").textContent = "";
  $("problem-fields").replaceChildren();
}

function notify(text) {
  $("notice").textContent = text;
}

function showProblem(error) {
  let message;
  let fields = {};
  if (error instanceof ApiError) {
    message = error.message;
    fields = error.envelope.fields || {};
    if (error.envelope.retry_after) message += ` (try again in ${error.envelope.retry_after} s)`;
  } else if (error && error.name === "NotAllowedError") {
    message = "The passkey was not used (cancelled, or it timed out).";
  } else {
    message = (error && error.message) || "Something went wrong.";
  }
  $("problem-message").textContent = message;
  const list = $("problem-fields");
  list.replaceChildren();
  for (const [field, text] of Object.entries(fields)) {
    const item = document.createElement("li");
    item.textContent = `${field}: ${text}`;
    list.append(item);
  }
  $("problem").hidden = false;
}

// Every handler: messages cleared first, its error shown, nothing left unhandled.
function on(id, event, handler) {
  $(id).addEventListener(event, async (e) => {
    if (event === "submit") e.preventDefault();
    clearMessages();
    const button = e.submitter || (e.currentTarget instanceof HTMLButtonElement ? e.currentTarget : null);
    if (button) button.disabled = true;
    try {
      await handler(e);
    } catch (error) {
      if (error !== CANCELLED) showProblem(error);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

const CANCELLED = new Error("cancelled");

function value(id) {
  return $(id).value.trim();
}

function optional(id) {
  const v = value(id);
  return v === "" ? undefined : v;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// ---- views --------------------------------------------------------------------------

function showView() {
  const signedIn = state.pair !== null;
  const landing = state.landing;
  const landingOpen = landing !== null && !landing.done;
  $("signed-in").hidden = !signedIn;
  // A landing page shows only what its link is for, plus the log-in form when it needs a session.
  $("signed-out").hidden = signedIn || (landingOpen && !LANDINGS[landing.path].needsSession);
  $("landing").hidden = landing === null;
}

async function signIn(pair) {
  state.pair = pair;
  state.mfaToken = null;
  $("mfa-form").hidden = true;
  for (const id of ["login-password", "mfa-code", "register-password"]) $(id).value = "";
  showView();
  renderProfile(pair.user);
  await loadAccount();
}

function signOut() {
  state.pair = null;
  // Nothing of the account stays in the page, not even hidden: a shared computer's next user
  // finds no address, session list, passkey or recovery code in it.
  for (const id of ["profile-email", "profile-name", "profile-verified", "profile-mfa", "totp-secret"]) $(id).textContent = "";
  for (const id of ["sessions", "passkeys", "recovery-codes", "totp-qr"]) $(id).replaceChildren();
  for (const form of $("signed-in").querySelectorAll("form")) form.reset();
  $("recovery-codes-box").hidden = true;
  $("totp-pending").hidden = true;
  showView();
}

function renderProfile(user) {
  $("profile-email").textContent = user.email;
  $("profile-name").textContent = user.display_name || "(none)";
  $("profile-verified").textContent = user.email_verified ? "yes" : "no";
  $("profile-mfa").textContent = user.mfa_enabled ? "on" : "off";
  $("resend-verification-signed-in").hidden = user.email_verified;
  $("totp-on").hidden = !user.mfa_enabled;
  $("totp-off").hidden = user.mfa_enabled;
  for (const row of document.querySelectorAll(".mfa-only")) row.hidden = !user.mfa_enabled;
}

async function loadAccount() {
  const results = await Promise.allSettled([loadProfile(), loadSessions(), loadPasskeys()]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function loadProfile() {
  const user = await api("GET", "/me");
  if (state.pair) {
    state.pair.user = user;
    renderProfile(user);
  }
}

async function loadSessions() {
  const { items } = await api("GET", "/auth/sessions");
  const body = $("sessions");
  body.replaceChildren();
  for (const session of items) {
    const row = document.createElement("tr");
    row.append(cell(when(session.created_at)), cell(when(session.last_used_at)), cell(session.ip || ""));
    row.append(cell(session.user_agent || ""));
    const action = document.createElement("td");
    if (session.current) {
      action.textContent = "This session";
      row.className = "current";
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Revoke";
      button.setAttribute("aria-label", `Revoke the session started ${when(session.created_at)} from ${session.ip || "an unknown address"}`);
      button.dataset.session = session.id;
      button.className = "revoke-session";
      action.append(button);
    }
    row.append(action);
    body.append(row);
  }
}

async function loadPasskeys() {
  const { items } = await api("GET", "/auth/passkeys");
  const body = $("passkeys");
  body.replaceChildren();
  items.forEach((passkey, index) => {
    const row = document.createElement("tr");
    const name = document.createElement("td");
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = `passkey-name-${index}`;
    label.textContent = `Name of passkey ${index + 1}`;
    const input = document.createElement("input");
    input.id = `passkey-name-${index}`;
    input.type = "text";
    input.maxLength = 64;
    input.value = passkey.name || "";
    name.append(label, input);
    row.append(name, cell(when(passkey.created_at)), cell(when(passkey.last_used_at)));
    row.append(cell(passkey.backed_up ? "yes" : "no"));
    const actions = document.createElement("td");
    const rename = document.createElement("button");
    rename.type = "button";
    rename.textContent = "Rename";
    rename.className = "rename-passkey";
    rename.dataset.passkey = passkey.id;
    rename.dataset.input = input.id;
    rename.setAttribute("aria-label", `Rename passkey ${index + 1}`);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.className = "remove-passkey";
    remove.dataset.passkey = passkey.id;
    remove.setAttribute("aria-label", `Remove passkey ${index + 1}`);
    actions.append(rename, remove);
    row.append(actions);
    body.append(row);
  });
}

// The QR code arrives as SVG text from our own API. It is parsed as XML (parsing runs no
// script) and rebuilt from a short list of elements and attributes: nothing else of it
// reaches the page, and the page's CSP needs no data: or blob: image source.
const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_ELEMENTS = new Set(["svg", "g", "path", "rect", "title"]);
const SVG_ATTRIBUTES = new Set(["width", "height", "viewBox", "transform", "fill", "stroke", "d", "x", "y", "class"]);

function safeSvg(text) {
  const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
  const root = parsed.documentElement;
  if (root.namespaceURI !== SVG_NS || root.localName !== "svg") throw new Error("The QR code could not be read.");
  const copy = (node) => {
    if (node.namespaceURI !== SVG_NS || !SVG_ELEMENTS.has(node.localName)) return null;
    const clone = document.createElementNS(SVG_NS, node.localName);
    for (const attribute of node.attributes) {
      if (SVG_ATTRIBUTES.has(attribute.name)) clone.setAttribute(attribute.name, attribute.value);
    }
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE && node.localName === "title") clone.append(child.textContent);
      else if (child.nodeType === Node.ELEMENT_NODE) {
        const copied = copy(child);
        if (copied) clone.append(copied);
      }
    }
    return clone;
  };
  const svg = copy(root);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "QR code of the TOTP setup link");
  return svg;
}

// ---- step-up ------------------------------------------------------------------------

function stepUp() {
  const dialog = $("reauth");
  $("reauth-password").value = "";
  $("reauth-code").value = "";
  $("reauth-problem").textContent = "";
  $("reauth-passkey").hidden = !passkeysSupported();
  dialog.showModal();
  $("reauth-password").focus();
  return new Promise((resolve, reject) => {
    state.reauth = { resolve, reject };
  });
}

function closeStepUp(outcome) {
  const pending = state.reauth;
  state.reauth = null;
  $("reauth").close();
  if (pending) {
    if (outcome === CANCELLED) pending.reject(CANCELLED);
    else pending.resolve();
  }
}

async function reauthenticate(body) {
  try {
    state.pair = await api("POST", "/auth/reauthenticate", { body });
  } catch (error) {
    const message = error.name === "NotAllowedError" ? "The passkey was not used." : error.message;
    $("reauth-problem").textContent = message;
    return;
  }
  closeStepUp();
}

// ---- the landing pages --------------------------------------------------------------

function readLanding() {
  const spec = LANDINGS[location.pathname];
  if (!spec) return;
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  // The token leaves the address bar (and the history entry) before anything else happens.
  history.replaceState(null, "", location.pathname);
  state.landing = { path: location.pathname, token, done: false };
  $("landing-title").textContent = spec.title;
  document.title = `${spec.title} - MANAS360`;
  if (!token) {
    $("landing-text").textContent = "This link is incomplete: open the whole link from the mail, or ask for a new one.";
    $("landing-form").hidden = true;
    state.landing.done = true;
    return;
  }
  $("landing-text").textContent = spec.text;
  $("landing-submit").textContent = spec.button;
  if (spec.password) {
    $("landing-password-label").textContent = spec.password;
    $("landing-password").autocomplete = location.pathname === "/reset-password" ? "new-password" : "current-password";
    $("landing-password-row").hidden = false;
  }
}

async function landingAction() {
  const { path, token } = state.landing;
  const code = optional("landing-code");
  let message;
  if (path === "/reset-password" || path === "/cancel-deletion") {
    const body =
      path === "/reset-password"
        ? { token, new_password: $("landing-password").value, code }
        : { token, password: $("landing-password").value, code };
    const endpoint = path === "/reset-password" ? "/auth/password-reset/confirm" : "/auth/account-deletion/cancel";
    let pair;
    try {
      pair = await api("POST", endpoint, { body, auth: false });
    } catch (error) {
      if (error.code === "MfaRequired") {
        $("landing-code-row").hidden = false;
        $("landing-code").focus();
        notify("Your account has two-step sign-in: enter a code from your app or a recovery code, then press the button again.");
        return;
      }
      throw error;
    }
    message = path === "/reset-password" ? "Your password is changed, and you are signed in." : "Your account is kept, and you are signed in.";
    finishLanding();
    await signIn(pair);
  } else if (path === "/verify-email") {
    await api("POST", "/auth/verify-email", { body: { token }, auth: false });
    message = "Your email address is verified. Log in again to continue.";
    finishLanding();
  } else if (path === "/confirm-email") {
    if (!state.pair) {
      $("login-email").focus();
      throw new Error("Log in first (below), then press the button again.");
    }
    const user = await api("POST", "/auth/email-change/confirm", { body: { token } });
    message = `Your email address is now ${user.email}.`;
    finishLanding();
    renderProfile(user);
    await loadAccount(); // the confirm signed the other sessions out: list what is left
  } else if (path === "/cancel-email-change") {
    await api("POST", "/auth/email-change/cancel", { body: { token }, auth: false });
    message = "The email change is cancelled. If it had already happened, the old address is back, every session is signed out and a password reset link is on its way to it.";
    finishLanding();
  }
  notify(message);
}

function finishLanding() {
  state.landing.done = true;
  state.landing.token = null;
  $("landing-form").hidden = true;
  $("landing-password").value = "";
  $("landing-code").value = "";
  $("landing-text").textContent = "Done.";
  showView();
}

// ---- wiring -------------------------------------------------------------------------

function wire() {
  on("landing-form", "submit", landingAction);

  on("login-form", "submit", async () => {
    try {
      await signIn(await api("POST", "/auth/login", { body: { email: value("login-email"), password: $("login-password").value }, auth: false }));
      notify("You are signed in.");
    } catch (error) {
      if (error.code === "MfaRequired" && error.envelope.mfa_token) return askSecondFactor(error.envelope.mfa_token);
      throw error;
    }
  });

  on("passkey-login", "click", async () => {
    const email = optional("login-email");
    const { challenge_id, options } = await api("POST", "/auth/passkeys/login/options", { body: email ? { email } : {}, auth: false });
    const credential = await getCredential(options);
    try {
      await signIn(await api("POST", "/auth/passkeys/login", { body: { challenge_id, credential }, auth: false }));
      notify("You are signed in with your passkey.");
    } catch (error) {
      if (error.code === "MfaRequired" && error.envelope.mfa_token) return askSecondFactor(error.envelope.mfa_token);
      throw error;
    }
  });

  on("mfa-form", "submit", async () => {
    const pair = await api("POST", "/auth/mfa/verify", { body: { mfa_token: state.mfaToken, code: value("mfa-code") }, auth: false });
    await signIn(pair);
    notify("You are signed in.");
  });
  on("mfa-cancel", "click", async () => {
    state.mfaToken = null;
    $("mfa-form").hidden = true;
    $("login-form").hidden = false;
  });

  on("register-form", "submit", async () => {
    const body = { email: value("register-email"), password: $("register-password").value, display_name: optional("register-name") };
    const answer = await api("POST", "/auth/register", { body, auth: false });
    if (answer.access_token) {
      await signIn(answer);
      notify("Your account is created. A verification link is on its way to your mailbox.");
    } else {
      notify("Your account is created. Open the verification link we mailed you, then log in.");
    }
  });

  on("forgot-form", "submit", async () => {
    await api("POST", "/auth/password-reset", { body: { email: value("forgot-email") }, auth: false });
    notify("If an account uses this address, a reset link is on its way to it.");
  });
  on("resend-verification", "click", async () => {
    await api("POST", "/auth/verify-email/resend", { body: { email: value("forgot-email") }, auth: false });
    notify("If this address has an account waiting for verification, a new link is on its way to it.");
  });
  on("resend-verification-signed-in", "click", async () => {
    await api("POST", "/auth/verify-email/resend");
    notify("A new verification link is on its way to your mailbox.");
  });

  on("logout", "click", async () => {
    await api("POST", "/auth/logout");
    signOut();
    notify("You are signed out.");
  });
  on("logout-all", "click", async () => {
    await api("POST", "/auth/logout-all");
    signOut();
    notify("Every session of your account is signed out.");
  });

  on("sessions-refresh", "click", loadSessions);
  on("sessions", "click", async (e) => {
    const button = e.target.closest("button.revoke-session");
    if (!button) return;
    await api("DELETE", `/auth/sessions/${encodeURIComponent(button.dataset.session)}`);
    await loadSessions();
    notify("The session is revoked.");
  });

  on("password-form", "submit", async () => {
    const body = { current_password: $("password-current").value, new_password: $("password-new").value, code: optional("password-code") };
    const pair = await withStepUp(() => api("POST", "/auth/password", { body }));
    for (const id of ["password-current", "password-new", "password-code"]) $(id).value = "";
    await signIn(pair);
    notify("Your password is changed. Every other session is signed out.");
  });

  on("totp-setup", "click", async () => {
    const setup = await withStepUp(() => api("POST", "/auth/mfa/totp/setup"));
    $("totp-qr").replaceChildren(safeSvg(setup.qr_svg));
    $("totp-secret").textContent = setup.secret;
    $("totp-pending").hidden = false;
    $("totp-confirm-code").focus();
  });
  on("totp-confirm-form", "submit", async () => {
    const code = value("totp-confirm-code");
    const { recovery_codes } = await withStepUp(() => api("POST", "/auth/mfa/totp/confirm", { body: { code } }));
    $("totp-confirm-code").value = "";
    $("totp-pending").hidden = true;
    $("totp-qr").replaceChildren();
    $("totp-secret").textContent = "";
    showRecoveryCodes(recovery_codes);
    await loadAccount();
    notify("Two-step sign-in is on. Your other sessions are signed out.");
  });
  on("totp-disable-form", "submit", async () => {
    const code = value("totp-disable-code");
    await withStepUp(() => api("DELETE", "/auth/mfa/totp", { body: { code } }));
    $("totp-disable-code").value = "";
    $("recovery-codes-box").hidden = true;
    await loadAccount();
    notify("Two-step sign-in is off. Your other sessions are signed out.");
  });
  on("recovery-form", "submit", async () => {
    const code = value("recovery-code");
    const { recovery_codes } = await withStepUp(() => api("POST", "/auth/mfa/recovery-codes", { body: { code } }));
    $("recovery-code").value = "";
    showRecoveryCodes(recovery_codes);
    await loadSessions();
    notify("New recovery codes are made; the old ones no longer work.");
  });

  on("passkey-add-form", "submit", async () => {
    const name = optional("passkey-name");
    await withStepUp(async () => {
      const { challenge_id, options } = await api("POST", "/auth/passkeys/register/options", { body: name ? { name } : {} });
      const credential = await createCredential(options);
      await api("POST", "/auth/passkeys/register", { body: name ? { challenge_id, credential, name } : { challenge_id, credential } });
    });
    $("passkey-name").value = "";
    await loadPasskeys();
    notify("The passkey is added.");
  });
  on("passkeys", "click", async (e) => {
    const rename = e.target.closest("button.rename-passkey");
    const remove = e.target.closest("button.remove-passkey");
    if (rename) {
      const name = $(rename.dataset.input).value.trim();
      await api("PATCH", `/auth/passkeys/${encodeURIComponent(rename.dataset.passkey)}`, { body: { name } });
      await loadPasskeys();
      notify("The passkey is renamed.");
    } else if (remove) {
      await withStepUp(() => api("DELETE", `/auth/passkeys/${encodeURIComponent(remove.dataset.passkey)}`));
      await loadAccount();
      notify("The passkey is removed. Your other sessions are signed out.");
    }
  });

  on("email-form", "submit", async () => {
    const new_email = value("email-new");
    await withStepUp(() => api("POST", "/me/email", { body: { new_email } }));
    $("email-new").value = "";
    notify(`A confirmation link is on its way to ${new_email}; your current address gets a notice with a cancel link.`);
  });

  on("export", "click", async () => {
    const response = await withStepUp(() => request("GET", "/me/export"));
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = match ? match[1] : "manas360-export.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    notify("Your data is downloaded.");
  });

  on("delete-form", "submit", async () => {
    if (!$("delete-sure").checked) {
      $("delete-sure").focus();
      throw new Error("Tick the box to confirm that you want to delete your account.");
    }
    const { deletion_at } = await withStepUp(() => api("DELETE", "/me"));
    $("delete-sure").checked = false;
    signOut();
    notify(`Your account will be deleted on ${when(deletion_at)}. A mail with a link to cancel it is on its way.`);
  });

  $("reauth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("reauth-problem").textContent = "";
    await reauthenticate({ password: $("reauth-password").value, code: optional("reauth-code") });
  });
  $("reauth-passkey").addEventListener("click", async () => {
    $("reauth-problem").textContent = "";
    try {
      const { challenge_id, options } = await api("POST", "/auth/passkeys/reauthenticate/options");
      const credential = await getCredential(options);
      await reauthenticate({ challenge_id, credential });
    } catch (error) {
      $("reauth-problem").textContent = error.name === "NotAllowedError" ? "The passkey was not used." : error.message;
    }
  });
  $("reauth-cancel").addEventListener("click", () => closeStepUp(CANCELLED));
  $("reauth").addEventListener("cancel", (e) => {
    e.preventDefault();
    closeStepUp(CANCELLED);
  });
}

function askSecondFactor(mfaToken) {
  state.mfaToken = mfaToken;
  $("mfa-form").hidden = false;
  $("mfa-code").value = "";
  $("mfa-code").focus();
  notify("Enter the code from your authenticator app, or a recovery code.");
}

function showRecoveryCodes(codes) {
  const list = $("recovery-codes");
  list.replaceChildren();
  for (const code of codes) {
    const item = document.createElement("li");
    const text = document.createElement("code");
    text.textContent = code;
    item.append(text);
    list.append(item);
  }
  $("recovery-codes-box").hidden = false;
}

function start() {
  readLanding();
  wire();
  showView();
  document.body.dataset.ready = "true";
}

start();
