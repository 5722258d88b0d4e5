-- Users, browser sessions, sign-in forms, sign-in throttling and the audit trail.

create table users (
    user_id uuid primary key,
    -- NFKC + lower-cased by the application, so this unique index is case-insensitive.
    username text not null,
    email text,
    email_verified boolean not null default false,
    name text,
    -- argon2id PHC string; null for accounts that cannot sign in with a password.
    password_hash text,
    disabled boolean not null default false,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint users_username_key unique (username)
);

create table browser_sessions (
    session_id uuid primary key,
    -- SHA-256 of the cookie value; the value itself is never stored.
    id_hash bytea not null,
    user_id uuid not null,
    auth_time timestamptz not null,
    amr jsonb not null,
    created_at timestamptz not null,
    last_seen_at timestamptz not null,
    idle_expires_at timestamptz not null,
    absolute_expires_at timestamptz not null,
    revoked_at timestamptz,
    revoked_reason text,
    ip text,
    user_agent text,
    constraint browser_sessions_id_hash_key unique (id_hash),
    constraint browser_sessions_user_fk foreign key (user_id)
        references users (user_id) on delete cascade
);
create index browser_sessions_user_idx on browser_sessions (user_id);
create index browser_sessions_absolute_expires_idx on browser_sessions (absolute_expires_at);

-- A pending sign-in (later: the authorization request waiting for it).
create table login_transactions (
    id_hash bytea primary key,
    -- SHA-256 of the browser-binding cookie the form was served to.
    binding_hash bytea not null,
    -- Where to go after sign-in: always a path the server chose itself.
    return_to text not null,
    request jsonb,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    consumed_at timestamptz
);
create index login_transactions_expires_idx on login_transactions (expires_at);

-- Keyed by account name whether or not the account exists.
create table login_throttles (
    throttle_key text primary key,
    failures integer not null,
    last_failure_at timestamptz not null,
    locked_until timestamptz
);
create index login_throttles_last_failure_idx on login_throttles (last_failure_at);

create table audit_events (
    audit_event_id bigint generated always as identity primary key,
    at timestamptz not null,
    kind text not null,
    outcome text not null,
    -- No foreign keys: the trail outlives the users and sessions it mentions.
    user_id uuid,
    client_id text,
    session_id uuid,
    ip text,
    request_id text,
    details jsonb not null
);
create index audit_events_at_idx on audit_events (at);
create index audit_events_user_idx on audit_events (user_id, at);
create index audit_events_kind_idx on audit_events (kind, at);
