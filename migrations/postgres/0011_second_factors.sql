-- Second factors (issue 12): TOTP authenticators, recovery codes, the factors a browser
-- session was authenticated with, the pending second step of a sign-in, and the
-- per-client requirement of multi-factor authentication.

-- One row per enrolled second factor. A TOTP secret (RFC 6238) is stored encrypted
-- under the master key (AES-256-GCM, the factor id as associated data), like the signing
-- keys; `keys rotate-master-key` re-encrypts it. `confirmed` is false until the user
-- proved the authenticator works with a first valid code; unconfirmed rows are never
-- used for sign-in. `last_used_step` is the highest TOTP time step accepted: a code is
-- accepted once (RFC 6238 §5.2), and never for a step at or below it.
create table user_factors (
    factor_id uuid primary key,
    user_id uuid not null,
    kind text not null,
    name text not null,
    encrypted_secret bytea not null,
    confirmed boolean not null default false,
    last_used_step bigint,
    created_at timestamptz not null,
    last_used_at timestamptz,
    constraint user_factors_user_fk foreign key (user_id)
        references users (user_id) on delete cascade
);
create index user_factors_user_idx on user_factors (user_id);

-- Single-use recovery codes: SHA-256 of the user id and the code (80 random bits), never
-- the code itself. Regenerating replaces the whole set.
create table recovery_codes (
    user_id uuid not null,
    code_hash bytea not null,
    created_at timestamptz not null,
    used_at timestamptz,
    primary key (user_id, code_hash),
    constraint recovery_codes_user_fk foreign key (user_id)
        references users (user_id) on delete cascade
);

-- The factors a session was authenticated with and when: {"pwd": unix, "otp": unix}.
alter table browser_sessions add column factors jsonb not null default '{}';
-- A sign-in waiting for its second factor: whose, whether the password was right (the
-- page asks for a code either way), and the hash it was checked against.
alter table login_transactions add column second_step jsonb;
-- The client's ID tokens must come from multi-factor authentication.
alter table clients add column require_mfa boolean not null default false;
