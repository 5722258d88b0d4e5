// Passkeys (WebAuthn Level 3): the sign-in button and conditional mediation on the
// sign-in page, "Use your passkey" on the code page, and "Add a passkey" on the account
// page. The options come from the server as JSON (binary fields in base64url); the
// credential goes back in a hidden field of an ordinary form post. Errors are shown in
// the page's [data-passkey-error] element.
'use strict';

(function () {
  function b64urlToBuffer(value) {
    const b64 = value.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function bufferToB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // Absent, not null: WebIDL would read a null enum member as the string "null".
  function dropNulls(value) {
    if (Array.isArray(value)) {
      return value.map(dropNulls);
    }
    if (value && typeof value === 'object') {
      const out = {};
      for (const [key, inner] of Object.entries(value)) {
        if (inner !== null && inner !== undefined) {
          out[key] = dropNulls(inner);
        }
      }
      return out;
    }
    return value;
  }

  function descriptors(list) {
    return (list || []).map((c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));
  }

  function creationOptions(json) {
    const pk = dropNulls(json.publicKey);
    pk.challenge = b64urlToBuffer(pk.challenge);
    pk.user.id = b64urlToBuffer(pk.user.id);
    pk.excludeCredentials = descriptors(pk.excludeCredentials);
    return pk;
  }

  function requestOptions(json) {
    const pk = dropNulls(json.publicKey);
    pk.challenge = b64urlToBuffer(pk.challenge);
    pk.allowCredentials = descriptors(pk.allowCredentials);
    return pk;
  }

  function extensionResults(credential) {
    try {
      return credential.getClientExtensionResults();
    } catch (_) {
      return {};
    }
  }

  function registrationJson(credential) {
    const r = credential.response;
    const response = {
      attestationObject: bufferToB64url(r.attestationObject),
      clientDataJSON: bufferToB64url(r.clientDataJSON),
    };
    if (typeof r.getTransports === 'function') {
      response.transports = r.getTransports();
    }
    return JSON.stringify({
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      response,
      extensions: extensionResults(credential),
    });
  }

  function assertionJson(credential) {
    const r = credential.response;
    return JSON.stringify({
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: bufferToB64url(r.authenticatorData),
        clientDataJSON: bufferToB64url(r.clientDataJSON),
        signature: bufferToB64url(r.signature),
        userHandle: r.userHandle ? bufferToB64url(r.userHandle) : null,
      },
      extensions: extensionResults(credential),
    });
  }

  function showError(root, message) {
    const box = root.querySelector('[data-passkey-error]');
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  function clearError(root) {
    const box = root.querySelector('[data-passkey-error]');
    if (box) {
      box.textContent = '';
      box.hidden = true;
    }
  }

  async function fetchOptions(url, fields, signal) {
    const response = await fetch(url, {
      method: 'POST',
      signal,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (body && typeof body.step_up === 'string' && body.step_up.startsWith('/login?tx=')) {
      // This session must confirm the second factor first; it comes back here after.
      window.location.assign(body.step_up);
      throw new Error(body.error || 'Confirm it is you first.');
    }
    if (!response.ok || !body || !body.publicKey) {
      const message = body && body.error ? body.error : 'Passkeys are not available right now. Reload the page and try again.';
      throw new Error(message);
    }
    return body;
  }

  function describe(error) {
    if (error && error.name === 'NotAllowedError') {
      return 'The passkey request was cancelled or timed out. Try again.';
    }
    if (error && error.name === 'InvalidStateError') {
      return 'This device already has a passkey for your account.';
    }
    if (error && error.name === 'AbortError') {
      return '';
    }
    return (error && error.message) || 'Something went wrong with the passkey. Try again.';
  }

  const supported = typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;

  // Sign-in (data-passkey="login") and the second step (data-passkey="second-factor"):
  // the options are bound to the form's transaction; the assertion is posted with it.
  function setUpSignIn(root) {
    const form = root.querySelector('form[data-passkey-form]');
    const button = root.querySelector('[data-passkey-button]');
    if (!form || !button) {
      return;
    }
    const fields = {
      tx: form.elements.tx.value,
      csrf_token: form.elements.csrf_token.value,
    };
    let conditional = null;

    function submit(credential) {
      form.elements.credential.value = assertionJson(credential);
      form.submit();
    }

    async function viaButton() {
      clearError(root);
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
      button.disabled = true;
      try {
        const options = await fetchOptions('/login/passkey/options', fields);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
        if (credential) {
          submit(credential);
          return;
        }
      } catch (error) {
        const message = describe(error);
        if (message) {
          showError(root, message);
        }
      }
      button.disabled = false;
    }

    // WebAuthn Level 3 §5.1.4: conditional mediation offers the passkeys in the
    // username field's autofill (autocomplete="username webauthn").
    async function viaAutofill() {
      if (root.dataset.passkey !== 'login' || typeof PublicKeyCredential.isConditionalMediationAvailable !== 'function') {
        return;
      }
      let available = false;
      try {
        available = await PublicKeyCredential.isConditionalMediationAvailable();
      } catch (_) {
        available = false;
      }
      if (!available) {
        return;
      }
      const controller = new AbortController();
      conditional = controller;
      try {
        const options = await fetchOptions('/login/passkey/options', fields, controller.signal);
        if (controller.signal.aborted) {
          return;
        }
        const credential = await navigator.credentials.get({
          mediation: 'conditional',
          publicKey: requestOptions(options),
          signal: controller.signal,
        });
        if (credential && !controller.signal.aborted) {
          submit(credential);
        }
      } catch (error) {
        if (!controller.signal.aborted) {
          const message = describe(error);
          if (message && error.name !== 'NotAllowedError') {
            showError(root, message);
          }
        }
      }
    }

    button.addEventListener('click', viaButton);
    root.hidden = false;
    viaAutofill();
  }

  // The account page: create a discoverable credential and post it with its name.
  function setUpRegistration(root) {
    const form = root.querySelector('form[data-passkey-form]');
    if (!form) {
      return;
    }
    const button = form.querySelector('[data-passkey-button]');
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearError(root);
      if (button) {
        button.disabled = true;
      }
      try {
        const options = await fetchOptions('/account/passkeys/options', {
          csrf_token: form.elements.csrf_token.value,
        });
        const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
        if (credential) {
          form.elements.credential.value = registrationJson(credential);
          form.submit();
          return;
        }
      } catch (error) {
        const message = describe(error);
        if (message) {
          showError(root, message);
        }
      }
      if (button) {
        button.disabled = false;
      }
    });
    root.hidden = false;
  }

  function start() {
    if (!supported) {
      return;
    }
    document.querySelectorAll('[data-passkey]').forEach((root) => {
      if (root.dataset.passkey === 'register') {
        setUpRegistration(root);
      } else {
        setUpSignIn(root);
      }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
