-- Lockout counters and audit rows no longer carry the unsalted SHA-256 of the typed
-- account name (people type passwords into that field; a dictionary reverses it).
-- Counters are now keyed by an HMAC under a secret derived from the master key: the old
-- rows can never match again, and are short-lived anyway.
delete from login_throttles;

update audit_events set details = json_remove(details, '$.account')
where kind in ('login.failure', 'login.throttled')
  and json_extract(details, '$.account') is not null;
