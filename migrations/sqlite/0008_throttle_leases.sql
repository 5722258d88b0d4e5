-- Sign-in attempts in flight hold a lease on their account's failure budget instead of
-- being counted as failures before the password is checked (issue 10 item 6): only a
-- verified wrong password adds to `failures`. `pending` counts the leases; they all lapse
-- at `pending_until`, so a lease lost with a crashed process frees itself.
alter table login_throttles add column pending integer not null default 0;
alter table login_throttles add column pending_until integer;
