-- Refresh tokens (RFC 6749 §6, RFC 9700 §4.14): opaque, stored as SHA-256, rotated on
-- every use and grouped in one family per authorization. Same schema as
-- migrations/sqlite/0004_refresh_tokens.sql.

-- body | cookie (an HttpOnly cookie for browser apps; SPA clients only).
alter table clients add column refresh_token_delivery text not null default 'body';

-- The family created when a code was redeemed: a replay of the code revokes it
-- (RFC 6749 §4.1.2).
alter table authorization_codes add column refresh_family_id uuid;

create table refresh_families (
    family_id uuid primary key,
    client_id text not null references clients (client_id) on delete cascade,
    user_id uuid not null references users (user_id) on delete cascade,
    -- The browser session the family is bound to; null with offline_access.
    session_id uuid,
    scope text not null,
    auth_time timestamptz not null,
    amr jsonb not null,
    created_at timestamptz not null,
    absolute_expires_at timestamptz not null,
    revoked_at timestamptz,
    revoked_reason text
);
create index refresh_families_user_idx on refresh_families (user_id);
create index refresh_families_session_idx on refresh_families (session_id);
create index refresh_families_expires_idx on refresh_families (absolute_expires_at);

create table refresh_tokens (
    token_hash bytea primary key,
    family_id uuid not null references refresh_families (family_id) on delete cascade,
    parent_hash bytea,
    issued_at timestamptz not null,
    idle_expires_at timestamptz not null,
    rotated_at timestamptz,
    -- The access token issued together with this refresh token: denylisted when the
    -- family is revoked.
    access_token_jti uuid not null,
    access_token_expires_at timestamptz not null,
    -- The response that rotated this token, AES-256-GCM under the master key, kept only
    -- for the idempotent retry window and then wiped.
    successor_response bytea,
    successor_until timestamptz
);
create index refresh_tokens_family_idx on refresh_tokens (family_id);
create index refresh_tokens_idle_idx on refresh_tokens (idle_expires_at);
create index refresh_tokens_successor_idx on refresh_tokens (successor_until)
    where successor_response is not null;
