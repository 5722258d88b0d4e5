-- Sign-in attempts in flight hold a lease on their account's failure budget instead of
-- being counted as failures before the password is checked (issue 10 item 6): only a
-- verified wrong password adds to `login_throttles.failures`. One row per attempt, so a
-- lease is ended exactly once (by its id) and a lost one lapses on its own.
create table login_attempt_leases (
    lease_id uuid primary key,
    throttle_key text not null,
    expires_at timestamptz not null
);
create index login_attempt_leases_key_idx on login_attempt_leases (throttle_key, expires_at);
create index login_attempt_leases_expiry_idx on login_attempt_leases (expires_at);
