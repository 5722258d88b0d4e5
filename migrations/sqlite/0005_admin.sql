-- The admin API: audit rows name the admin client that acted. Same schema as
-- migrations/postgres/0005_admin.sql.

alter table audit_events add column actor_client_id text;
create index audit_events_client_idx on audit_events (client_id, at);
create index audit_events_actor_client_idx on audit_events (actor_client_id, at);
