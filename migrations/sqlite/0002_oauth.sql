-- Clients, signing keys, the authorization code flow, consents and the access token
-- denylist. Same schema as migrations/postgres/0002_oauth.sql.

create table clients (
    client_id text primary key,
    name text not null,
    kind text not null,
    secret_hash blob,
    auth_method text not null,
    redirect_uris text not null,
    post_logout_redirect_uris text not null,
    allowed_origins text not null,
    grant_types text not null,
    scopes text not null,
    first_party integer not null default 0,
    created_at integer not null,
    updated_at integer not null
);

create table signing_keys (
    kid text primary key,
    alg text not null,
    state text not null,
    encrypted_private_key blob not null,
    public_jwk text not null,
    created_at integer not null,
    activated_at integer,
    retired_at integer,
    remove_after integer
);
create unique index signing_keys_one_current_idx on signing_keys (alg) where state = 'current';

alter table login_transactions add column session_id blob;
alter table login_transactions add column completed_at integer;

create table authorization_codes (
    code_hash blob primary key,
    client_id text not null,
    user_id blob not null,
    session_id blob not null,
    redirect_uri text not null,
    scope text not null,
    nonce text,
    code_challenge text not null,
    auth_time integer not null,
    amr text not null,
    created_at integer not null,
    expires_at integer not null,
    consumed_at integer,
    access_token_jti blob,
    access_token_expires_at integer
);
create index authorization_codes_expires_idx on authorization_codes (expires_at);

create table consents (
    user_id blob not null,
    client_id text not null,
    scopes text not null,
    granted_at integer not null,
    constraint consents_pkey primary key (user_id, client_id),
    constraint consents_user_fk foreign key (user_id) references users (user_id) on delete cascade,
    constraint consents_client_fk foreign key (client_id) references clients (client_id) on delete cascade
);

create table revoked_access_tokens (
    jti blob primary key,
    expires_at integer not null
);
create index revoked_access_tokens_expires_idx on revoked_access_tokens (expires_at);
