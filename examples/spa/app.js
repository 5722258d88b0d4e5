// Acme Notes: a single-page app that signs in through Portcullis.
//
// - Authorization code + PKCE (RFC 7636, S256) as a public client; `state` and `nonce`.
// - The access token and ID token live in JavaScript variables only: never in
//   localStorage or sessionStorage, where any injected script could read them.
// - The refresh token lives in Portcullis's HttpOnly, SameSite=Strict cookie, sent only
//   to the token endpoint (`credentials: "include"`); this app never sees it. Each refresh
//   rotates it. A page reload signs in again silently with that cookie.
// - The access token is refreshed shortly before it expires.
// - Sign-out is OpenID Connect RP-Initiated Logout: it ends the Portcullis session, which
//   revokes the refresh token family bound to it.
//
// What sessionStorage holds: the PKCE verifier, state and nonce for the one redirect in
// flight (one-time values, useless once the code is redeemed). What localStorage holds: a
// "may be signed in" flag, so a first visit does not try a refresh it knows would fail.

const SIGNED_IN_FLAG = 'acme.maybeSignedIn';
const PENDING = 'acme.pendingLogin';
const PENDING_LOGOUT = 'acme.pendingLogout';

const $ = (id) => document.getElementById(id);

/** Everything secret this app holds, in memory. */
const state = {
  accessToken: null,
  idToken: null,
  expiresAt: 0,
  refreshes: 0,
  refreshTimer: null,
  nextRefreshAt: 0,
  inFlight: null,
};

let config;
let discovery;

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return b64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function pkcePair() {
  const verifier = randomString();
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return { verifier, challenge: b64url(digest) };
}

function decodeJwtPayload(jwt) {
  const part = jwt.split('.')[1] ?? '';
  const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}

class OAuthError extends Error {
  constructor(code, description) {
    super(description || code);
    this.code = code;
  }
}

