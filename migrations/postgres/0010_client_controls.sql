-- Client controls (issue 10).
--
-- disabled: a suspended client. While set, the client is refused at /authorize and at
-- /token (every grant, refresh included), and its access tokens are refused at /userinfo,
-- /introspect and the admin API; clearing it lets them work again until they expire.
alter table clients add column disabled boolean not null default false;
-- introspection: the client may introspect access tokens issued to other clients
-- (RFC 7662 §4: the server limits who may introspect what). A client may always ask
-- about its own tokens. Resource servers need it.
alter table clients add column introspection boolean not null default false;
