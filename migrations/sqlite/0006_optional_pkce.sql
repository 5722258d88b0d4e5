-- Whether the client must use PKCE (RFC 7636). Always for public clients (RFC 9700
-- §2.1.1); a confidential OpenID Connect client may be registered without it, relying on
-- its client authentication and the nonce (OpenID Connect Core §3.1.2.1), e.g. for the
-- OpenID Foundation's certification suite, which sends no PKCE. Codes issued without a
-- challenge store an empty one.
-- Public clients never go without it, whatever writes the row.
alter table clients add column require_pkce integer not null default 1
    check (require_pkce = 1 or kind = 'confidential');
