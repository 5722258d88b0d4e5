-- The admin API: audit rows name the admin client that acted (the row's client_id is
-- the client an event concerns, e.g. the client an admin deleted).

alter table audit_events add column actor_client_id text;
create index audit_events_client_idx on audit_events (client_id, at);
create index audit_events_actor_client_idx on audit_events (actor_client_id, at);
