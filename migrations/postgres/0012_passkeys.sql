-- Passkeys (issue 12): WebAuthn credentials as a kind of second factor, and the state of
-- the ceremonies in flight.

-- A passkey is a `user_factors` row of kind 'passkey'. Its credential (the public key,
-- the signature counter, the backup flags: the `Passkey` of webauthn-rs, as JSON) is not
-- secret and is kept in clear in `credential`; `encrypted_secret` stays empty for such a
-- row and `keys rotate-master-key` skips it. `credential_id` (WebAuthn Level 3 §6.1: at
-- most 1023 bytes, chosen by the authenticator) finds the row of a discoverable
-- credential at sign-in; one credential belongs to one account.
alter table user_factors add column credential_id bytea;
alter table user_factors add column credential text;
create unique index user_factors_credential_idx on user_factors (credential_id);

-- The server side of a WebAuthn ceremony in flight (the challenge and what the response
-- must satisfy): one per owner ('register:<session id>' on the account page,
-- 'login:<transaction hash>' on a sign-in form). A new ceremony replaces the owner's
-- previous one; finishing takes the row (delete … returning), so it is used once, by
-- any instance.
create table passkey_ceremonies (
    owner text primary key,
    user_id uuid,
    state text not null,
    expires_at timestamptz not null
);
create index passkey_ceremonies_expiry_idx on passkey_ceremonies (expires_at);