/** POST to the token endpoint with the refresh cookie (credentials: include). */
async function tokenRequest(params) {
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    credentials: 'include',
    body: new URLSearchParams({ client_id: config.client_id, ...params }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new OAuthError(body.error || `http_${response.status}`, body.error_description);
  return body;
}

function accept(tokens) {
  state.accessToken = tokens.access_token;
  if (tokens.id_token) state.idToken = tokens.id_token;
  state.expiresAt = Date.now() + tokens.expires_in * 1000;
  localStorage.setItem(SIGNED_IN_FLAG, '1');
  scheduleRefresh(tokens.expires_in);
  const claims = state.idToken ? decodeJwtPayload(state.idToken) : {};
  showSignedIn(claims.name || claims.preferred_username || claims.sub || 'someone');
}

/** Refresh when 80% of the access token's life has passed (at least 5 s from now). */
function scheduleRefresh(expiresIn) {
  clearTimeout(state.refreshTimer);
  const delay = Math.max(5, Math.floor(expiresIn * 0.8)) * 1000;
  state.nextRefreshAt = Date.now() + delay;
  state.refreshTimer = setTimeout(() => refresh().catch(showError), delay);
}

/** One refresh at a time; concurrent callers share it. */
function refresh() {
  if (!state.inFlight) {
    state.inFlight = tokenRequest({ grant_type: 'refresh_token' })
      .then((tokens) => {
        state.refreshes += 1;
        accept(tokens);
      })
      .catch((err) => {
        if (err instanceof OAuthError && err.code === 'invalid_grant') {
          forget();
          showSignedOut('Your session has ended. Please sign in again.');
          return;
        }
        throw err;
      })
      .finally(() => {
        state.inFlight = null;
      });
  }
  return state.inFlight;
}

function forget() {
  clearTimeout(state.refreshTimer);
  state.accessToken = null;
  state.idToken = null;
  state.expiresAt = 0;
  localStorage.removeItem(SIGNED_IN_FLAG);
}

async function signIn() {
  const { verifier, challenge } = await pkcePair();
  const pending = { verifier, state: randomString(), nonce: randomString() };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: config.scope,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

async function handleCallback(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', '/');
  if (!pending || params.get('state') !== pending.state) {
    throw new Error('This sign-in response does not match a sign-in this tab started.');
  }
  // RFC 9207: the response names its issuer.
  if (params.get('iss') && params.get('iss') !== config.issuer) {
    throw new Error('The sign-in response came from an unexpected issuer.');
  }
  if (params.get('error')) {
    throw new OAuthError(params.get('error'), params.get('error_description'));
  }
  const tokens = await tokenRequest({
    grant_type: 'authorization_code',
    code: params.get('code') ?? '',
    redirect_uri: config.redirect_uri,
    code_verifier: pending.verifier,
  });
  // OpenID Connect Core §3.1.3.7: received straight from the token endpoint over TLS, so
  // the signature check may be replaced by TLS; iss, aud, exp and nonce are checked here.
  const claims = decodeJwtPayload(tokens.id_token ?? '');
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (
    claims.iss !== config.issuer ||
    !audience.includes(config.client_id) ||
    claims.nonce !== pending.nonce ||
    claims.exp * 1000 < Date.now()
  ) {
    throw new Error('The ID token is not valid for this sign-in.');
  }
  accept(tokens);
}

async function callUserinfo() {
  const response = await fetch(discovery.userinfo_endpoint, {
    headers: { Authorization: `Bearer ${state.accessToken}` },
  });
  if (response.status === 401) {
    forget();
    showSignedOut('The access token was refused. Please sign in again.');
    return;
  }
  if (!response.ok) throw new Error(`userinfo answered ${response.status}`);
  $('output').textContent = JSON.stringify(await response.json(), null, 2);
}

function signOut() {
  if (!discovery.end_session_endpoint) throw new Error('The provider has no end_session_endpoint.');
  const logoutState = randomString();
  sessionStorage.setItem(PENDING_LOGOUT, logoutState);
  const url = new URL(discovery.end_session_endpoint);
  const params = {
    client_id: config.client_id,
    post_logout_redirect_uri: config.post_logout_redirect_uri,
    state: logoutState,
  };
  if (state.idToken) params.id_token_hint = state.idToken;
  url.search = new URLSearchParams(params).toString();
  forget();
  location.assign(url.toString());
}

function showSignedIn(who) {
  $('who').textContent = who;
  $('refreshes').textContent = String(state.refreshes);
  $('signed-in').hidden = false;
  $('signed-out').hidden = true;
  $('loading').hidden = true;
  tick();
  document.body.dataset.state = 'signed-in';
}

function showSignedOut(message) {
  $('signed-out-message').textContent = message;
  $('output').textContent = '';
  $('signed-in').hidden = true;
  $('signed-out').hidden = false;
  $('loading').hidden = true;
  document.body.dataset.state = 'signed-out';
}

function showError(err) {
  const box = $('error');
  box.textContent = err instanceof OAuthError ? `${err.code}: ${err.message}` : String(err.message ?? err);
  box.hidden = false;
}

function tick() {
  const seconds = (at) => Math.max(0, Math.round((at - Date.now()) / 1000));
  $('expires').textContent = state.expiresAt ? `${seconds(state.expiresAt)} s` : '–';
  $('next-refresh').textContent = state.accessToken ? `in ${seconds(state.nextRefreshAt)} s` : '–';
}

function on(id, handler) {
  $(id).addEventListener('click', () => {
    $('error').hidden = true;
    Promise.resolve()
      .then(handler)
      .catch(showError);
  });
}

async function start() {
  config = await (await fetch('/config.json')).json();
  discovery = await (await fetch(`${config.issuer}/.well-known/openid-configuration`)).json();
  on('signin', signIn);
  on('userinfo', callUserinfo);
  on('refresh', refresh);
  on('signout', signOut);
  setInterval(tick, 1000);

  const params = new URLSearchParams(location.search);
  if (location.pathname === '/callback') {
    await handleCallback(params);
    return;
  }
  const loggedOut = sessionStorage.getItem(PENDING_LOGOUT);
  if (loggedOut) {
    sessionStorage.removeItem(PENDING_LOGOUT);
    history.replaceState(null, '', '/');
    if (params.get('state') === loggedOut) {
      showSignedOut('You have signed out.');
      return;
    }
  }
  if (localStorage.getItem(SIGNED_IN_FLAG)) {
    // A reload: the refresh cookie signs us in again without a redirect.
    await refresh();
    if (state.accessToken) return;
  }
  if (!state.accessToken) showSignedOut($('signed-out-message').textContent);
}

start().catch((err) => {
  showSignedOut('You are not signed in.');
  showError(err);
});
