-- Whether the client must use PKCE (RFC 7636). Always for public clients (RFC 9700
-- §2.1.1); a confidential OpenID Connect client may be registered without it, relying on
-- its client authentication and the nonce (OpenID Connect Core §3.1.2.1), e.g. for the
-- OpenID Foundation's certification suite, which sends no PKCE. Codes issued without a
-- challenge store an empty one.
alter table clients add column require_pkce boolean not null default true;
-- Public clients never go without it, whatever writes the row.
alter table clients add constraint clients_public_clients_use_pkce
    check (require_pkce or kind = 'confidential');
