-- Users, browser sessions, sign-in forms, sign-in throttling and the audit trail.
-- Same schema as migrations/postgres/0001_foundation.sql. Timestamps are integer Unix
-- seconds (UTC), uuids 16-byte blobs, JSON text.

create table users (
    user_id blob primary key,
    -- NFKC + lower-cased by the application, so this unique index is case-insensitive.
    username text not null,
    email text,
    email_verified integer not null default 0,
    name text,
    password_hash text,
    disabled integer not null default 0,
    created_at integer not null,
    updated_at integer not null,
    constraint users_username_key unique (username)
);

create table browser_sessions (
    session_id blob primary key,
    id_hash blob not null,
    user_id blob not null,
    auth_time integer not null,
    amr text not null,
    created_at integer not null,
    last_seen_at integer not null,
    idle_expires_at integer not null,
    absolute_expires_at integer not null,
    revoked_at integer,
    revoked_reason text,
    ip text,
    user_agent text,
    constraint browser_sessions_id_hash_key unique (id_hash),
    constraint browser_sessions_user_fk foreign key (user_id)
        references users (user_id) on delete cascade
);
create index browser_sessions_user_idx on browser_sessions (user_id);
create index browser_sessions_absolute_expires_idx on browser_sessions (absolute_expires_at);

create table login_transactions (
    id_hash blob primary key,
    binding_hash blob not null,
    return_to text not null,
    request text,
    created_at integer not null,
    expires_at integer not null,
    consumed_at integer
);
create index login_transactions_expires_idx on login_transactions (expires_at);

create table login_throttles (
    throttle_key text primary key,
    failures integer not null,
    last_failure_at integer not null,
    locked_until integer
);
create index login_throttles_last_failure_idx on login_throttles (last_failure_at);

create table audit_events (
    audit_event_id integer primary key autoincrement,
    at integer not null,
    kind text not null,
    outcome text not null,
    user_id blob,
    client_id text,
    session_id blob,
    ip text,
    request_id text,
    details text not null
);
create index audit_events_at_idx on audit_events (at);
create index audit_events_user_idx on audit_events (user_id, at);
create index audit_events_kind_idx on audit_events (kind, at);
