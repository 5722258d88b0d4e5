-- Clients, signing keys, the authorization code flow, consents and the access token
-- denylist.

create table clients (
    client_id text primary key,
    name text not null,
    -- confidential | spa | native
    kind text not null,
    -- SHA-256 of the 256-bit secret; null for public clients.
    secret_hash bytea,
    -- client_secret_basic | client_secret_post | none
    auth_method text not null,
    redirect_uris jsonb not null,
    post_logout_redirect_uris jsonb not null,
    allowed_origins jsonb not null,
    grant_types jsonb not null,
    scopes jsonb not null,
    first_party boolean not null default false,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create table signing_keys (
    kid text primary key,
    alg text not null,
    -- next | current | retired
    state text not null,
    -- AES-256-GCM under the master key: nonce || ciphertext || tag.
    encrypted_private_key bytea not null,
    public_jwk jsonb not null,
    created_at timestamptz not null,
    activated_at timestamptz,
    retired_at timestamptz,
    remove_after timestamptz
);
-- Exactly one current key per algorithm, even when instances race.
create unique index signing_keys_one_current_idx on signing_keys (alg) where state = 'current';

-- The login transaction carries the pending authorization request through sign-in and
-- consent: the session it signed in, and when the request was answered.
alter table login_transactions add column session_id uuid;
alter table login_transactions add column completed_at timestamptz;

create table authorization_codes (
    code_hash bytea primary key,
    client_id text not null,
    user_id uuid not null,
    session_id uuid not null,
    redirect_uri text not null,
    scope text not null,
    nonce text,
    code_challenge text not null,
    auth_time timestamptz not null,
    amr jsonb not null,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    consumed_at timestamptz,
    -- The access token issued for it, revoked if the code is presented again.
    access_token_jti uuid,
    access_token_expires_at timestamptz
);
create index authorization_codes_expires_idx on authorization_codes (expires_at);

create table consents (
    user_id uuid not null,
    client_id text not null,
    scopes jsonb not null,
    granted_at timestamptz not null,
    constraint consents_pkey primary key (user_id, client_id),
    constraint consents_user_fk foreign key (user_id) references users (user_id) on delete cascade,
    constraint consents_client_fk foreign key (client_id) references clients (client_id) on delete cascade
);

-- Revoked access tokens until they would have expired anyway.
create table revoked_access_tokens (
    jti uuid primary key,
    expires_at timestamptz not null
);
create index revoked_access_tokens_expires_idx on revoked_access_tokens (expires_at);
